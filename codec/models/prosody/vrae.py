"""VRAE: a variational recurrent autoencoder with one global latent (Fabius & van
Amersfoort 2014).

`z ~ N(0, I)`; a GRU decoder started from `z` and fed `[x_{t-1}, z]` at every step emits
`p(x_t | x_{<t}, z)`. A bidirectional GRU over the real frames gives `q(z | x_{1:T})`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from codec.models.prosody import objectives
from codec.models.prosody.base import (
    FEATURES,
    BoundOutput,
    Emission,
    annealed_loss,
    frames_of,
    kl_term,
    shift_right,
)
from codec.models.prosody.objectives import Gaussian


@dataclass(frozen=True)
class VRAEConfig:
    """Args:
    hidden: GRU state size (encoder, per direction, and decoder).
    latent: size D of the global latent `z`.
    """

    hidden: int = 64
    latent: int = 16


class VRAE(nn.Module):
    """Global-latent sequence VAE over prosody frames `x [B, T, 3]`.

    Args:
        config: `VRAEConfig`.
    """

    def __init__(self, config: VRAEConfig) -> None:
        super().__init__()
        self.config = config
        h, d = config.hidden, config.latent
        self.encoder = nn.GRU(FEATURES, h, batch_first=True, bidirectional=True)
        self.to_posterior = nn.Linear(2 * h, 2 * d)
        self.to_initial = nn.Linear(d, h)
        self.decoder = nn.GRU(FEATURES + d, h, batch_first=True)
        self.emission = Emission(h)

    def posterior(self, x: torch.Tensor, mask: torch.Tensor) -> Gaussian:
        """`q(z | x)` with mean and log-variance `[B, D]`; padded frames are never read."""
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, h_n = self.encoder(packed)  # [2, B, H]: last forward and first backward states
        mean, log_var = self.to_posterior(torch.cat([h_n[0], h_n[1]], -1)).chunk(2, -1)
        return Gaussian(mean, log_var)

    def decode(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Teacher-forced emission parameters `[B, T, 5]` for `x [B, T, 3]` given `z [B, D]`."""
        h0 = torch.tanh(self.to_initial(z)).unsqueeze(0)
        inputs = torch.cat([shift_right(x), z.unsqueeze(1).expand(-1, x.shape[1], -1)], -1)
        out, _ = self.decoder(inputs, h0)
        return self.emission(out)

    def elbo(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        *,
        kl_weight: float = 1.0,
        free_bits: float = 0.0,
    ) -> BoundOutput:
        """Single-sample reparameterised ELBO of `x [B, T, 3]`, `mask [B, T]`."""
        q = self.posterior(x, mask)
        z = q.mean + torch.exp(0.5 * q.log_var) * torch.randn_like(q.mean)
        rec = Emission.log_prob(x, self.decode(x, z), mask).sum(1)
        kl_dims = objectives.gaussian_kl(q.mean, q.log_var)  # [B, D]
        kl = kl_dims.sum(1)
        frames = frames_of(mask)
        return BoundOutput(
            bound=rec - kl,
            rec=rec,
            kl=kl,
            frames=frames,
            loss=annealed_loss(rec, kl_term(kl_dims, free_bits), frames, kl_weight),
            kl_per_dim=kl_dims.mean(0).detach(),
        )

    def iwae(self, x: torch.Tensor, mask: torch.Tensor, k: int, chunk: int = 64) -> torch.Tensor:
        """IWAE-K bound `[B]` (nats), drawing the K samples `chunk` at a time.

        Keeps the graph for gradients; wrap in `torch.no_grad()` for evaluation at large K.
        """
        q = self.posterior(x, mask)
        log_weights = []
        for start in range(0, k, chunk):
            n = min(chunk, k - start)
            eps = torch.randn(n, *q.mean.shape, device=x.device, dtype=q.mean.dtype)
            z = q.mean + torch.exp(0.5 * q.log_var) * eps  # [n, B, D]
            xs, ms = x.expand(n, *x.shape), mask.expand(n, *mask.shape)
            params = self.decode(xs.flatten(0, 1), z.flatten(0, 1)).unflatten(0, (n, -1))
            log_px = Emission.log_prob(xs, params, ms).sum(-1)
            log_pz = objectives.gaussian_log_prob(z, torch.zeros_like(z), torch.zeros_like(z), -1)
            log_qz = objectives.gaussian_log_prob(z, q.mean, q.log_var, -1)
            log_weights.append(objectives.log_importance_weights(log_px, log_pz, log_qz))
        return objectives.iwae_bound(torch.cat(log_weights))

    def reconstruct(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Frames `[B, T, 3]` decoded from the posterior mean, teacher-forced."""
        return Emission.mean(self.decode(x, self.posterior(x, mask).mean))

    @torch.no_grad()
    def sample(self, n: int, T: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral samples `[n, T, 3]`: `z ~ N(0, I)`, then frames fed back one by one."""
        w = self.emission.out.weight
        z = torch.randn(n, self.config.latent, generator=generator, device=w.device)
        h = torch.tanh(self.to_initial(z)).unsqueeze(0)
        frame = w.new_zeros(n, 1, FEATURES)
        frames = []
        for _ in range(T):
            out, h = self.decoder(torch.cat([frame, z.unsqueeze(1)], -1), h)
            frame = Emission.sample(self.emission(out), generator)
            frames.append(frame)
        return torch.cat(frames, dim=1)
