"""Compress and decompress whole files with bounded memory.

Long audio is processed in chunks. Each chunk is run with enough of the previous
audio (or codes) in front of it to cover the model's receptive field, and the outputs
for that context are dropped, so for the causal model the result does not depend on
where the chunks fall, and memory does not grow with the file's length.
"""

from __future__ import annotations

import math
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

Progress = Callable[[float], None]  # called with seconds of audio done so far
CHUNK_FRAMES = 1500  # 30 s at 50 Hz: activations of a chunk stay well under 100 MB


def _context_frames(model: CodecModel) -> tuple[int, int]:
    """Frames of history the encoder (in hops of audio) and decoder need, with a margin."""
    enc, dec = model.receptive_field()
    return math.ceil(enc / model.hop_length) + 1, dec + 1


@torch.inference_mode()
def encode_chunks(
    model: CodecModel,
    blocks: Iterable[np.ndarray],
    bitrate: float | None = None,
    chunk_frames: int = CHUNK_FRAMES,
) -> Iterator[torch.Tensor]:
    """Encode a stream of mono audio blocks `[N]` (any sizes) into code chunks `[Q, F_i]`.

    Concatenated, the chunks equal `model.encode(whole_signal)` for a causal model.
    """
    if not model.config.causal:
        raise CodecError("chunked encoding needs a causal model")
    hop = model.hop_length
    context = _context_frames(model)[0] * hop
    model.n_codebooks_for(bitrate)  # fail before reading any audio
    step = chunk_frames * hop
    pending = np.zeros(0, dtype=np.float32)
    history = np.zeros(0, dtype=np.float32)

    def run(new: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.concatenate([history, new]))
        codes = model.encode(x, bitrate)
        return codes[:, len(history) // hop :]

    for block in blocks:
        pending = np.concatenate([pending, block.astype(np.float32, copy=False)])
        while len(pending) >= step:
            new, pending = pending[:step], pending[step:]
            yield run(new)
            history = np.concatenate([history, new])[-context:]
    if len(pending):
        yield run(pending)


@torch.inference_mode()
def decode_chunks(
    model: CodecModel, codes: torch.Tensor, chunk_frames: int = CHUNK_FRAMES
) -> Iterator[torch.Tensor]:
    """Decode codes `[Q, F]` chunk by chunk into audio blocks `[chunk_frames * hop]`.

    Concatenated, the blocks equal `model.decode(codes)` for a causal model.
    """
    if not model.config.causal:
        raise CodecError("chunked decoding needs a causal model")
    context = _context_frames(model)[1]
    hop = model.hop_length
    for start in range(0, codes.shape[-1], chunk_frames):
        left = max(0, start - context)
        wav = model.decode(codes[:, left : start + chunk_frames])
        yield wav[(start - left) * hop :]


def encode_file(
    model: CodecModel,
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    bitrate: float | None = None,
    progress: Progress | None = None,
) -> CodesHeader:
    """Compress audio file `src` into the `.codes` file `dst` (written atomically)."""
    sr = model.sample_rate
    chunks, done = [], 0.0
    length = 0

    def counted(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal length
        for b in blocks:
            length += len(b)
            yield b

    for chunk in encode_chunks(model, counted(iter_audio_blocks(src, sr)), bitrate):
        chunks.append(chunk.numpy().astype(np.uint16))
        done += chunk.shape[-1] * model.hop_length / sr
        if progress:
            progress(min(done, length / sr))  # the last chunk is padded past the end
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
    bitstream.write(dst, header, codes)
    return header


def decode_file(
    model: CodecModel,
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    progress: Progress | None = None,
) -> CodesHeader:
    """Decompress the `.codes` file `src` into audio file `dst` (WAV or FLAC, atomic)."""
    f = bitstream.read(src, expected_model_id=id_of(model))
    header = f.header
    if header.n_codebooks > model.config.n_codebooks or header.sample_rate != model.sample_rate:
        raise CodecError(f"{src}: does not fit this model's codebooks or sample rate")
    codes = torch.from_numpy(f.codes.astype(np.int64))
    remaining = header.original_length
    with AudioWriter(dst, header.sample_rate) as writer:
        for block in decode_chunks(model, codes):
            out = block[:remaining].numpy()
            writer.write(out)
            remaining -= len(out)
            if progress:
                progress((header.original_length - remaining) / header.sample_rate)
    return header


def output_path(src: Path, root_in: Path, root_out: Path, suffix: str) -> Path:
    """Where the output for `src` goes when a folder is processed: same tree, new suffix."""
    return (root_out / src.relative_to(root_in)).with_suffix(suffix)
