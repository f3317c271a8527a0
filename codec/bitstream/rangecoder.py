"""A range coder (arithmetic coding with integer frequencies), in plain Python.

Each symbol is coded with an integer frequency table: `freq` of the symbol, `cum` the
sum of the frequencies of the symbols before it, `total` the sum of all. It costs
`log2(total / freq)` bits, plus at most about 2^-24 of a bit per symbol of rounding.

The interval is kept in 64 bits (`range >= 2^56` after renormalisation) and carries
propagate into bytes already produced (the "cache" of LZMA's coder), so `total` may be up
to 2^32. The output is trimmed: `finish` picks the value in the final interval with the
fewest significant bytes and drops trailing zero bytes, which the decoder reads back as
the zeros past the end of its input.
"""

from __future__ import annotations

_BITS = 64
_MASK = (1 << _BITS) - 1
_TOP_SHIFT = _BITS - 8
_RENORM = 1 << _TOP_SHIFT  # keep range >= 2^56
MAX_TOTAL = 1 << 32


class RangeEncoder:
    """Encode symbols one at a time; `finish()` returns the bytes.

    Example:
        >>> enc = RangeEncoder()
        >>> enc.encode(cum=3, freq=2, total=8)       # the symbol with frequency 2 of 8
        >>> data = enc.finish()
    """

    def __init__(self) -> None:
        self.low = 0  # may reach 2^64 and more: the excess is a carry into `cache`
        self.range = _MASK
        self.cache = -1  # the last byte not yet written (-1: none yet)
        self.pending = 0  # 0xFF bytes after `cache` that a carry would turn to 0x00
        self.out = bytearray()

    def encode(self, cum: int, freq: int, total: int) -> None:
        """Narrow the interval to the symbol's share `[cum, cum + freq)` of `total`."""
        if not (0 < freq and 0 <= cum and cum + freq <= total <= MAX_TOTAL):
            raise ValueError(f"bad frequencies: cum {cum}, freq {freq}, total {total}")
        r = self.range // total
        self.low += r * cum
        self.range = r * freq
        while self.range < _RENORM:
            self.range <<= 8
            self._shift()

    def _shift(self) -> None:
        """Move the top byte of `low` out, resolving a carry into earlier bytes."""
        low = self.low
        if low < (0xFF << _TOP_SHIFT) or low > _MASK:
            carry = low >> _BITS
            if self.cache >= 0:
                self.out.append((self.cache + carry) & 0xFF)
            if self.pending:
                self.out += bytes([(0xFF + carry) & 0xFF]) * self.pending
                self.pending = 0
            self.cache = (low >> _TOP_SHIFT) & 0xFF
        else:  # top byte 0xFF: a later carry could still change it
            self.pending += 1
        self.low = (low << 8) & _MASK

    def finish(self) -> bytes:
        """End the stream: the shortest value inside the final interval, then flush."""
        high = self.low + self.range  # exclusive
        for shift in range(_BITS - 8, -1, -8):  # fewest significant bytes first
            unit = 1 << shift
            value = -(-self.low // unit) * unit  # round low up to a multiple of unit
            if value < high:
                break
        self.low = value
        for _ in range(_BITS // 8 + 1):
            self._shift()
        return bytes(self.out.rstrip(b"\0"))


class RangeDecoder:
    """Decode what a `RangeEncoder` wrote, given the same frequency tables in order.

    Each symbol takes two calls: `target(total)` gives a number in `[0, total)`; the
    caller finds the symbol whose `[cum, cum + freq)` holds it and calls `consume`.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.range = _MASK
        self.code = 0
        for _ in range(_BITS // 8):
            self.code = (self.code << 8) | self._byte()
        self._r = 1

    def _byte(self) -> int:
        pos = self.pos
        self.pos = pos + 1
        return self.data[pos] if pos < len(self.data) else 0

    def target(self, total: int) -> int:
        """Where the next symbol's cumulative frequency lies, in `[0, total)`."""
        if not 0 < total <= MAX_TOTAL:
            raise ValueError(f"bad total frequency {total}")
        self._r = self.range // total
        return min(self.code // self._r, total - 1)

    def consume(self, cum: int, freq: int) -> None:
        """Remove the decoded symbol `[cum, cum + freq)` from the interval."""
        r = self._r
        self.code -= r * cum
        self.range = r * freq
        while self.range < _RENORM:
            self.range <<= 8
            self.code = ((self.code << 8) | self._byte()) & _MASK

    @property
    def overrun(self) -> int:
        """Bytes read past the end of the data: the zeros `finish` trimmed."""
        return max(self.pos - len(self.data), 0)
