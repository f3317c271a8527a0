"""What every prosody model shares: the frame layout, the emission, the bound's result.

A prosody sequence is `x [B, T, 3]` with, per frame (see `codec.features`):
- `x[..., 0]`: normalised log-F0, meaningful only where the frame is voiced;
- `x[..., 1]`: the voicing flag, 0 or 1;
- `x[..., 2]`: normalised log energy;
and `mask [B, T]` (bool) marks the real frames of padded batches.

The emission `p(x_t | ...)` is a Bernoulli for voicing, a Gaussian for log energy, and
a Gaussian for log-F0 counted only on voiced frames (an unvoiced frame has no pitch).
All log-likelihoods are in nats, summed over the real frames of each sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from codec.models.prosody import objectives
from codec.models.prosody.objectives import Gaussian, bernoulli_log_prob, gaussian_log_prob

FEATURES = 3  # log-F0, voicing, log energy
EMISSION_PARAMS = 5  # mean and log-variance of log-F0 and of log energy, voicing logit
LOG_VAR_RANGE = (-7.0, 5.0)  # keeps the Gaussians away from degenerate variances


@dataclass
class BoundOutput:
    """One evidence bound of a batch, per sequence `[B]` (nats).

    `loss` is what training minimises: `-(rec - kl_weight * kl_term) / frames`, the
    negative annealed bound per real frame, where `kl_term` is the KL after free bits.
    `kl_per_dim` (averaged over the batch) feeds the active-unit and per-layer KL
    diagnostics; its shape depends on the model (e.g. `[D]` for a global latent,
    `[T, D]` per step, a dict per layer for the ladder).
    """

    bound: torch.Tensor  # [B] ELBO (or IWAE-K) in nats
    rec: torch.Tensor  # [B] expected log-likelihood of the frames
    kl: torch.Tensor  # [B] total KL (0 for a model without latents)
    frames: torch.Tensor  # [B] real frames per sequence
    loss: torch.Tensor  # scalar
    kl_per_dim: torch.Tensor | dict[str, torch.Tensor] | None = None


class Emission(nn.Module):
    """Maps a hidden vector `[..., H]` to emission parameters and scores frames.

    Shapes: `params(h) -> [..., 5]`; `log_prob(x [..., 3], params, mask [...]) -> [...]`
    (nats per frame, 0 where `mask` is false).
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.out = nn.Linear(hidden, EMISSION_PARAMS)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(h)

    @staticmethod
    def log_prob(x: torch.Tensor, params: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        f0_mean, f0_log_var, e_mean, e_log_var, v_logit = params.unbind(-1)
        f0_log_var = f0_log_var.clamp(*LOG_VAR_RANGE)
        e_log_var = e_log_var.clamp(*LOG_VAR_RANGE)
        voiced = x[..., 1]
        lp = bernoulli_log_prob(voiced, v_logit)
        lp = lp + gaussian_log_prob(x[..., 2], e_mean, e_log_var)
        lp = lp + voiced * gaussian_log_prob(x[..., 0], f0_mean, f0_log_var)
        return lp * mask

    @staticmethod
    def sample(params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw frames `[..., 3]`: voicing from its Bernoulli, log-F0 and log energy from
        their Gaussians; log-F0 is 0 on unvoiced frames, where it has no meaning."""
        f0_mean, f0_log_var, e_mean, e_log_var, v_logit = params.unbind(-1)
        shape, kw = f0_mean.shape, {"device": params.device, "dtype": params.dtype}
        noise = torch.randn((2, *shape), generator=generator, **kw)
        voiced = (torch.rand(shape, generator=generator, **kw) < torch.sigmoid(v_logit)).to(
            params.dtype
        )
        f0 = f0_mean + torch.exp(0.5 * f0_log_var.clamp(*LOG_VAR_RANGE)) * noise[0]
        energy = e_mean + torch.exp(0.5 * e_log_var.clamp(*LOG_VAR_RANGE)) * noise[1]
        return torch.stack([f0 * voiced, voiced, energy], dim=-1)

    @staticmethod
    def mean(params: torch.Tensor) -> torch.Tensor:
        """The most likely frame `[..., 3]`: means, and voicing where p > 0.5."""
        f0_mean, _, e_mean, _, v_logit = params.unbind(-1)
        return torch.stack([f0_mean, (v_logit > 0).to(f0_mean.dtype), e_mean], dim=-1)


def shift_right(x: torch.Tensor) -> torch.Tensor:
    """`x [B, T, D]` delayed by one step (zeros first): the teacher-forced inputs
    `x_{t-1}` of an autoregressive decoder."""
    return nn.functional.pad(x, (0, 0, 1, 0))[:, :-1]


def frames_of(mask: torch.Tensor) -> torch.Tensor:
    """Real frames per sequence `[B]` (at least 1, so per-frame means are defined)."""
    return mask.sum(dim=1).clamp_min(1).to(torch.float32)


def split_gaussian(params: torch.Tensor) -> Gaussian:
    """A layer's output `[..., 2D]` as a Gaussian: mean and log-variance (clamped to
    `LOG_VAR_RANGE`)."""
    mean, log_var = params.chunk(2, dim=-1)
    return Gaussian(mean, log_var.clamp(*LOG_VAR_RANGE))


def kl_term(kl: torch.Tensor, bits: float) -> torch.Tensor:
    """The KL `[B, ...]` as it enters the loss: summed, or after free bits (Kingma et al.
    2016) per dimension when `bits > 0` (a batch mean, so counted once per sequence)."""
    if bits > 0:
        return objectives.free_bits(kl, bits) * kl.shape[0]
    return kl.sum()


def annealed_loss(
    rec: torch.Tensor, kl: torch.Tensor, frames: torch.Tensor, kl_weight: float
) -> torch.Tensor:
    """`-(rec.sum() - kl_weight * kl) / frames.sum()`: the negative annealed bound per
    real frame, `kl` being the (free-bits) KL term of the batch."""
    return -(rec.sum() - kl_weight * kl) / frames.sum()
