"""One utterance through a trained prosody model: contours, reconstruction, latents.

`analyze(run_dir, wav)` loads the run's checkpoint, extracts the utterance's prosody,
normalises it per utterance, and returns the reference and the reconstruction with
their F0 error, voicing error and ELBO; `plot_analysis` draws them (F0 in Hz, energy in
dB, the posterior means of a global latent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from codec.audio import load_audio
from codec.config import ProsodyRecipe, from_dict
from codec.errors import CodecError
from codec.eval.prosody import f0_rmse_cents, voicing_error
from codec.features import ProsodyConfig, ProsodyStats, extract
from codec.models.prosody import VRAE, LadderVAE
from codec.train.checkpoint import checkpoint_path, load_checkpoint
from codec.train.prosody import build_model, frames_matrix, pad_batch

_DB_PER_NEPER = 20 / math.log(10)  # log RMS (natural log) to dB


@dataclass
class Analysis:
    """An utterance's prosody and a model's reconstruction of it (`[T, 3]`, normalised)."""

    kind: str
    reference: torch.Tensor
    reconstruction: torch.Tensor
    stats: ProsodyStats
    elbo_per_frame: float
    f0_rmse_cents: float
    voicing_error: float
    latents: dict[str, np.ndarray]  # posterior means of global latents, by layer


def load_run(run_dir: str | Path) -> tuple[nn.Module, ProsodyRecipe]:
    """The model and recipe of a `codec prosody train` run folder (or its checkpoint)."""
    path = checkpoint_path(run_dir)
    state = load_checkpoint(path)
    if not {"model", "recipe"} <= set(state):
        raise CodecError(f"{path}: not a prosody training checkpoint")
    recipe = from_dict(ProsodyRecipe, state["recipe"], where=f"{path} recipe")
    model = build_model(recipe.model)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise CodecError(f"{path}: weights do not match the recipe's model") from None
    return model.eval(), recipe


@torch.no_grad()
def analyze(run_dir: str | Path, wav_path: str | Path, seed: int = 0) -> Analysis:
    model, recipe = load_run(run_dir)
    config = ProsodyConfig()
    features = extract(load_audio(wav_path, config.sample_rate), config)
    if features.num_frames == 0:
        raise CodecError(f"{wav_path}: too short for prosody analysis")
    stats = ProsodyStats.fit([features])
    frames = frames_matrix(stats.apply(features))
    x, mask = pad_batch([frames], len(frames))
    torch.manual_seed(seed)  # the ELBO draws one latent sample
    out = model.elbo(x, mask)
    x_hat = model.reconstruct(x, mask)
    return Analysis(
        kind=recipe.model.kind,
        reference=x[0],
        reconstruction=x_hat[0],
        stats=stats,
        elbo_per_frame=float(out.bound.sum() / out.frames.sum()),
        f0_rmse_cents=f0_rmse_cents(x, x_hat, mask, (stats.f0_mean, stats.f0_std)),
        voicing_error=voicing_error(x, x_hat, mask),
        latents=_latents(model, x, mask),
    )


def _latents(model: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> dict[str, np.ndarray]:
    if isinstance(model, VRAE):
        return {"z": model.posterior(x, mask).mean[0].numpy()}
    if isinstance(model, LadderVAE):
        q = model.infer(x, mask).q
        return {f"layer{i}": g.mean[0].numpy() for i, g in enumerate(q)}
    return {}


def plot_analysis(a: Analysis, path: str | Path, frame_rate: float = 50.0) -> Path:
    """A PNG: F0 (Hz, voiced frames) and energy (dB) of the utterance and of the model's
    reconstruction, and the posterior means of global latents when the model has them."""
    from matplotlib.figure import Figure

    rows = 3 if a.latents else 2
    fig = Figure(figsize=(9, 2.4 * rows))
    axes = fig.subplots(rows, 1)
    t = np.arange(len(a.reference)) / frame_rate
    recon = f"{a.kind}, teacher-forced reconstruction"
    for seq, label in ((a.reference, "utterance"), (a.reconstruction, recon)):
        seq = seq.numpy()
        hz = np.exp(seq[:, 0] * a.stats.f0_std + a.stats.f0_mean)
        axes[0].plot(t, np.where(seq[:, 1] > 0.5, hz, np.nan), label=label)
        db = (seq[:, 2] * a.stats.energy_std + a.stats.energy_mean) * _DB_PER_NEPER
        axes[1].plot(t, db, label=label)
    axes[0].set_ylabel("F0 (Hz)")
    axes[0].set_title(
        f"F0 RMSE {a.f0_rmse_cents:.0f} cents, voicing error {a.voicing_error:.1%}, "
        f"ELBO {a.elbo_per_frame:.2f} nats/frame",
        fontsize="small",
    )
    axes[0].legend(fontsize="small")
    axes[1].set_ylabel("energy (dB)")
    axes[1].set_xlabel("time (s)")
    if a.latents:
        offset = 0
        for name, means in a.latents.items():
            axes[2].bar(np.arange(len(means)) + offset, means, label=name)
            offset += len(means) + 1
        axes[2].set_ylabel("posterior mean")
        axes[2].legend(fontsize="small")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
