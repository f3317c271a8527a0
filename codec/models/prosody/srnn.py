"""Stochastic recurrent network (SRNN, Fraccaro et al. 2016) over prosody frames.

A deterministic forward GRU `d_t` reads the past frames; a stochastic state-space layer
`z_t ~ p(z_t | z_{t-1}, d_t)` sits on top of it and the frame is emitted from
`p(x_t | z_t, d_t)`. Inference smooths: a backward GRU `a_t` reads `[x_t, d_t]` from the
end of each sequence and `q(z_t | z_{t-1}, a_t)` conditions on the whole future.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from codec.errors import ConfigError
from codec.models.prosody import objectives
from codec.models.prosody.base import (
    FEATURES,
    BoundOutput,
    Emission,
    annealed_loss,
    frames_of,
    kl_term,
    shift_right,
    split_gaussian,
)
from codec.models.prosody.objectives import Gaussian


@dataclass(frozen=True)
class SRNNConfig:
    """Sizes and tricks of an `SRNN`.

    Args:
        hidden: width of the forward GRU `d_t`, the backward GRU `a_t` and the MLPs.
        latent: size of each `z_t`.
        resq: posterior mean = prior mean + a learned correction ("resq", Fraccaro et al.
            2016, sec. 4), which eases learning when the prior is already good.
    """

    hidden: int = 64
    latent: int = 16
    resq: bool = True

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.latent < 1:
            raise ConfigError(f"SRNN hidden and latent must be >= 1, got {self}")


def reverse_padded(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Flip the real frames of each sequence in time, leaving the padding in place.

    `x [B, T, D]`, `mask [B, T]` with the real frames first (right padding). Applying it
    twice restores `x`.
    """
    steps = torch.arange(x.shape[1], device=x.device)
    lengths = mask.sum(1, keepdim=True)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


def _gaussian_head(n_in: int, hidden: int, latent: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, 2 * latent))


def _noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


@dataclass
class _Path:
    """One sampled latent path and the Gaussians along it, all `[N, T, D]`."""

    z: torch.Tensor
    q: Gaussian
    p: Gaussian


class SRNN(nn.Module):
    """SRNN: forward deterministic GRU, smoothing posterior, per-step latent chain.

    Shapes: `x [B, T, 3]`, `mask [B, T]` (bool, real frames first). `elbo` and `iwae`
    give bounds per sequence `[B]` in nats; `kl_per_dim` is `[T, D]` (batch mean).

    Args:
        config: an `SRNNConfig`.
    """

    def __init__(self, config: SRNNConfig) -> None:
        super().__init__()
        self.config = config
        h, d = config.hidden, config.latent
        self.forward_rnn = nn.GRU(FEATURES, h, batch_first=True)
        self.backward_rnn = nn.GRU(FEATURES + h, h, batch_first=True)
        self.prior = _gaussian_head(d + h, h, d)
        self.posterior = _gaussian_head(d + h, h, d)
        self.decoder = nn.Sequential(nn.Linear(d + h, h), nn.Tanh())
        self.emission = Emission(h)

    def _deterministic(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`d [B, T, H]` from the past frames and `a [B, T, H]` from the future ones."""
        d, _ = self.forward_rnn(shift_right(x))
        a_rev, _ = self.backward_rnn(reverse_padded(torch.cat([x, d], -1), mask))
        return d, reverse_padded(a_rev, mask)

    def _step(
        self, z_prev: torch.Tensor, d_t: torch.Tensor, a_t: torch.Tensor
    ) -> tuple[Gaussian, Gaussian]:
        """Posterior `q(z_t | z_{t-1}, a_t)` and prior `p(z_t | z_{t-1}, d_t)`, `[N, D]`."""
        p = split_gaussian(self.prior(torch.cat([z_prev, d_t], -1)))
        q = split_gaussian(self.posterior(torch.cat([z_prev, a_t], -1)))
        if self.config.resq:
            q = Gaussian(p.mean + q.mean, q.log_var)
        return q, p

    def _posterior_path(
        self, d: torch.Tensor, a: torch.Tensor, generator: torch.Generator | None
    ) -> _Path:
        """Sample `z_{1:T} ~ q` step by step, with the prior evaluated at each `z_{t-1}`."""
        z_prev = d.new_zeros(d.shape[0], self.config.latent)
        zs, qs, ps = [], [], []
        for t in range(d.shape[1]):
            q, p = self._step(z_prev, d[:, t], a[:, t])
            z_prev = q.mean + (0.5 * q.log_var).exp() * _noise(q.mean, generator)
            zs.append(z_prev)
            qs.append(q)
            ps.append(p)
        return _Path(
            torch.stack(zs, 1),
            Gaussian(*(torch.stack(g, 1) for g in zip(*qs, strict=True))),
            Gaussian(*(torch.stack(g, 1) for g in zip(*ps, strict=True))),
        )

    def _emit(self, z: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return self.emission(self.decoder(torch.cat([z, d], -1)))

    def elbo(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        *,
        kl_weight: float = 1.0,
        free_bits: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> BoundOutput:
        """Single-sample ELBO with the analytic per-step KL given the sampled `z_{t-1}`."""
        d, a = self._deterministic(x, mask)
        path = self._posterior_path(d, a, generator)
        rec = self.emission.log_prob(x, self._emit(path.z, d), mask).sum(1)
        kl_tdim = objectives.gaussian_kl(*path.q, *path.p) * mask.unsqueeze(-1)  # [B, T, D]
        kl = kl_tdim.sum((1, 2))
        frames = frames_of(mask)
        loss = annealed_loss(rec, kl_term(kl_tdim, free_bits), frames, kl_weight)
        return BoundOutput(rec - kl, rec, kl, frames, loss, kl_tdim.mean(0).detach())

    @torch.no_grad()
    def iwae(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        k: int,
        *,
        chunk: int = 64,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """IWAE-`k` bound `[B]` in nats (Burda et al. 2016), `chunk` samples at a time."""
        d, a = self._deterministic(x, mask)
        b = x.shape[0]
        log_w = []
        for start in range(0, k, chunk):
            n = min(chunk, k - start)
            dn, an, xn, mn = (
                d.repeat(n, 1, 1),
                a.repeat(n, 1, 1),
                x.repeat(n, 1, 1),
                mask.repeat(n, 1),
            )
            path = self._posterior_path(dn, an, generator)
            m = mn.unsqueeze(-1)
            log_px = self.emission.log_prob(xn, self._emit(path.z, dn), mn).sum(1)
            log_pz = (objectives.gaussian_log_prob(path.z, *path.p) * m).sum((1, 2))
            log_qz = (objectives.gaussian_log_prob(path.z, *path.q) * m).sum((1, 2))
            log_w.append(objectives.log_importance_weights(log_px, log_pz, log_qz).view(n, b))
        return objectives.iwae_bound(torch.cat(log_w, 0))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Emission means `[B, T, 3]` along the path of posterior means (0 on padding)."""
        d, a = self._deterministic(x, mask)
        z_prev = d.new_zeros(d.shape[0], self.config.latent)
        zs = []
        for t in range(d.shape[1]):
            z_prev = self._step(z_prev, d[:, t], a[:, t])[0].mean
            zs.append(z_prev)
        return self.emission.mean(self._emit(torch.stack(zs, 1), d)) * mask.unsqueeze(-1)

    @torch.no_grad()
    def sample(self, n: int, T: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """`n` sequences of `T` frames `[n, T, 3]` drawn from the prior, frame by frame."""
        ref = self.emission.out.weight
        x_prev = ref.new_zeros(n, 1, FEATURES)
        z_prev = ref.new_zeros(n, self.config.latent)
        state, frames = None, []
        for _ in range(T):
            d, state = self.forward_rnn(x_prev, state)
            d = d[:, 0]
            p = split_gaussian(self.prior(torch.cat([z_prev, d], -1)))
            z_prev = p.mean + (0.5 * p.log_var).exp() * _noise(p.mean, generator)
            x_t = Emission.sample(self._emit(z_prev, d), generator)
            frames.append(x_t)
            x_prev = x_t.unsqueeze(1)
        return torch.stack(frames, 1)
