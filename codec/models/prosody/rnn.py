"""RNN-Gauss: an autoregressive GRU over prosody frames with no latent variables.

The baseline the latent-variable models must beat: `p(x) = prod_t p(x_t | x_{<t})` with the
shared `Emission`. Its log-likelihood is exact, so its "ELBO" and every IWAE-K are equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from codec.models.prosody.base import (
    FEATURES,
    BoundOutput,
    Emission,
    frames_of,
    shift_right,
)


@dataclass(frozen=True)
class RNNGaussConfig:
    """Args:
    hidden: GRU state size.
    """

    hidden: int = 64


class RNNGauss(nn.Module):
    """GRU over the teacher-forced frames `x_{t-1}`, emitting `p(x_t | x_{<t})`.

    Args:
        config: `RNNGaussConfig`.
    """

    def __init__(self, config: RNNGaussConfig) -> None:
        super().__init__()
        self.config = config
        self.rnn = nn.GRU(FEATURES, config.hidden, batch_first=True)
        self.emission = Emission(config.hidden)

    def _params(self, x: torch.Tensor) -> torch.Tensor:
        """Emission parameters `[B, T, 5]` for frames `x [B, T, 3]` (teacher forcing)."""
        h, _ = self.rnn(shift_right(x))
        return self.emission(h)

    def log_likelihood(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Exact `log p(x)` per sequence `[B]` (nats) of `x [B, T, 3]`, `mask [B, T]`."""
        return Emission.log_prob(x, self._params(x), mask).sum(1)

    def elbo(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        *,
        kl_weight: float = 1.0,
        free_bits: float = 0.0,
    ) -> BoundOutput:
        """The exact log-likelihood as a `BoundOutput` (`kl = 0`); the KL arguments are
        accepted for a common interface and have no effect."""
        rec = self.log_likelihood(x, mask)
        frames = frames_of(mask)
        return BoundOutput(
            bound=rec,
            rec=rec,
            kl=torch.zeros_like(rec),
            frames=frames,
            loss=-rec.sum() / frames.sum(),
        )

    def iwae(self, x: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
        """IWAE-K `[B]`: with no latents it is the exact log-likelihood for every K."""
        return self.log_likelihood(x, mask)

    def reconstruct(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The most likely frame `[B, T, 3]` given the true past of each step."""
        return Emission.mean(self._params(x))

    @torch.no_grad()
    def sample(self, n: int, T: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Free-running samples `[n, T, 3]`: each drawn frame is fed back as the next input."""
        weight = self.emission.out.weight
        frame = weight.new_zeros(n, 1, FEATURES)
        h = None
        frames = []
        for _ in range(T):
            out, h = self.rnn(frame, h)
            frame = Emission.sample(self.emission(out), generator)
            frames.append(frame)
        return torch.cat(frames, dim=1)
