"""Objectives shared by the prosody VAEs (VRAE, VRNN, SRNN, Ladder VAE).

Diagonal-Gaussian and Bernoulli log-densities, the analytic Gaussian KL, the Ladder VAE
precision-weighted fusion (Sønderby et al. 2016), free bits (Kingma et al. 2016), the
importance-weighted bound (Burda et al. 2016) and KL-annealing schedules. Pure torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from codec.errors import ConfigError

_LOG_2PI = math.log(2.0 * math.pi)


class Gaussian(NamedTuple):
    """A diagonal Gaussian by its mean and log-variance, both `[..., D]`."""

    mean: torch.Tensor
    log_var: torch.Tensor


def _maybe_sum(t: torch.Tensor, dim: int | None) -> torch.Tensor:
    return t if dim is None else t.sum(dim)


def gaussian_log_prob(
    x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor, dim: int | None = None
) -> torch.Tensor:
    """log N(x; mean, exp(log_var)) elementwise `[..., D]`, or summed over `dim` if given."""
    lp = -0.5 * (_LOG_2PI + log_var + (x - mean).pow(2) * torch.exp(-log_var))
    return _maybe_sum(lp, dim)


def gaussian_kl(
    mean_q: torch.Tensor,
    log_var_q: torch.Tensor,
    mean_p: torch.Tensor | None = None,
    log_var_p: torch.Tensor | None = None,
) -> torch.Tensor:
    """Analytic KL(N_q || N_p) per dimension, `[..., D]`.

    An omitted `mean_p` is 0 and an omitted `log_var_p` is 0, so with neither the prior is
    N(0, I).
    """
    mean_p = torch.zeros_like(mean_q) if mean_p is None else mean_p
    log_var_p = torch.zeros_like(log_var_q) if log_var_p is None else log_var_p
    ratio = torch.exp(log_var_q - log_var_p)
    return 0.5 * (
        ratio + (mean_q - mean_p).pow(2) * torch.exp(-log_var_p) - 1.0 - log_var_q + log_var_p
    )


def bernoulli_log_prob(
    x: torch.Tensor, logits: torch.Tensor, dim: int | None = None
) -> torch.Tensor:
    """log Bernoulli(x; sigmoid(logits)) elementwise (the voicing flag), or summed over `dim`."""
    lp = -F.binary_cross_entropy_with_logits(logits, x.to(logits.dtype), reduction="none")
    return _maybe_sum(lp, dim)


def precision_weighted_fusion(
    mean_a: torch.Tensor, log_var_a: torch.Tensor, mean_b: torch.Tensor, log_var_b: torch.Tensor
) -> Gaussian:
    """Ladder VAE posterior: the normalised product of two Gaussians (Sønderby et al. 2016).

    `1/var = 1/var_a + 1/var_b` and `mean = var * (mean_a/var_a + mean_b/var_b)`, computed in
    log space (logaddexp, sigmoid weights) so extreme variances neither overflow nor divide
    by zero. Typically `a` is the bottom-up estimate and `b` the top-down prior.
    """
    log_var = -torch.logaddexp(-log_var_a, -log_var_b)
    weight_a = torch.sigmoid(log_var_b - log_var_a)  # precision_a / (precision_a + precision_b)
    mean = weight_a * mean_a + (1.0 - weight_a) * mean_b
    return Gaussian(mean, log_var)


def free_bits(
    kl_per_dim: torch.Tensor,
    threshold: float,
    mode: str = "dimension",
    dims: Sequence[int] | None = None,
) -> torch.Tensor:
    """Free-bits KL term (Kingma et al. 2016, eq. 15), a scalar to add to the loss.

    `kl_per_dim` is `[B, ...]` (e.g. `[B, D]` or `[B, T, D]`), KL in nats, batch first.
    The KL is first averaged over the batch (dim 0), then:

    - `mode="dimension"`: every remaining element `j` is its own group and contributes
      `max(threshold, mean_b KL_bj)`;
    - `mode="group"`: the KL is summed over `dims` (dims of `kl_per_dim`, not 0) and each
      remaining index is a group contributing `max(threshold, mean_b sum_{j in g} KL_bj)`.

    The result is the sum of these contributions. A group below `threshold` contributes
    exactly `threshold` and passes no gradient, so the optimiser stops pushing its KL down.
    """
    if threshold < 0:
        raise ConfigError(f"free_bits threshold must be >= 0, got {threshold}")
    kl = kl_per_dim.mean(0)
    if mode == "group":
        if not dims:
            raise ValueError("free_bits mode='group' needs `dims` to sum within a group")
        axes = [d % kl_per_dim.dim() for d in dims]
        if 0 in axes:
            raise ValueError("free_bits groups cannot include the batch dimension 0")
        kl = kl.sum([a - 1 for a in axes])
    elif mode == "dimension":
        if dims is not None:
            raise ValueError("free_bits `dims` is only used with mode='group'")
    else:
        raise ConfigError(f"unknown free_bits mode {mode!r}; use 'dimension' or 'group'")
    return kl.clamp(min=threshold).sum()


def log_importance_weights(
    log_px_given_z: torch.Tensor, log_pz: torch.Tensor, log_qz: torch.Tensor
) -> torch.Tensor:
    """log w = log p(x|z) + log p(z) - log q(z|x), each `[K, B]` for K samples of z ~ q."""
    return log_px_given_z + log_pz - log_qz


def iwae_bound(log_weights: torch.Tensor) -> torch.Tensor:
    """IWAE bound (Burda et al. 2016): `logsumexp_k log w_k - log K`, `[K, B] -> [B]`.

    logsumexp subtracts the maximum, so log-weights of any magnitude (e.g. -1e4) give a
    finite bound. With K = 1 it is the single-sample ELBO.
    """
    return torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0])


def elbo_from_log_weights(log_weights: torch.Tensor) -> torch.Tensor:
    """Monte Carlo ELBO, the mean of the log-weights over samples, `[K, B] -> [B]`."""
    return log_weights.mean(0)


# KL-annealing schedules: the weight on the KL term as a function of the training step.


def _check_positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"KL schedule {name} must be > 0, got {value}")


def linear(step: float, warmup: float) -> float:
    """Rises linearly from 0 at step 0 to 1 at `warmup`, then holds (Bowman et al. 2016)."""
    if warmup < 0:
        raise ConfigError(f"KL schedule warmup must be >= 0, got {warmup}")
    return 1.0 if warmup == 0 else min(max(step / warmup, 0.0), 1.0)


def cosine(step: int, warmup: int) -> float:
    """Rises as `(1 - cos(pi * step / warmup)) / 2` from 0 to 1 at `warmup`, then holds."""
    return 0.5 * (1.0 - math.cos(math.pi * linear(step, warmup)))


def cyclical(step: int, period: int, ratio: float = 0.5) -> float:
    """Cyclical schedule (Fu et al. 2019): repeats every `period` steps.

    Within a cycle at position `tau = (step mod period) / period`, the weight is
    `tau / ratio` while `tau < ratio`, then 1 for the rest of the cycle.
    """
    _check_positive("period", period)
    if not 0 < ratio <= 1:
        raise ConfigError(f"KL schedule ratio must be in (0, 1], got {ratio}")
    tau = (step % period) / period
    return min(tau / ratio, 1.0)


def per_layer_warmup(step: int, layer: int, n_layers: int, warmup: int) -> float:
    """Ladder KL warm-up: deeper layers start later, all reach 1 at `warmup`.

    Layer 0 is nearest the data, `n_layers - 1` the top. Layer `l` stays at 0 until
    `start = l * warmup / n_layers`, then rises linearly to 1 at `warmup`; layer 0 is
    `linear(step, warmup)`.
    """
    _check_positive("n_layers", n_layers)
    if not 0 <= layer < n_layers:
        raise ConfigError(f"layer must be in [0, {n_layers}), got {layer}")
    start = layer * warmup / n_layers
    return linear(step - start, warmup - start)


_SCHEDULES: dict[str, Callable[..., float]] = {
    "linear": linear,
    "cosine": cosine,
    "cyclical": cyclical,
    "per_layer_warmup": per_layer_warmup,
}


def kl_weight(name: str, step: int, **kwargs: float) -> float:
    """KL weight at `step` from the schedule called `name` with its keyword arguments."""
    if name not in _SCHEDULES:
        raise ConfigError(f"unknown KL schedule {name!r}; choose from {sorted(_SCHEDULES)}")
    return _SCHEDULES[name](step, **kwargs)
