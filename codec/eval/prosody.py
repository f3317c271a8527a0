"""Evaluation of the prosody VAEs: likelihood, reconstruction, and latent diagnostics.

Pure functions over models and `(x [B, T, 3], mask [B, T])` batches (frame layout in
`codec.models.prosody.base`). Likelihoods are in nats per real frame; F0 errors in cents.
Latent diagnostics follow the papers: active units (Burda et al. 2016), the mutual
information I_q(x; z) of a global latent (Hoffman & Johnson 2016), per-layer KL, latent
traversals and speaker-cluster purity. Only `plot_traversal` writes a file.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

from codec.models.prosody.base import FEATURES, BoundOutput, Emission
from codec.models.prosody.ladder import LadderVAE
from codec.models.prosody.objectives import Gaussian, gaussian_log_prob
from codec.models.prosody.vrae import VRAE

CENTS_PER_NEPER = 1200.0 / math.log(2.0)  # 1200 * log2(ratio) = 1200 / ln 2 * ln(ratio)

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


# Likelihood and reconstruction.


@torch.no_grad()
def nll_per_frame(model: nn.Module, batches: Batches, k: int = 500, chunk: int = 64) -> float:
    """Negative IWAE-`k` bound in nats per real frame over `(x [B, T, 3], mask [B, T])`
    batches: `-sum iwae / sum frames`. `chunk` (samples drawn at once) is passed to models
    whose `iwae` takes it; RNN-Gauss has no latents and gives its exact likelihood."""
    kwargs = {"chunk": chunk} if "chunk" in inspect.signature(model.iwae).parameters else {}
    total, frames = 0.0, 0.0
    for x, mask in batches:
        total -= model.iwae(x, mask, k, **kwargs).sum().item()
        frames += mask.sum().item()
    return total / max(frames, 1.0)


def f0_rmse_cents(
    x: torch.Tensor, x_hat: torch.Tensor, mask: torch.Tensor, f0_stats: tuple[float, float]
) -> float:
    """RMSE in cents of log-F0 `x[..., 0]` against `x_hat[..., 0]` (both `[B, T, 3]`) over
    the real frames voiced in both; `f0_stats = (mean, std)` of the natural-log F0 undoes
    the normalisation (the mean cancels). NaN when no frame is voiced in both."""
    _, std = f0_stats
    both = mask.bool() & (x[..., 1] > 0.5) & (x_hat[..., 1] > 0.5)
    if not both.any():
        return float("nan")
    diff = (x[..., 0] - x_hat[..., 0])[both] * std * CENTS_PER_NEPER
    return diff.pow(2).mean().sqrt().item()


def voicing_error(x: torch.Tensor, x_hat: torch.Tensor, mask: torch.Tensor) -> float:
    """Fraction of real frames (`mask [B, T]`) whose voicing `[..., 1]` differs."""
    real = mask.bool()
    differs = (x[..., 1] > 0.5) != (x_hat[..., 1] > 0.5)
    return (differs & real).sum().item() / max(real.sum().item(), 1)


# Latent diagnostics of the global-latent models (VRAE, Ladder VAE).


@torch.no_grad()
def posteriors(model: VRAE | LadderVAE, batches: Batches) -> Gaussian | dict[str, Gaussian]:
    """The posteriors `q(z | x)` of every sequence, `[N, D]` each: one Gaussian for the
    VRAE, or `{"layer0": ..., ...}` (bottom to top, as in `kl_per_dim`) for the ladder."""
    parts: list[list[Gaussian]] = []
    for x, mask in batches:
        if isinstance(model, LadderVAE):
            parts.append(list(model.infer(x, mask).q))
        else:
            parts.append([model.posterior(x, mask)])
    layers = [
        Gaussian(torch.cat([p[i].mean for p in parts]), torch.cat([p[i].log_var for p in parts]))
        for i in range(len(parts[0]))
    ]
    if isinstance(model, LadderVAE):
        return {f"layer{i}": g for i, g in enumerate(layers)}
    return layers[0]


def posterior_means(
    model: VRAE | LadderVAE, batches: Batches
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Posterior means `E_q[z | x]` `[N, D]` (VRAE) or a dict layer -> `[N, D_l]` (ladder)."""
    q = posteriors(model, batches)
    if isinstance(q, dict):
        return {name: g.mean for name, g in q.items()}
    return q.mean


def active_units(means: torch.Tensor, threshold: float = 0.01) -> int:
    """Active units (Burda et al. 2016): dimensions `d` of the posterior means `[N, D]` with
    `Cov_x(E_q[z_d | x]) > threshold`."""
    return int((means.var(0, correction=0) > threshold).sum().item())


def mutual_information(
    mean: torch.Tensor, log_var: torch.Tensor, samples: int = 10, seed: int = 0
) -> float:
    """I_q(x; z) in nats of a global latent from posteriors `mean, log_var [N, D]`
    (Hoffman & Johnson 2016): `E_x E_q(z|x)[log q(z|x)] - E_z[log q(z)]`, with the
    aggregate posterior `q(z)` the mixture of the N posteriors and `samples` draws of z
    from each. Bounded by log N."""
    n = mean.shape[0]
    generator = torch.Generator(device=mean.device).manual_seed(seed)
    eps = torch.randn(samples, *mean.shape, generator=generator, device=mean.device)
    z = mean + torch.exp(0.5 * log_var) * eps  # [S, N, D]
    log_q_own = gaussian_log_prob(z, mean, log_var, -1)  # [S, N]
    log_q_all = gaussian_log_prob(z.unsqueeze(2), mean, log_var, -1)  # [S, N, N]
    log_q_agg = torch.logsumexp(log_q_all, dim=2) - math.log(n)
    return (log_q_own - log_q_agg).mean().item()


def kl_summary(outputs: Sequence[BoundOutput]) -> dict[str, float | list[float]]:
    """KL diagnostics over the bounds of several batches.

    `"kl_per_frame"`: total KL / real frames. For each `kl_per_dim` entry (`"kl_per_dim"`,
    or `"layer0"`, ... for the ladder) the mean per dimension, weighted by batch size, as a
    list, and its sum as `"<name>_total"`. A per-step `[T, D]` (SRNN) is summed over steps
    first, since padded lengths differ between batches.
    """
    kl = sum(o.kl.sum().item() for o in outputs)
    frames = sum(o.frames.sum().item() for o in outputs)
    summary: dict[str, float | list[float]] = {"kl_per_frame": kl / max(frames, 1.0)}
    sums: dict[str, torch.Tensor] = {}
    count = 0
    for o in outputs:
        per_dim = o.kl_per_dim
        if per_dim is None:
            continue
        named = per_dim if isinstance(per_dim, dict) else {"kl_per_dim": per_dim}
        batch = o.kl.shape[0]
        count += batch
        for name, t in named.items():
            t = t.reshape(-1, t.shape[-1]).sum(0) * batch
            sums[name] = sums[name] + t if name in sums else t
    for name, total in sums.items():
        summary[name] = (total / count).tolist()
        summary[f"{name}_total"] = (total / count).sum().item()
    return summary


# Latent traversals.


@torch.no_grad()
def traversal(
    model: VRAE, base_z: torch.Tensor, dim: int, values: Sequence[float], T: int
) -> torch.Tensor:
    """Frames `[V, T, 3]` decoded from `base_z [D]` with `z[dim]` set to each of the V
    `values`. The VRAE's `decode` is teacher-forced, so this runs its decoder free: each
    step emits its most likely frame (`Emission.mean`, log-F0 zeroed where unvoiced, as in
    the data) and feeds it back as the next input."""
    z = base_z.reshape(1, -1).repeat(len(values), 1)
    z[:, dim] = torch.as_tensor(values, dtype=z.dtype, device=z.device)
    h = torch.tanh(model.to_initial(z)).unsqueeze(0)
    frame = z.new_zeros(len(values), 1, FEATURES)
    frames = []
    for _ in range(T):
        out, h = model.decoder(torch.cat([frame, z.unsqueeze(1)], -1), h)
        frame = Emission.mean(model.emission(out))
        frame = torch.cat([frame[..., :1] * frame[..., 1:2], frame[..., 1:]], -1)
        frames.append(frame)
    return torch.cat(frames, dim=1)


def plot_traversal(
    frames: torch.Tensor,
    path: str | Path,
    frame_rate: float = 50.0,
    values: Sequence[float] | None = None,
) -> Path:
    """Write a PNG of the normalised log-F0 (voiced frames only) and log-energy contours of
    a traversal `frames [V, T, 3]`, one line per value; returns the path."""
    from matplotlib.figure import Figure

    frames = frames.detach().cpu()
    t = torch.arange(frames.shape[1]) / frame_rate
    fig = Figure(figsize=(8, 5))
    f0_ax, energy_ax = fig.subplots(2, 1, sharex=True)
    for i, seq in enumerate(frames):
        label = f"{values[i]:g}" if values is not None else str(i)
        f0 = torch.where(seq[:, 1] > 0.5, seq[:, 0], torch.full_like(seq[:, 0], float("nan")))
        f0_ax.plot(t, f0, label=label)
        energy_ax.plot(t, seq[:, 2], label=label)
    f0_ax.set_ylabel("log-F0 (normalised)")
    energy_ax.set_ylabel("log energy (normalised)")
    energy_ax.set_xlabel("time (s)")
    f0_ax.legend(title="value", fontsize="small")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path


# Speaker clusters in the latent space.


def _kmeans(points: torch.Tensor, k: int, generator: torch.Generator, iters: int) -> torch.Tensor:
    """Lloyd's k-means from a k-means++ start; the cluster of each point `[N]`."""
    centres = points[torch.randint(len(points), (1,), generator=generator)]
    for _ in range(1, k):
        d2 = torch.cdist(points, centres).min(1).values.pow(2)
        weights = d2 if d2.sum() > 0 else torch.ones_like(d2)
        centres = torch.cat([centres, points[torch.multinomial(weights, 1, generator=generator)]])
    for _ in range(iters):
        assign = torch.cdist(points, centres).argmin(1)
        moved = torch.stack(
            [points[assign == j].mean(0) if (assign == j).any() else centres[j] for j in range(k)]
        )
        if torch.equal(moved, centres):
            break
        centres = moved
    return torch.cdist(points, centres).argmin(1)


def cluster_purity(
    latents: torch.Tensor,
    speakers: Sequence[str],
    k: int | None = None,
    seed: int = 0,
    restarts: int = 10,
    iters: int = 100,
) -> float:
    """Purity of k-means clusters of `latents [N, D]` against speaker labels: the sum over
    clusters of the majority speaker's count, over N. `k` defaults to the number of
    speakers; the best of `restarts` seeded Lloyd's runs (lowest inertia) is scored."""
    points = latents.detach().double().cpu()
    names = sorted(set(speakers))
    k = len(names) if k is None else k
    labels = torch.tensor([names.index(s) for s in speakers])
    generator = torch.Generator().manual_seed(seed)
    best, best_inertia = None, math.inf
    for _ in range(restarts):
        assign = _kmeans(points, k, generator, iters)
        centres = torch.stack([points[assign == j].mean(0) for j in assign.unique()])
        inertia = torch.cdist(points, centres).min(1).values.pow(2).sum().item()
        if inertia < best_inertia:
            best, best_inertia = assign, inertia
    counts = torch.zeros(k, len(names), dtype=torch.long)
    counts.index_put_((best, labels), torch.ones_like(labels), accumulate=True)
    return counts.max(1).values.sum().item() / len(speakers)
