"""Validation during training: encode and decode fixed clips, measure, keep samples."""

from __future__ import annotations

import math

import numpy as np
import torch

from codec.eval.metrics import mel_distance, pesq_wb
from codec.models.codec import CodecModel


@torch.no_grad()
def validate(
    model: CodecModel, clips: list[np.ndarray], *, pesq_clips: int, device: torch.device
) -> tuple[dict[str, float], list[np.ndarray]]:
    """Mean mel distance over `clips` (and PESQ-WB over the first `pesq_clips`) after a
    round trip through `model` with all its codebooks. Returns the metrics and the
    decoded clips. Leaves the model in the mode it found it in."""
    was_training = model.training
    model.eval()
    mels, pesqs, decoded = [], [], []
    try:
        for i, clip in enumerate(clips):
            wav = torch.from_numpy(clip).to(device)[None, None]
            out = model(wav).audio[0, 0, : len(clip)].float().cpu().numpy()
            decoded.append(out)
            mels.append(mel_distance(clip, out, model.sample_rate))
            if i < pesq_clips:
                pesqs.append(pesq_wb(clip, out, model.sample_rate))
    finally:
        model.train(was_training)
    metrics = {"mel_distance": float(np.mean(mels)) if mels else math.nan}
    valid_pesq = [p for p in pesqs if not math.isnan(p)]
    if valid_pesq:
        metrics["pesq_wb"] = float(np.mean(valid_pesq))
    return metrics, decoded
