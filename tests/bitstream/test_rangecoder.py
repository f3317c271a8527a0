"""The range coder: lossless for any alphabet and any frequencies, and close to entropy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.bitstream.rangecoder import MAX_TOTAL, RangeDecoder, RangeEncoder


def encode(tables: list[np.ndarray], symbols: list[int]) -> bytes:
    enc = RangeEncoder()
    for freq, s in zip(tables, symbols, strict=True):
        cum = int(freq[:s].sum())
        enc.encode(cum, int(freq[s]), int(freq.sum()))
    return enc.finish()


def decode(data: bytes, tables: list[np.ndarray]) -> list[int]:
    dec = RangeDecoder(data)
    out = []
    for freq in tables:
        cum = np.cumsum(freq)
        s = int(np.searchsorted(cum, dec.target(int(cum[-1])), side="right"))
        dec.consume(int(cum[s] - freq[s]), int(freq[s]))
        out.append(s)
    return out


@st.composite
def streams(draw, alphabet: int | None = None):
    """Random tables of one alphabet size, from uniform to extremely skewed, and symbols
    drawn anywhere in them (the rarest included)."""
    k = alphabet or draw(st.integers(1, 300))
    n = draw(st.integers(0, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    max_freq = draw(st.sampled_from([1, 2, 1000, 2**16, (MAX_TOTAL - k) // k + 1]))
    tables, symbols = [], []
    for _ in range(n):
        freq = rng.integers(1, max_freq + 1, size=k, dtype=np.int64)
        if rng.random() < 0.3:  # one symbol takes nearly all the mass
            freq[rng.integers(k)] = MAX_TOTAL - int(freq.sum())
        if freq.sum() > MAX_TOTAL:
            freq = np.maximum(freq * (MAX_TOTAL // 2) // int(freq.sum()), 1)
        tables.append(freq)
        symbols.append(int(rng.integers(k)) if rng.random() < 0.5 else int(np.argmin(freq)))
    return tables, symbols


@settings(max_examples=300, deadline=None)
@given(streams())
def test_round_trips_random_streams(stream) -> None:
    tables, symbols = stream
    assert decode(encode(tables, symbols), tables) == symbols


@pytest.mark.parametrize("alphabet", [1, 2, 3, 7, 255, 256, 257, 1024, 4096, 65536])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_round_trips_every_alphabet_size(alphabet: int, data) -> None:
    tables, symbols = data.draw(streams(alphabet))
    assert decode(encode(tables, symbols), tables) == symbols


def test_every_small_alphabet_round_trips_every_symbol() -> None:
    for k in range(1, 65):
        freq = np.arange(1, k + 1, dtype=np.int64) ** 3
        symbols = list(range(k)) * 3
        tables = [freq] * len(symbols)
        assert decode(encode(tables, symbols), tables) == symbols


def test_costs_the_information_content_plus_a_few_bytes() -> None:
    rng = np.random.default_rng(0)
    freq = rng.integers(1, 2**20, size=1024)
    p = freq / freq.sum()
    symbols = rng.choice(1024, size=20_000, p=p).tolist()
    bits = -sum(math.log2(p[s]) for s in symbols)
    data = encode([freq] * len(symbols), symbols)
    assert bits / 8 <= len(data) <= bits / 8 + 9


def test_a_certain_symbol_costs_nothing() -> None:
    freq = np.array([1, MAX_TOTAL - 2, 1])
    assert len(encode([freq] * 1000, [1] * 1000)) <= 9


def test_empty_stream() -> None:
    assert RangeEncoder().finish() == b""


@pytest.mark.parametrize(
    "cum, freq, total", [(0, 0, 4), (3, 2, 4), (-1, 1, 4), (0, 1, MAX_TOTAL + 1)]
)
def test_rejects_bad_frequencies(cum: int, freq: int, total: int) -> None:
    with pytest.raises(ValueError):
        RangeEncoder().encode(cum, freq, total)
