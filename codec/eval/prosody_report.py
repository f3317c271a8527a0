"""Held-out figures of a trained prosody model, the row of docs/prosody.md's table.

`evaluate_run(run)` loads a `codec prosody train` run, rebuilds its validation data
(the same split and normalisation as training, features from the cache) and reports:

- `nll_per_frame`: the negative IWAE-K bound in nats per real frame (K = 500 by
  default; RNN-Gauss, which has no latent, gives its exact NLL);
- `elbo_per_frame` and `kl_per_frame` (nats), one latent sample per utterance;
- `f0_rmse_cents` over frames voiced in both the utterance and its reconstruction (each
  utterance's errors scaled back by the log-F0 std that normalised it), and
  `voicing_error`, the fraction of frames whose voicing flips;
- `active_units`: for global latents (VRAE, each ladder layer) the dimensions whose
  posterior mean varies across utterances (Cov > 0.01, Burda et al. 2016); for per-frame
  latents (VRNN, SRNN), whose conditional prior moves with the data, the dimensions
  carrying more than 0.01 nats of KL per frame on average; 0 for RNN-Gauss;
- for global latents, `mutual_information` (nats) between utterance and latent, and
  `speaker_purity` of k-means clusters of the posterior means against speaker labels.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from codec.eval.prosody import (
    CENTS_PER_NEPER,
    active_units,
    cluster_purity,
    kl_summary,
    mutual_information,
    nll_per_frame,
    posterior_means,
    posteriors,
)
from codec.eval.prosody_analysis import load_run
from codec.models.prosody import VRAE, LadderVAE
from codec.train.prosody import ProsodyData

ACTIVE_KL = 0.01  # nats per frame for a per-frame latent dimension to count as active


@torch.no_grad()
def evaluate_run(
    run_dir: str | Path, k: int = 500, batch_size: int = 16, seed: int = 0, limit: int = 0
) -> dict[str, Any]:
    """The held-out figures of one run (see the module docstring); `limit` keeps the
    first utterances of the validation split (in manifest order), 0 all of them."""
    start = time.perf_counter()
    model, recipe = load_run(run_dir)
    data = ProsodyData(recipe, note=lambda _: None)
    if limit:
        data.valid, data.valid_f0_std = data.valid[:limit], data.valid_f0_std[:limit]
        data.valid_speakers = data.valid_speakers[:limit]
    batches = list(data.valid_batches(batch_size))
    stds = data.valid_f0_std
    torch.manual_seed(seed)
    outputs, sq_cents, voiced, flips, frames = [], 0.0, 0, 0, 0
    for i, (x, mask) in enumerate(batches):
        outputs.append(model.elbo(x, mask))
        x_hat = model.reconstruct(x, mask)
        std = torch.tensor(stds[i * batch_size : i * batch_size + len(x)], dtype=x.dtype)
        real = mask.bool()
        both = real & (x[..., 1] > 0.5) & (x_hat[..., 1] > 0.5)
        cents = (x[..., 0] - x_hat[..., 0]) * std[:, None] * CENTS_PER_NEPER
        sq_cents += cents[both].pow(2).sum().item()
        voiced += int(both.sum())
        flips += int((((x[..., 1] > 0.5) != (x_hat[..., 1] > 0.5)) & real).sum())
        frames += int(real.sum())
    kl = kl_summary(outputs)
    elbo = sum(o.bound.sum().item() for o in outputs) / frames
    torch.manual_seed(seed)
    nll = nll_per_frame(model, batches, k)
    return {
        "run": str(run_dir),
        "kind": recipe.model.kind,
        "utterances": len(data.valid),
        "frames": frames,
        "k": k,
        "nll_per_frame": nll,
        "elbo_per_frame": elbo,
        "kl_per_frame": kl["kl_per_frame"],
        "f0_rmse_cents": (sq_cents / voiced) ** 0.5 if voiced else float("nan"),
        "voicing_error": flips / max(frames, 1),
        "active_units": _active_units(model, batches, outputs),
        **_global_latents(model, batches, data.valid_speakers),
        "seconds": time.perf_counter() - start,
    }


def _global_latents(model, batches, speakers: list[str]) -> dict[str, Any]:
    """For global latents (VRAE, each ladder layer): the mutual information between
    utterance and latent (nats, at most log N), and the purity of k-means clusters of the
    posterior means against speakers (k = number of speakers), next to the purity of
    putting every utterance in one cluster."""
    if not isinstance(model, (VRAE, LadderVAE)):
        return {}
    q = posteriors(model, batches)
    layers = q if isinstance(q, dict) else {"z": q}
    labelled = [i for i, s in enumerate(speakers) if s]
    names = [speakers[i] for i in labelled]
    out: dict[str, Any] = {
        "mutual_information": {n: mutual_information(g.mean, g.log_var) for n, g in layers.items()}
    }
    if len(set(names)) > 1:
        out["speaker_purity"] = {
            n: cluster_purity(g.mean[labelled], names) for n, g in layers.items()
        }
        out["speaker_purity_one_cluster"] = max(names.count(s) for s in set(names)) / len(names)
        out["speakers"] = len(set(names))
    return out


def _active_units(model, batches, outputs: list) -> dict[str, int]:
    if isinstance(model, (VRAE, LadderVAE)):
        means = posterior_means(model, batches)
        if isinstance(means, dict):
            return {name: active_units(m) for name, m in means.items()}
        return {"z": active_units(means)}
    if outputs[0].kl_per_dim is None:
        return {}
    return {"z": kl_active_units(outputs)}


def kl_active_units(outputs: list, threshold: float = ACTIVE_KL) -> int:
    """Dimensions of a per-frame latent carrying more than `threshold` nats of KL per
    real frame over `outputs` (BoundOutputs). Each batch's total KL is split over the
    dimensions in the proportions of its `kl_per_dim`, which models normalise
    differently (per frame `[D]`, or per step `[T, D]` averaged over the batch)."""
    totals = 0.0
    for o in outputs:
        shares = o.kl_per_dim.reshape(-1, o.kl_per_dim.shape[-1]).sum(0)
        totals = totals + shares / shares.sum().clamp(min=1e-12) * o.kl.sum()
    frames = sum(o.frames.sum() for o in outputs)
    return int((totals / frames > threshold).sum())


def table_row(m: dict[str, Any]) -> str:
    """A markdown row: model, NLL, ELBO, KL, F0 RMSE, voicing error, active units."""
    au = ", ".join(f"{v}" for v in m["active_units"].values()) or "0"
    return (
        f"| {m['kind']} | {m['nll_per_frame']:.3f} | {-m['elbo_per_frame']:.3f} | "
        f"{m['kl_per_frame']:.3f} | {m['f0_rmse_cents']:.0f} | {m['voicing_error']:.1%} | {au} |"
    )


TABLE_HEADER = (
    "| model | NLL (IWAE-K) nats/frame | -ELBO nats/frame | KL nats/frame | F0 RMSE (cents) "
    "| voicing error | active units |\n|---|---|---|---|---|---|---|"
)
