"""Generate audio with a codec's prior: sampling from scratch or continuing a prompt."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from codec.audio import AudioWriter, iter_audio_blocks
from codec.inference import decode_chunks, encode_stream, prior_for
from codec.models.codec import CodecModel
from codec.prior.coding import CHUNK_FRAMES, sample_codes, sampler


@dataclass
class Generated:
    """What `generate_audio` made: seconds sampled (after any prompt), codebooks, time."""

    seconds: float
    prompt_seconds: float
    n_q: int
    elapsed: float


def generate_audio(
    model: CodecModel,
    dst: str | os.PathLike[str],
    seconds: float,
    *,
    prompt: str | os.PathLike[str] | None = None,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    bitrate: float | None = None,
    progress: Callable[[float], None] | None = None,
) -> Generated:
    """Sample `seconds` of codes from the model's prior and decode them into `dst`
    (written atomically). With `prompt`, the output is the prompt (through the codec)
    followed by its continuation. The same seed gives the same file."""
    start = time.perf_counter()
    prior = prior_for(model)
    n_q = model.n_codebooks_for(bitrate)
    prompt_codes, prompt_seconds = None, 0.0
    if prompt is not None:
        header, codes = encode_stream(model, iter_audio_blocks(prompt, model.sample_rate), bitrate)
        prompt_codes, prompt_seconds = (
            codes.astype(np.int64),
            header.n_frames / model.config.frame_rate,
        )
    n_frames = max(1, round(seconds * model.config.frame_rate))
    choose = sampler(np.random.default_rng(seed), temperature, top_k, top_p)

    def chunks():
        if prompt_codes is not None:
            for s in range(0, prompt_codes.shape[1], CHUNK_FRAMES):
                yield torch.from_numpy(prompt_codes[:, s : s + CHUNK_FRAMES])
        done = 0
        for chunk in sample_codes(prior.exact, n_frames, n_q, choose, prompt_codes):
            done += chunk.shape[1]
            if progress:
                progress(done / model.config.frame_rate)
            yield torch.from_numpy(chunk)

    with torch.inference_mode(), AudioWriter(dst, model.sample_rate) as writer:
        for block in decode_chunks(model, chunks()):
            writer.write(block.numpy())
    return Generated(
        n_frames / model.config.frame_rate, prompt_seconds, n_q, time.perf_counter() - start
    )
