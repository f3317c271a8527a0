"""The `.codes` container, version 1: a fixed little-endian header, then the codes,
bit-packed, or range-coded by a prior (flag bit 0, `FLAG_ENTROPY`).

Layout and validation order are specified in docs/format.md. This module depends only on
the standard library and NumPy, and never unpickles anything.
"""

from __future__ import annotations

import operator
import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from codec.atomic import write_bytes_atomic
from codec.errors import FormatError, ModelMismatchError

MAGIC = b"\x89CODES\r\n"  # non-ASCII first byte and CR LF catch text-mode transfers
VERSION = 1
HEADER_SIZE = 64  # bytes written by this version; readers accept up to MAX_HEADER_SIZE
MODEL_ID_SIZE = 16

MAX_HEADER_SIZE = 4096
MAX_SAMPLE_RATE = 384_000
MAX_HOP_LENGTH = 65_536
MAX_N_CODEBOOKS = 256
MAX_BITS_PER_CODE = 16
MAX_N_FRAMES = 2**27  # 31 days at 50 frames/s
MAX_CODES = 2**28  # n_codebooks * n_frames; 2 GiB once decoded to int64
MAX_PAYLOAD_SIZE = MAX_CODES * MAX_BITS_PER_CODE // 8
MAX_FILE_SIZE = MAX_HEADER_SIZE + MAX_PAYLOAD_SIZE

FLAG_ENTROPY = 1  # the payload is range-coded by a prior (see codec.prior.coding)
_KNOWN_FLAGS = FLAG_ENTROPY
# An entropy-coded file extends the header: prior_id, payload_size, reserved (zero).
_ENTROPY_FIELDS = struct.Struct("<16sQQ")
ENTROPY_HEADER_SIZE = HEADER_SIZE + _ENTROPY_FIELDS.size
# A range coder spends at most 32 bits on a symbol (frequency totals up to 2^32), and
# ends with at most 9 bytes: the bound a reader puts on an entropy-coded payload.
MAX_CODED_BITS_PER_CODE = 32

# magic, version, header_size, crc32: identical in every version, so that any reader can
# tell a corrupt file from a newer one.
_PREFIX = struct.Struct("<8sHHI")
_CRC_OFFSET = 12
# flags, model_id, sample_rate, hop_length, n_codebooks, bits_per_code, n_frames,
# original_length
_FIELDS = struct.Struct("<I16sIIHHQQ")
assert _PREFIX.size + _FIELDS.size == HEADER_SIZE

_CHUNK = 1 << 20  # codes packed per step; a multiple of 8 keeps every step byte-aligned
_INT_FIELDS = (
    "sample_rate",
    "hop_length",
    "n_codebooks",
    "bits_per_code",
    "n_frames",
    "original_length",
    "flags",
)


@dataclass(frozen=True)
class CodesHeader:
    """What a decoder needs to know about a `.codes` file besides the codes.

    Args:
        model_id: 16-byte hash of the weights and config of the model that encoded it.
        sample_rate: the model's sample rate in Hz.
        hop_length: samples per frame; `frame_rate = sample_rate / hop_length`.
        n_codebooks: Q, codes per frame.
        bits_per_code: bits per code in the payload (10 for 1024-entry codebooks).
        n_frames: F, frames in the file.
        original_length: samples before padding, at most `n_frames * hop_length`.
        flags: feature bits; `FLAG_ENTROPY` marks a range-coded payload.
        prior_id: with `FLAG_ENTROPY`, the 16-byte id of the prior that coded it.

    Raises ValueError when a field is out of the bounds of the format.
    """

    model_id: bytes
    sample_rate: int
    hop_length: int
    n_codebooks: int
    bits_per_code: int
    n_frames: int
    original_length: int
    flags: int = 0
    prior_id: bytes | None = None

    def __post_init__(self) -> None:
        for name in _INT_FIELDS:  # accept NumPy integers, store plain ints
            object.__setattr__(self, name, operator.index(getattr(self, name)))
        problem = _header_problem(self)
        if problem:
            raise ValueError(problem)

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def duration(self) -> float:
        """Seconds of audio before padding."""
        return self.original_length / self.sample_rate

    @property
    def bitrate(self) -> float:
        """Bits per second of the codes bit-packed: Q * bits_per_code * frame_rate
        (an entropy-coded payload is smaller; see its size)."""
        return self.n_codebooks * self.bits_per_code * self.frame_rate

    @property
    def entropy_coded(self) -> bool:
        """Whether the payload is range-coded by a prior."""
        return bool(self.flags & FLAG_ENTROPY)


@dataclass(frozen=True)
class CodesFile:
    """A parsed `.codes` file: its header and codes `[Q, F]` int64 or, when the file
    is entropy-coded, `codes` None and the range-coded `payload` for a prior to decode."""

    header: CodesHeader
    codes: np.ndarray | None
    payload: bytes | None = None


def _header_problem(h: CodesHeader) -> str | None:
    """Describe the first field of `h` outside the format's bounds, or return None."""
    if not isinstance(h.model_id, bytes) or len(h.model_id) != MODEL_ID_SIZE:
        return f"model_id must be {MODEL_ID_SIZE} bytes"
    if h.flags & FLAG_ENTROPY:
        if not isinstance(h.prior_id, bytes) or len(h.prior_id) != MODEL_ID_SIZE:
            return f"an entropy-coded file needs a prior_id of {MODEL_ID_SIZE} bytes"
    elif h.prior_id is not None:
        return "prior_id is only for entropy-coded files"
    bounds = (
        ("sample_rate", h.sample_rate, 1, MAX_SAMPLE_RATE),
        ("hop_length", h.hop_length, 1, MAX_HOP_LENGTH),
        ("n_codebooks", h.n_codebooks, 1, MAX_N_CODEBOOKS),
        ("bits_per_code", h.bits_per_code, 1, MAX_BITS_PER_CODE),
        ("n_frames", h.n_frames, 0, MAX_N_FRAMES),
    )
    for name, value, low, high in bounds:
        if not low <= value <= high:
            return f"{name} {value} is outside [{low}, {high}]"
    if h.n_codebooks * h.n_frames > MAX_CODES:
        return f"{h.n_codebooks} x {h.n_frames} codes exceed the maximum of {MAX_CODES}"
    if not 0 <= h.original_length <= h.n_frames * h.hop_length:
        return (
            f"original_length {h.original_length} is outside [0, n_frames * hop_length"
            f" = {h.n_frames * h.hop_length}]"
        )
    if h.flags & ~_KNOWN_FLAGS:
        return f"flags {h.flags:#x} are not defined in format version {VERSION}"
    return None


def max_coded_payload_size(n_codes: int) -> int:
    """The largest entropy-coded payload a reader accepts for `n_codes` codes."""
    return (n_codes * MAX_CODED_BITS_PER_CODE + 7) // 8 + 9


def plain_file_size(header: CodesHeader) -> int:
    """Bytes of the plain (bit-packed) file for `header`'s codes."""
    return HEADER_SIZE + _payload_size(header.n_codebooks * header.n_frames, header.bits_per_code)


def _payload_size(n_codes: int, bits: int) -> int:
    """Bytes holding `n_codes` codes of `bits` bits, the last byte zero-padded."""
    return (n_codes * bits + 7) // 8


def _check_bits(bits: int) -> None:
    if not 1 <= bits <= MAX_BITS_PER_CODE:
        raise ValueError(f"bits per code must be in [1, {MAX_BITS_PER_CODE}], got {bits}")


def pack_bits(codes: np.ndarray, bits: int) -> bytes:
    """Pack codes `[Q, F]` into bytes, `bits` per code, frame-major, most significant first.

    Frame f starts at bit `f * Q * bits`, so a stream can be cut at frame boundaries.
    Raises ValueError for a non-integer or non-2-D array, or codes outside [0, 2**bits).
    """
    _check_bits(bits)
    codes = np.asarray(codes)
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(
            f"codes must be a 2-D integer array [Q, F], got {codes.dtype} {codes.shape}"
        )
    if codes.size and (codes.min() < 0 or codes.max() >= 2**bits):
        raise ValueError(
            f"codes must be in [0, {2**bits}) for {bits} bits, found values in "
            f"[{codes.min()}, {codes.max()}]"
        )
    flat = np.ascontiguousarray(codes.T, dtype=">u2").reshape(-1)
    chunks = []
    for start in range(0, flat.size, _CHUNK):
        block = flat[start : start + _CHUNK].view(np.uint8)
        bit_matrix = np.unpackbits(block).reshape(-1, 16)[:, 16 - bits :]
        chunks.append(np.packbits(bit_matrix).tobytes())
    return b"".join(chunks)


def unpack_bits(data: bytes, bits: int, n_codebooks: int, n_frames: int) -> np.ndarray:
    """Inverse of `pack_bits`: `data` of exactly the packed size -> codes `[Q, F]` int64."""
    _check_bits(bits)
    n_codes = n_codebooks * n_frames
    if n_codebooks < 0 or n_frames < 0 or len(data) != _payload_size(n_codes, bits):
        raise ValueError(
            f"{len(data)} bytes cannot hold {n_codebooks} x {n_frames} codes of {bits} bits"
        )
    buffer = np.frombuffer(data, dtype=np.uint8)
    flat = np.empty(n_codes, dtype=np.int64)
    for start in range(0, n_codes, _CHUNK):
        count = min(_CHUNK, n_codes - start)
        offset = start * bits // 8
        block = buffer[offset : offset + _payload_size(count, bits)]
        padded = np.zeros((count, 16), dtype=np.uint8)
        padded[:, 16 - bits :] = np.unpackbits(block, count=count * bits).reshape(count, bits)
        flat[start : start + count] = np.packbits(padded, axis=1).view(">u2").reshape(count)
    return np.ascontiguousarray(flat.reshape(n_frames, n_codebooks).T)


def _crc(data: bytes | memoryview) -> int:
    """CRC32 of the whole file except the CRC field itself."""
    view = memoryview(data)
    return zlib.crc32(view[_PREFIX.size :], zlib.crc32(view[:_CRC_OFFSET]))


def to_bytes(header: CodesHeader, codes: np.ndarray) -> bytes:
    """Serialise a header and its codes `[Q, F]`; raises ValueError if they disagree."""
    if header.entropy_coded:
        raise ValueError("an entropy-coded header goes with to_bytes_coded")
    codes = np.asarray(codes)
    if codes.shape != (header.n_codebooks, header.n_frames):
        raise ValueError(
            f"codes have shape {codes.shape}, the header says "
            f"{(header.n_codebooks, header.n_frames)}"
        )
    return _seal(header, b"", pack_bits(codes, header.bits_per_code))


def to_bytes_coded(header: CodesHeader, payload: bytes) -> bytes:
    """Serialise an entropy-coded file: `header` has `FLAG_ENTROPY` and a `prior_id`,
    `payload` is the range coder's output."""
    if not header.entropy_coded:
        raise ValueError("to_bytes_coded needs a header with FLAG_ENTROPY")
    limit = max_coded_payload_size(header.n_codebooks * header.n_frames)
    if len(payload) > limit:
        raise ValueError(f"coded payload of {len(payload)} bytes exceeds the bound {limit}")
    extension = _ENTROPY_FIELDS.pack(header.prior_id, len(payload), 0)
    return _seal(header, extension, payload)


def _seal(header: CodesHeader, extension: bytes, payload: bytes) -> bytes:
    """Header, extension, payload, with the CRC filled in."""
    fields = _FIELDS.pack(
        header.flags,
        header.model_id,
        header.sample_rate,
        header.hop_length,
        header.n_codebooks,
        header.bits_per_code,
        header.n_frames,
        header.original_length,
    )
    size = HEADER_SIZE + len(extension)
    unsealed = _PREFIX.pack(MAGIC, VERSION, size, 0) + fields + extension + payload
    return unsealed[:_CRC_OFFSET] + struct.pack("<I", _crc(unsealed)) + unsealed[_PREFIX.size :]


def _truncated(what: str, expected: int, found: int) -> FormatError:
    return FormatError(f"truncated (expected {expected} bytes of {what}, found {found})")


def _corrupt() -> FormatError:
    return FormatError("checksum mismatch — the file is corrupt")


def _parse(data: bytes | memoryview) -> tuple[CodesHeader, memoryview]:
    """Validate everything but the model id; return the header and the payload bytes."""
    view = memoryview(data)
    if bytes(view[: len(MAGIC)]) != MAGIC[: len(view)]:
        raise FormatError("not a .codes file (bad magic)")
    if len(view) < _PREFIX.size:
        raise _truncated("header", HEADER_SIZE, len(view))
    _, version, header_size, crc = _PREFIX.unpack_from(view)
    if version != VERSION:
        if _crc(view) != crc:
            raise _corrupt()
        if version > VERSION:
            raise FormatError(
                f"written by format version {version}; this codec reads "
                f"version {VERSION} — upgrade codec"
            )
        raise FormatError(f"unknown format version {version}")
    if not HEADER_SIZE <= header_size <= MAX_HEADER_SIZE:
        raise FormatError(
            f"corrupt header (header_size {header_size} is outside "
            f"[{HEADER_SIZE}, {MAX_HEADER_SIZE}])"
        )
    if len(view) < header_size:
        raise _truncated("header", header_size, len(view))
    flags, *fields = _FIELDS.unpack_from(view, _PREFIX.size)
    if flags & ~_KNOWN_FLAGS:
        if _crc(view) != crc:
            raise _corrupt()
        raise FormatError(
            f"uses flags {flags:#x}, which format version {VERSION} does not define — upgrade codec"
        )
    prior_id, coded_size = None, None
    if flags & FLAG_ENTROPY:
        if header_size < ENTROPY_HEADER_SIZE:
            raise FormatError(
                f"corrupt header (an entropy-coded file has a header of at least "
                f"{ENTROPY_HEADER_SIZE} bytes, found {header_size})"
            )
        prior_id, coded_size, reserved = _ENTROPY_FIELDS.unpack_from(view, HEADER_SIZE)
        if reserved:
            raise FormatError("corrupt header (reserved field is not zero)")
    try:
        header = CodesHeader(*fields, flags=flags, prior_id=prior_id)
    except ValueError as e:
        raise FormatError(f"corrupt header ({e})") from None
    n_codes = header.n_codebooks * header.n_frames
    if coded_size is None:
        expected = _payload_size(n_codes, header.bits_per_code)
    else:
        expected = coded_size
        if coded_size > max_coded_payload_size(n_codes):
            raise FormatError(
                f"corrupt header (payload_size {coded_size} is outside "
                f"[0, {max_coded_payload_size(n_codes)}])"
            )
    found = len(view) - header_size
    if found < expected:
        raise _truncated("payload", expected, found)
    if found > expected:
        raise FormatError(f"{found - expected} unexpected bytes after the payload")
    if _crc(view) != crc:
        raise _corrupt()
    return header, view[header_size:]


def check_model(header: CodesHeader, expected_model_id: bytes) -> None:
    """ModelMismatchError unless `header` was written by the model with this id."""
    if not isinstance(expected_model_id, bytes) or len(expected_model_id) != MODEL_ID_SIZE:
        raise ValueError(f"expected_model_id must be {MODEL_ID_SIZE} bytes")
    if header.model_id != expected_model_id:
        found, loaded = header.model_id.hex(), expected_model_id.hex()
        if found[:8] != loaded[:8]:  # a short prefix, as git shows commits
            found, loaded = found[:8] + "...", loaded[:8] + "..."
        raise ModelMismatchError(
            f"encoded by model {found}, but the model loaded is {loaded}; "
            "pass --model with the model that encoded it"
        )


def from_bytes(data: bytes, expected_model_id: bytes | None = None) -> CodesFile:
    """Parse and validate a whole `.codes` file held in memory.

    Raises FormatError for anything but a valid version-1 file, and ModelMismatchError if
    `expected_model_id` is given and differs from the file's.
    """
    header, payload = _parse(data)
    if expected_model_id is not None:
        check_model(header, expected_model_id)
    if header.entropy_coded:
        return CodesFile(header=header, codes=None, payload=bytes(payload))
    codes = unpack_bits(payload, header.bits_per_code, header.n_codebooks, header.n_frames)
    return CodesFile(header=header, codes=codes)


def _read_bounded(path: str | os.PathLike[str]) -> bytes:
    """Read a file no larger than MAX_FILE_SIZE; OS errors become FormatError."""
    too_large = FormatError(f"{path}: larger than any .codes file ({MAX_FILE_SIZE} bytes)")
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size > MAX_FILE_SIZE:
                raise too_large
            data = f.read(MAX_FILE_SIZE + 1)  # bounded even if the file grows meanwhile
    except FileNotFoundError:
        raise FormatError(f"{path}: no such file") from None
    except OSError as e:
        raise FormatError(f"{path}: cannot read ({e.strerror})") from None
    if len(data) > MAX_FILE_SIZE:
        raise too_large
    return data


def write(path: str | os.PathLike[str], header: CodesHeader, codes: np.ndarray) -> None:
    """Write a `.codes` file atomically: a crash never leaves a partial file."""
    write_bytes_atomic(path, to_bytes(header, codes))


def write_coded(path: str | os.PathLike[str], header: CodesHeader, payload: bytes) -> None:
    """Write an entropy-coded `.codes` file atomically."""
    write_bytes_atomic(path, to_bytes_coded(header, payload))


def read(path: str | os.PathLike[str], expected_model_id: bytes | None = None) -> CodesFile:
    """Read and validate a `.codes` file; errors name the file."""
    data = _read_bounded(path)
    try:
        return from_bytes(data, expected_model_id)
    except (FormatError, ModelMismatchError) as e:
        raise type(e)(f"{path}: {e}") from None


def read_header(path: str | os.PathLike[str]) -> CodesHeader:
    """Read and validate a `.codes` file (bounds and CRC included) without decoding codes."""
    data = _read_bounded(path)
    try:
        return _parse(data)[0]
    except FormatError as e:
        raise FormatError(f"{path}: {e}") from None
