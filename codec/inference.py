"""Compress and decompress whole files with bounded memory.

Long audio streams through the model in groups of `CHUNK_FRAMES` frames: every causal
convolution carries its history from one group to the next (`codec.streaming`), so
nothing is recomputed, memory does not grow with the file's length, and the result is
bit for bit the same however the input arrives (a file, a pipe, blocks of any size).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from codec import bitstream
from codec.audio import AudioWriter, iter_audio_blocks
from codec.bitstream.format import CodesHeader
from codec.errors import CodecError
from codec.models.codec import CodecModel
from codec.pretrained import id_of
from codec.streaming import CHUNK_FRAMES, StreamingDecoder, StreamingEncoder

Progress = Callable[[float], None]  # called with seconds of audio done so far


def encode_chunks(
    model: CodecModel,
    blocks: Iterable[np.ndarray],
    bitrate: float | None = None,
    chunk_frames: int = CHUNK_FRAMES,
    *,
    compile: bool = False,
) -> Iterator[torch.Tensor]:
    """Encode a stream of mono audio blocks `[N]` (any sizes) into code chunks `[Q, F_i]`.

    Concatenated, the chunks are the codes of the whole signal (as `model.encode`, up
    to float rounding in near-ties), the last frame zero-padded.
    """
    encoder = StreamingEncoder(model, bitrate, chunk_frames, compile=compile)
    for block in blocks:
        codes = encoder.push(block)
        if codes.shape[1]:
            yield codes
    yield encoder.flush()


def decode_chunks(
    model: CodecModel,
    codes: torch.Tensor,
    chunk_frames: int = CHUNK_FRAMES,
    *,
    compile: bool = False,
) -> Iterator[torch.Tensor]:
    """Decode codes `[Q, F]` group by group into audio blocks (`F * hop` samples in all).

    Concatenated, the blocks equal `model.decode(codes)` up to float rounding.
    """
    decoder = StreamingDecoder(model, chunk_frames, compile=compile)
    for start in range(0, codes.shape[-1], chunk_frames):
        yield decoder.push(codes[:, start : start + chunk_frames])
    yield decoder.flush()


def encode_stream(
    model: CodecModel,
    blocks: Iterable[np.ndarray],
    bitrate: float | None = None,
    progress: Progress | None = None,
    *,
    compile: bool = False,
) -> tuple[CodesHeader, np.ndarray]:
    """Codes `[Q, F]` (uint16) and their header for mono blocks at the model's rate."""
    sr = model.sample_rate
    chunks, length = [], 0

    def counted(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal length
        for b in blocks:
            length += len(b)
            yield b

    done = 0
    for chunk in encode_chunks(model, counted(blocks), bitrate, compile=compile):
        chunks.append(chunk.numpy().astype(np.uint16))
        done += chunk.shape[-1] * model.hop_length
        if progress:
            progress(min(done, length) / sr)  # the last frame is padded past the end
    codes = np.concatenate(chunks, axis=1)
    header = CodesHeader(
        model_id=id_of(model),
        sample_rate=sr,
        hop_length=model.hop_length,
        n_codebooks=codes.shape[0],
        bits_per_code=model.config.bits_per_code,
        n_frames=codes.shape[1],
        original_length=length,
    )
    return header, codes


def encode_file(
    model: CodecModel,
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    bitrate: float | None = None,
    progress: Progress | None = None,
    *,
    compile: bool = False,
) -> CodesHeader:
    """Compress audio file `src` into the `.codes` file `dst` (written atomically);
    `compile` runs the encoder through torch.compile."""
    model.n_codebooks_for(bitrate)  # fail before reading any audio
    blocks = iter_audio_blocks(src, model.sample_rate)
    header, codes = encode_stream(model, blocks, bitrate, progress, compile=compile)
    bitstream.write(dst, header, codes)
    return header


def decode_stream(
    model: CodecModel, f: bitstream.CodesFile, *, compile: bool = False
) -> Iterator[np.ndarray]:
    """Audio blocks of a `.codes` file's contents, `original_length` samples in all."""
    header = f.header
    if header.n_codebooks > model.config.n_codebooks or header.sample_rate != model.sample_rate:
        raise CodecError("the codes do not fit this model's codebooks or sample rate")
    codes = torch.from_numpy(f.codes.astype(np.int64))
    remaining = header.original_length
    for block in decode_chunks(model, codes, compile=compile):
        out = block[:remaining].numpy()
        remaining -= len(out)
        if len(out):
            yield out


def decode_file(
    model: CodecModel,
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    progress: Progress | None = None,
    *,
    compile: bool = False,
) -> CodesHeader:
    """Decompress the `.codes` file `src` into audio file `dst` (WAV or FLAC, atomic)."""
    f = bitstream.read(src, expected_model_id=id_of(model))
    done = 0
    with AudioWriter(dst, f.header.sample_rate) as writer:
        try:
            for block in decode_stream(model, f, compile=compile):
                writer.write(block)
                done += len(block)
                if progress:
                    progress(done / f.header.sample_rate)
        except CodecError as e:
            raise CodecError(f"{src}: {e}") from None
    return f.header


def output_path(src: Path, root_in: Path, root_out: Path, suffix: str) -> Path:
    """Where the output for `src` goes when a folder is processed: same tree, new suffix."""
    return (root_out / src.relative_to(root_in)).with_suffix(suffix)
