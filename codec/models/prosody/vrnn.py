"""VRNN: a variational RNN with one latent per frame (Chung et al. 2015).

Per step: prior `p(z_t | h_{t-1})`, posterior `q(z_t | x_t, h_{t-1})`, emission
`p(x_t | z_t, h_{t-1})`, and the recurrence `h_t = GRUCell([phi_x(x_t), phi_z(z_t)], h_{t-1})`
shared by the generative and the inference model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from codec.models.prosody import objectives
from codec.models.prosody.base import (
    FEATURES,
    BoundOutput,
    Emission,
    annealed_loss,
    frames_of,
    kl_term,
)


@dataclass(frozen=True)
class VRNNConfig:
    """Args:
    hidden: GRU state size H.
    latent: size D of each per-frame latent `z_t`.
    features: width of the feature extractors `phi_x`, `phi_z`.
    """

    hidden: int = 64
    latent: int = 16
    features: int = 32


@dataclass
class _Trajectory:
    """Per-step terms of one pass over `[N, T]` (all 0 on padded frames)."""

    params: torch.Tensor  # [N, T, 5] emission parameters
    log_px: torch.Tensor  # [N, T] log p(x_t | z_t, h_{t-1})
    log_pz: torch.Tensor  # [N, T] log p(z_t | h_{t-1})
    log_qz: torch.Tensor  # [N, T] log q(z_t | x_t, h_{t-1})
    kl: torch.Tensor  # [N, T, D] analytic KL(q || p) per dimension


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


class VRNN(nn.Module):
    """Sequential-latent VAE over prosody frames `x [B, T, 3]`.

    Args:
        config: `VRNNConfig`.
    """

    def __init__(self, config: VRNNConfig) -> None:
        super().__init__()
        self.config = config
        h, d, f = config.hidden, config.latent, config.features
        self.phi_x = nn.Sequential(_mlp(FEATURES, f, f), nn.ReLU())
        self.phi_z = nn.Sequential(nn.Linear(d, f), nn.ReLU())
        self.prior = _mlp(h, h, 2 * d)
        self.encoder = _mlp(f + h, h, 2 * d)
        self.decoder = nn.Sequential(nn.Linear(f + h, h), nn.ReLU())
        self.emission = Emission(h)
        self.cell = nn.GRUCell(2 * f, h)

    def _run(self, x: torch.Tensor, mask: torch.Tensor, use_mean: bool = False) -> _Trajectory:
        """One teacher-forced pass with `z_t ~ q` (or its mean) over `x [N, T, 3]`."""
        n, steps, _ = x.shape
        fx = self.phi_x(x)
        h = x.new_zeros(n, self.config.hidden)
        terms: list[tuple[torch.Tensor, ...]] = []
        for t in range(steps):
            p_mean, p_log_var = self.prior(h).chunk(2, -1)
            q_mean, q_log_var = self.encoder(torch.cat([fx[:, t], h], -1)).chunk(2, -1)
            z = q_mean
            if not use_mean:
                z = q_mean + torch.exp(0.5 * q_log_var) * torch.randn_like(q_mean)
            fz = self.phi_z(z)
            params = self.emission(self.decoder(torch.cat([fz, h], -1)))
            terms.append(
                (
                    params,
                    Emission.log_prob(x[:, t], params, mask[:, t]),
                    objectives.gaussian_log_prob(z, p_mean, p_log_var, -1),
                    objectives.gaussian_log_prob(z, q_mean, q_log_var, -1),
                    objectives.gaussian_kl(q_mean, q_log_var, p_mean, p_log_var),
                )
            )
            h = self.cell(torch.cat([fx[:, t], fz], -1), h)
        params, log_px, log_pz, log_qz, kl = (torch.stack(s, 1) for s in zip(*terms, strict=True))
        m = mask.to(x.dtype)
        return _Trajectory(params, log_px, log_pz * m, log_qz * m, kl * m.unsqueeze(-1))

    def elbo(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        *,
        kl_weight: float = 1.0,
        free_bits: float = 0.0,
    ) -> BoundOutput:
        """Single-sample reparameterised ELBO of `x [B, T, 3]`, `mask [B, T]`.

        Free bits apply per latent dimension to the KL summed over the steps, `[B, D]`.
        """
        traj = self._run(x, mask)
        rec = traj.log_px.sum(1)
        kl_dims = traj.kl.sum(1)  # [B, D]
        kl = kl_dims.sum(1)
        frames = frames_of(mask)
        return BoundOutput(
            bound=rec - kl,
            rec=rec,
            kl=kl,
            frames=frames,
            loss=annealed_loss(rec, kl_term(kl_dims, free_bits), frames, kl_weight),
            kl_per_dim=(kl_dims.sum(0) / frames.sum()).detach(),
        )

    def iwae(self, x: torch.Tensor, mask: torch.Tensor, k: int, chunk: int = 64) -> torch.Tensor:
        """IWAE-K bound `[B]` (nats); each of the K samples is a whole latent trajectory.

        Keeps the graph for gradients; wrap in `torch.no_grad()` for evaluation at large K.
        """
        log_weights = []
        for start in range(0, k, chunk):
            n = min(chunk, k - start)
            xs = x.expand(n, *x.shape).flatten(0, 1)
            traj = self._run(xs, mask.expand(n, *mask.shape).flatten(0, 1))
            log_w = objectives.log_importance_weights(
                traj.log_px.sum(1), traj.log_pz.sum(1), traj.log_qz.sum(1)
            )
            log_weights.append(log_w.unflatten(0, (n, -1)))
        return objectives.iwae_bound(torch.cat(log_weights))

    def reconstruct(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Frames `[B, T, 3]` decoded with the posterior means `z_t`, teacher-forced."""
        return Emission.mean(self._run(x, mask, use_mean=True).params)

    @torch.no_grad()
    def sample(self, n: int, T: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral samples `[n, T, 3]`: `z_t` from the prior, each frame fed back."""
        h = self.emission.out.weight.new_zeros(n, self.config.hidden)
        frames = []
        for _ in range(T):
            p_mean, p_log_var = self.prior(h).chunk(2, -1)
            eps = torch.randn(p_mean.shape, generator=generator, device=h.device)
            fz = self.phi_z(p_mean + torch.exp(0.5 * p_log_var) * eps)
            frame = Emission.sample(self.emission(self.decoder(torch.cat([fz, h], -1))), generator)
            frames.append(frame)
            h = self.cell(torch.cat([self.phi_x(frame), fz], -1), h)
        return torch.stack(frames, dim=1)
