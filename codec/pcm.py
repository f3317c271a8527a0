"""Audio over pipes: a WAV or raw PCM stream in, WAV or raw PCM out.

Pipes cannot seek, so this reads a WAV header once and then the samples as they come,
and writes a WAV header whose sizes are known in advance (the decoder knows the length
from the `.codes` header). A stream that does not start with `RIFF....WAVE` is raw
16-bit little-endian PCM, mono, at a rate given by the caller. WAV writers that do not
know the length (sox, ffmpeg to a pipe) put 0 or 0xFFFFFFFF in the size fields: then
the samples run to the end of the stream.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from codec.audio import RESAMPLE_QUALITY
from codec.errors import AudioError

BLOCK_FRAMES = 16000  # frames read from the pipe at a time
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
_MAX_HEADER_CHUNK = 1 << 20  # a chunk before `data` larger than this is not a real header
_MAX_RATE = 384_000


def read_stream(
    stream: BinaryIO, sample_rate: int, raw_rate: int | None = None, name: str = "stdin"
) -> Iterator[np.ndarray]:
    """Mono float32 blocks at `sample_rate` from a WAV or raw s16le stream.

    `raw_rate` is the rate of raw PCM (default `sample_rate`); WAV carries its own.
    """
    head = _read_exactly(stream, 12)
    if len(head) == 12 and head[:4] == b"RIFF" and head[8:] == b"WAVE":
        rate, channels, decode, frame_bytes, size = _read_wav_header(stream, name)
        prefix = b""
    else:
        rate, channels, frame_bytes, size = raw_rate or sample_rate, 1, 2, None
        decode, prefix = _decoder(_PCM, 16), head
    blocks = _frames(stream, prefix, frame_bytes, size)
    any_audio = False
    resampler = (
        soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY)
        if rate != sample_rate
        else None
    )
    for data in blocks:
        wav = decode(data).reshape(-1, channels).mean(axis=1, dtype=np.float32)
        if not np.isfinite(wav).all():
            raise AudioError(f"{name}: contains NaN or infinite samples")
        any_audio = any_audio or len(wav) > 0
        yield resampler.resample_chunk(wav) if resampler else wav
    if not any_audio:
        raise AudioError(f"{name}: no audio samples")
    if resampler:
        yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    """Up to `n` bytes: fewer only at the end of the stream (pipes return short reads)."""
    parts, got = [], 0
    while got < n:
        part = stream.read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _read_wav_header(stream: BinaryIO, name: str):
    """Chunks up to `data`: returns (rate, channels, decoder, frame bytes, data size)."""
    fmt = None
    while True:
        chunk = _read_exactly(stream, 8)
        if len(chunk) < 8:
            raise AudioError(f"{name}: WAV stream ends before its audio data")
        tag, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if tag == b"data":
            break
        if size > _MAX_HEADER_CHUNK:
            raise AudioError(f"{name}: corrupt WAV header (chunk {tag!r} of {size} bytes)")
        body = _read_exactly(stream, size + (size & 1))
        if tag == b"fmt ":
            fmt = body[:size]
    if fmt is None or len(fmt) < 16:
        raise AudioError(f"{name}: WAV stream has no valid 'fmt ' chunk")
    tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack("<H", fmt[24:26])[0]  # the sub-format GUID starts with it
    if not (0 < channels <= 64 and 0 < rate <= _MAX_RATE) or block_align != channels * bits // 8:
        raise AudioError(f"{name}: corrupt WAV header ({channels} channels, {rate} Hz)")
    streaming = size in (0, 0xFFFFFFFF)
    return rate, channels, _decoder(tag, bits, name), block_align, None if streaming else size


def _decoder(tag: int, bits: int, name: str = "stdin"):
    """A function from little-endian sample bytes to float32 in [-1, 1]."""
    if tag == _PCM and bits == 16:
        return lambda b: np.frombuffer(b, "<i2").astype(np.float32) / 32768
    if tag == _PCM and bits == 32:
        return lambda b: (np.frombuffer(b, "<i4") / 2147483648).astype(np.float32)
    if tag == _PCM and bits == 24:
        return _pcm24
    if tag == _PCM and bits == 8:
        return lambda b: (np.frombuffer(b, np.uint8).astype(np.float32) - 128) / 128
    if tag == _FLOAT and bits == 32:
        return lambda b: np.frombuffer(b, "<f4").astype(np.float32)
    if tag == _FLOAT and bits == 64:
        return lambda b: np.frombuffer(b, "<f8").astype(np.float32)
    raise AudioError(f"{name}: unsupported WAV sample format (tag {tag}, {bits} bits)")


def _pcm24(b: bytes) -> np.ndarray:
    raw = np.frombuffer(b, np.uint8).reshape(-1, 3).astype(np.int32)
    value = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
    value = np.where(value >= 1 << 23, value - (1 << 24), value)
    return (value / float(1 << 23)).astype(np.float32)


def _frames(stream: BinaryIO, prefix: bytes, frame_bytes: int, size: int | None) -> Iterator[bytes]:
    """Whole frames, `BLOCK_FRAMES` at a time: `size` bytes in all, or to the end."""
    remaining, carry = size, prefix
    while remaining is None or remaining > 0:
        n = BLOCK_FRAMES * frame_bytes
        if remaining is not None:
            n = min(n, remaining)
        new = _read_exactly(stream, max(n - len(carry), 0))
        if remaining is not None:
            remaining -= len(new)
        data = carry + new
        whole = len(data) // frame_bytes * frame_bytes
        if whole:
            yield data[:whole]
        carry = data[whole:]
        if len(data) < n:  # the stream ended (a stray partial frame is dropped)
            return


def wav_header(n_frames: int, sample_rate: int, channels: int = 1) -> bytes:
    """A 44-byte header of a 16-bit PCM WAV of `n_frames` frames."""
    data = n_frames * channels * 2
    return (
        b"RIFF" + struct.pack("<I", 36 + data) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, _PCM, channels, sample_rate,
                                sample_rate * channels * 2, channels * 2, 16)
        + b"data" + struct.pack("<I", data)
    )  # fmt: skip


def to_pcm16(wav: np.ndarray) -> bytes:
    """Float samples as little-endian 16-bit PCM, clipped to [-1, 1] and converted by
    libsndfile, so a pipe carries the same samples as a WAV file written here."""
    buffer = io.BytesIO()
    wav = np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)
    sf.write(buffer, wav, 8000, format="RAW", subtype="PCM_16", endian="LITTLE")
    return buffer.getvalue()
