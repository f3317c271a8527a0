"""Compress and decompress whole files with bounded memory.

Long audio streams through the model in groups of `CHUNK_FRAMES` frames: every causal
convolution carries its history from one group to the next (`codec.streaming`), so
nothing is recomputed, memory does not grow with the file's length, and the result is
bit for bit the same however the input arrives (a file, a pipe, blocks of any size).

With `entropy=True` the codes are range-coded by the prior stored beside the model
(`codec.prior`), chunk by chunk as they are made; decoding notices an entropy-coded file
by its header and undoes it the same way, in bounded memory.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from codec import bitstream
from codec.atomic import write_bytes_atomic
from codec.audio import AudioWriter, iter_audio_blocks
from codec.bitstream.format import (
    FLAG_ENTROPY,
    CodesHeader,
    plain_file_size,
    to_bytes,
    to_bytes_coded,
)
from codec.errors import CodecError
from codec.models.codec import CodecModel
from codec.models.postfilter import PostFilter
from codec.pretrained import id_of, load_postfilter
from codec.streaming import CHUNK_FRAMES, StreamingDecoder, StreamingEncoder, StreamingPostFilter

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
    codes: torch.Tensor | Iterable[torch.Tensor],
    chunk_frames: int = CHUNK_FRAMES,
    *,
    compile: bool = False,
    postfilter: PostFilter | None = None,
) -> Iterator[torch.Tensor]:
    """Decode codes `[Q, F]` (or chunks `[Q, F_i]` of them, in order) group by group
    into audio blocks (`F * hop` samples in all).

    Concatenated, the blocks equal `model.decode(codes)` up to float rounding, passed
    through `postfilter` if one is given.
    """
    decoder = StreamingDecoder(model, chunk_frames, compile=compile)
    post = StreamingPostFilter(postfilter) if postfilter is not None else None
    if isinstance(codes, torch.Tensor):
        whole = codes
        codes = (whole[:, s : s + chunk_frames] for s in range(0, whole.shape[-1], chunk_frames))
    for chunk in codes:
        block = decoder.push(chunk)
        yield post.push(block) if post else block
    block = decoder.flush()
    if post:
        yield post.push(block)
        block = post.flush()
    yield block


def prior_for(model: CodecModel, header: CodesHeader | None = None):
    """The prior stored with `model` (`codec.prior.LoadedPrior`, loaded once per model);
    with `header`, checked to be the prior that coded that file."""
    from codec.prior.io import load_prior

    prior = model.__dict__.get("_prior")
    if prior is None:
        prior = load_prior(getattr(model, "path", None) or getattr(model, "name", None))
        if prior.codec_model_id != id_of(model):
            raise CodecError(
                f"the prior beside model '{getattr(model, 'name', '?')}' was trained for "
                "another codec; retrain it (codec prior train)"
            )
        model.__dict__["_prior"] = prior
    if header is not None and header.prior_id != prior.prior_id:
        raise CodecError(
            f"entropy-coded by prior {header.prior_id.hex()[:8]}..., but the model's prior "
            f"is {prior.prior_id.hex()[:8]}...; decode with the codec version that coded it"
        )
    return prior


def encode_stream(
    model: CodecModel,
    blocks: Iterable[np.ndarray],
    bitrate: float | None = None,
    progress: Progress | None = None,
    *,
    compile: bool = False,
    on_chunk: Callable[[np.ndarray], None] | None = None,
) -> tuple[CodesHeader, np.ndarray]:
    """Codes `[Q, F]` (uint16) and their header for mono blocks at the model's rate;
    `on_chunk` sees each chunk of codes `[Q, F_i]` as soon as it is made."""
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
        if on_chunk is not None:
            on_chunk(chunks[-1])
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


def encode_bytes(
    model: CodecModel,
    blocks: Iterable[np.ndarray],
    bitrate: float | None = None,
    progress: Progress | None = None,
    *,
    compile: bool = False,
    entropy: bool = False,
) -> tuple[CodesHeader, bytes]:
    """A whole `.codes` file for mono blocks at the model's rate.

    With `entropy`, the codes are range-coded by the model's prior as they are made (a
    file no larger than the plain one: if coding does not pay, the plain file is kept).
    """
    if not entropy:
        header, codes = encode_stream(model, blocks, bitrate, progress, compile=compile)
        return header, to_bytes(header, codes)
    prior = prior_for(model)
    from codec.prior.coding import EntropyEncoder

    coder = EntropyEncoder(prior.exact, model.n_codebooks_for(bitrate))
    header, codes = encode_stream(
        model, blocks, bitrate, progress, compile=compile, on_chunk=coder.push
    )
    coded = dataclasses.replace(header, flags=FLAG_ENTROPY, prior_id=prior.prior_id)
    data = to_bytes_coded(coded, coder.finish())
    if len(data) < plain_file_size(header):
        return coded, data
    return header, to_bytes(header, codes)


def encode_file(
    model: CodecModel,
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    bitrate: float | None = None,
    progress: Progress | None = None,
    *,
    compile: bool = False,
    entropy: bool = False,
) -> CodesHeader:
    """Compress audio file `src` into the `.codes` file `dst` (written atomically);
    `compile` runs the encoder through torch.compile, `entropy` range-codes the codes
    with the model's prior."""
    model.n_codebooks_for(bitrate)  # fail before reading any audio
    if entropy:
        prior_for(model)
    blocks = iter_audio_blocks(src, model.sample_rate)
    header, data = encode_bytes(model, blocks, bitrate, progress, compile=compile, entropy=entropy)
    write_bytes_atomic(dst, data)
    return header


def decode_stream(
    model: CodecModel, f: bitstream.CodesFile, *, compile: bool = False, postfilter: bool = True
) -> Iterator[np.ndarray]:
    """Audio blocks of a `.codes` file's contents, `original_length` samples in all.

    An entropy-coded file is decoded with the model's prior, chunk by chunk. The
    postfilter stored with the model (if any) is applied unless `postfilter=False`.
    """
    header = f.header
    if header.n_codebooks > model.config.n_codebooks or header.sample_rate != model.sample_rate:
        raise CodecError("the codes do not fit this model's codebooks or sample rate")
    if header.entropy_coded:
        from codec.prior.coding import decode_codes

        prior = prior_for(model, header)
        chunks = decode_codes(prior.exact, f.payload, header.n_codebooks, header.n_frames)
        codes = (torch.from_numpy(c) for c in chunks)
    else:
        codes = torch.from_numpy(f.codes.astype(np.int64))
    remaining = header.original_length
    pf = load_postfilter(model) if postfilter else None
    for block in decode_chunks(model, codes, compile=compile, postfilter=pf):
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
    postfilter: bool = True,
) -> CodesHeader:
    """Decompress the `.codes` file `src` into audio file `dst` (WAV or FLAC, atomic),
    through the model's postfilter if it has one, unless `postfilter=False`."""
    f = bitstream.read(src, expected_model_id=id_of(model))
    done = 0
    with AudioWriter(dst, f.header.sample_rate) as writer:
        try:
            for block in decode_stream(model, f, compile=compile, postfilter=postfilter):
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
