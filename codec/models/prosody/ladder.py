"""Ladder VAE (Sønderby et al. 2016) with a hierarchy of global prosody latents.

Bottom-up, a bidirectional GRU summarises the utterance into `h_0` and MLPs
`d_1..d_L` of shrinking width give a Gaussian estimate per layer. Top-down, `z_L` has
the prior N(0, I) and each `p(z_l | z_{l+1})` is a Gaussian; the posterior of a lower
layer is the precision-weighted fusion of its bottom-up estimate and its top-down prior.
Every `z_l` feeds the decoder (skip connections), an autoregressive GRU over the frames.
Layers are indexed from 0 (nearest the data) to `L - 1` (the top).
"""

from __future__ import annotations

from collections.abc import Sequence
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
class LadderConfig:
    """Sizes of a `LadderVAE`.

    Args:
        hidden: width of the encoder and decoder GRUs.
        latents: size of each `z_l`, bottom (layer 0) to top; usually shrinking.
        deterministic: width of each bottom-up MLP layer `d_l`, bottom to top.
    """

    hidden: int = 64
    latents: tuple[int, ...] = (16, 8, 4)
    deterministic: tuple[int, ...] = (64, 32, 16)

    def __post_init__(self) -> None:
        if len(self.latents) != len(self.deterministic) or not self.latents:
            raise ConfigError(
                f"ladder needs one deterministic size per latent layer, got "
                f"latents={self.latents} deterministic={self.deterministic}"
            )
        if min(self.hidden, *self.latents, *self.deterministic) < 1:
            raise ConfigError(f"ladder sizes must be >= 1, got {self}")


@dataclass
class LadderInference:
    """One top-down pass, per layer `l` (0 = bottom), each tensor `[N, D_l]`.

    `q[l]` is the posterior, `p[l]` the top-down prior (N(0, I) at the top), `bottom_up[l]`
    the data-dependent estimate, `z[l]` the sample drawn from `q[l]`.
    """

    z: list[torch.Tensor]
    q: list[Gaussian]
    p: list[Gaussian]
    bottom_up: list[Gaussian]


def _log_density(z: list[torch.Tensor], gaussians: list[Gaussian]) -> list[torch.Tensor]:
    """Per-layer log-densities `[N]` of the samples `z[l]` under `gaussians[l]`."""
    return [
        objectives.gaussian_log_prob(zl, *g, dim=-1) for zl, g in zip(z, gaussians, strict=True)
    ]


def _repeat(g: Gaussian, n: int) -> Gaussian:
    return Gaussian(g.mean.repeat(n, 1), g.log_var.repeat(n, 1))


class LadderVAE(nn.Module):
    """Ladder VAE over whole utterances: global hierarchical latents, GRU decoder.

    Shapes: `x [B, T, 3]`, `mask [B, T]` (bool, real frames first). `elbo` and `iwae`
    give bounds per sequence `[B]` in nats; `kl_per_dim` is `{"layer0": [D_0], ...}`.

    Args:
        config: a `LadderConfig`.
    """

    def __init__(self, config: LadderConfig) -> None:
        super().__init__()
        self.config = config
        h, sizes, lat = config.hidden, config.deterministic, config.latents
        self.encoder = nn.GRU(FEATURES, h, batch_first=True, bidirectional=True)
        widths = (2 * h, *sizes)
        self.bottom_up = nn.ModuleList(
            nn.Sequential(nn.Linear(widths[i], widths[i + 1]), nn.ELU()) for i in range(len(lat))
        )
        self.bottom_up_heads = nn.ModuleList(
            nn.Linear(s, 2 * d) for s, d in zip(sizes, lat, strict=True)
        )
        self.top_down = nn.ModuleList(
            nn.Sequential(
                nn.Linear(lat[i + 1], sizes[i]), nn.ELU(), nn.Linear(sizes[i], 2 * lat[i])
            )
            for i in range(len(lat) - 1)
        )
        self.decoder = nn.GRU(FEATURES + sum(lat), h, batch_first=True)
        self.emission = Emission(h)

    @property
    def n_layers(self) -> int:
        return len(self.config.latents)

    def _bottom_up(self, x: torch.Tensor, mask: torch.Tensor) -> list[Gaussian]:
        """Per-layer bottom-up Gaussians `[B, D_l]` from the masked-mean GRU summary."""
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, True, enforce_sorted=False)
        out, _ = self.encoder(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, True, total_length=x.shape[1])
        h = (out * mask.unsqueeze(-1)).sum(1) / frames_of(mask).unsqueeze(-1)
        estimates = []
        for layer, head in zip(self.bottom_up, self.bottom_up_heads, strict=True):
            h = layer(h)
            estimates.append(split_gaussian(head(h)))
        return estimates

    def _top_down(
        self, bottom_up: list[Gaussian], generator: torch.Generator | None, sample: bool = True
    ) -> LadderInference:
        """Draw `z_L, ..., z_1` from q top-down (posterior means when `sample` is False)."""
        top = bottom_up[-1]
        zero = torch.zeros_like(top.mean)
        q, p = [top], [Gaussian(zero, zero)]  # the top posterior is the bottom-up estimate
        z = [self._draw(top, generator, sample)]
        for l in range(self.n_layers - 2, -1, -1):  # noqa: E741 (the papers' layer index)
            prior = split_gaussian(self.top_down[l](z[0]))
            post = objectives.precision_weighted_fusion(*bottom_up[l], *prior)
            q.insert(0, post)
            p.insert(0, prior)
            z.insert(0, self._draw(post, generator, sample))
        return LadderInference(z, q, p, bottom_up)

    @staticmethod
    def _draw(g: Gaussian, generator: torch.Generator | None, sample: bool) -> torch.Tensor:
        if not sample:
            return g.mean
        eps = torch.randn(
            g.mean.shape, generator=generator, device=g.mean.device, dtype=g.mean.dtype
        )
        return g.mean + (0.5 * g.log_var).exp() * eps

    def infer(
        self, x: torch.Tensor, mask: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> LadderInference:
        """One posterior sample of every layer with its q, p and bottom-up Gaussians."""
        return self._top_down(self._bottom_up(x, mask), generator)

    def _emission_params(self, x: torch.Tensor, z: list[torch.Tensor]) -> torch.Tensor:
        """Emission parameters `[N, T, 5]` from the past frames and every `z_l` (skips)."""
        latents = torch.cat(z, -1).unsqueeze(1).expand(-1, x.shape[1], -1)
        h, _ = self.decoder(torch.cat([shift_right(x), latents], -1))
        return self.emission(h)

    def elbo(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        *,
        kl_weight: float = 1.0,
        free_bits: float = 0.0,
        layer_kl_weights: Sequence[float] | None = None,
        generator: torch.Generator | None = None,
    ) -> BoundOutput:
        """Single-sample ELBO; `layer_kl_weights[l]` scales layer `l`'s KL in the loss
        (per-layer warm-up, e.g. `objectives.per_layer_warmup`)."""
        weights = [1.0] * self.n_layers if layer_kl_weights is None else list(layer_kl_weights)
        if len(weights) != self.n_layers:
            raise ConfigError(f"need {self.n_layers} layer KL weights, got {len(weights)}")
        inf = self.infer(x, mask, generator=generator)
        rec = self.emission.log_prob(x, self._emission_params(x, inf.z), mask).sum(1)
        kls = [objectives.gaussian_kl(*q, *p) for q, p in zip(inf.q, inf.p, strict=True)]
        kl = sum(k.sum(-1) for k in kls)
        weighted = sum(w * kl_term(k, free_bits) for w, k in zip(weights, kls, strict=True))
        frames = frames_of(mask)
        loss = annealed_loss(rec, weighted, frames, kl_weight)
        per_dim = {f"layer{i}": k.mean(0).detach() for i, k in enumerate(kls)}
        return BoundOutput(rec - kl, rec, kl, frames, loss, per_dim)

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
        """Hierarchical IWAE-`k` bound `[B]` in nats, `chunk` samples at a time:
        log w = log p(x|z) + sum_l [log p(z_l|z_{l+1}) - log q(z_l|.)]."""
        bottom_up = self._bottom_up(x, mask)
        b = x.shape[0]
        log_w = []
        for start in range(0, k, chunk):
            n = min(chunk, k - start)
            inf = self._top_down([_repeat(g, n) for g in bottom_up], generator)
            xn, mn = x.repeat(n, 1, 1), mask.repeat(n, 1)
            log_px = self.emission.log_prob(xn, self._emission_params(xn, inf.z), mn).sum(1)
            log_pz = sum(_log_density(inf.z, inf.p))
            log_qz = sum(_log_density(inf.z, inf.q))
            log_w.append(objectives.log_importance_weights(log_px, log_pz, log_qz).view(n, b))
        return objectives.iwae_bound(torch.cat(log_w, 0))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Emission means `[B, T, 3]` given the posterior means of every layer (0 on padding)."""
        inf = self._top_down(self._bottom_up(x, mask), None, sample=False)
        return self.emission.mean(self._emission_params(x, inf.z)) * mask.unsqueeze(-1)

    @torch.no_grad()
    def sample(self, n: int, T: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """`n` sequences of `T` frames `[n, T, 3]`: latents top-down from the prior, then
        frames one at a time from the decoder."""
        ref = self.emission.out.weight
        zero = ref.new_zeros(n, self.config.latents[-1])
        z = [self._draw(Gaussian(zero, zero), generator, True)]
        for l in range(self.n_layers - 2, -1, -1):  # noqa: E741
            z.insert(0, self._draw(split_gaussian(self.top_down[l](z[0])), generator, True))
        latents = torch.cat(z, -1).unsqueeze(1)
        x_prev, state, frames = ref.new_zeros(n, 1, FEATURES), None, []
        for _ in range(T):
            h, state = self.decoder(torch.cat([x_prev, latents], -1), state)
            x_prev = Emission.sample(self.emission(h), generator)
            frames.append(x_prev[:, 0])
        return torch.stack(frames, 1)
