"""The activations of SEANet: ELU (computed faster when no gradient is needed) and Snake."""

from __future__ import annotations

import torch
from torch import nn

from codec.errors import ConfigError

LOG2E = 1.4426950408889634
ACTIVATIONS = ("elu", "snake")


class ELU(nn.Module):
    """`nn.ELU()` (alpha 1), with no parameters, so weights saved with either load into
    the other.

    Inference computes `2 ** (min(x, 0) * log2(e)) - 1 + max(x, 0)`: torch's `exp2` is
    about three times faster than the `expm1` inside `nn.functional.elu` on CPU, which
    halves the activations' share of encoding and decoding. The two agree within 1e-7
    (exp2 is accurate to 1 ulp). Training (any input that needs a gradient) uses
    `nn.functional.elu` itself.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            return nn.functional.elu(x)
        return x.clamp(max=0).mul_(LOG2E).exp2_().sub_(1).add_(x.clamp(min=0))


class Snake(nn.Module):
    """Snake, `x + sin^2(alpha x) / alpha` with a learnt `alpha` per channel (Liu Ziyin
    et al. 2020), as in BigVGAN and DAC: a periodic bias that helps a decoder make
    periodic signals such as voiced speech. `alpha` starts at 1.

    Training computes in float32 also under bf16 autocast (a bf16 `alpha * x` is too
    coarse a phase for the sine) and returns the input's dtype.

    Shapes: `[B, channels, T] -> [B, channels, T]`.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and (x.requires_grad or self.alpha.requires_grad):
            alpha, xf = self.alpha.float(), x.float()
            return (xf + torch.sin(alpha * xf).pow(2) / (alpha + 1e-9)).to(x.dtype)
        alpha = self.alpha.to(x.dtype)
        inverse = (alpha + 1e-9).reciprocal()
        return torch.sin(x * alpha).pow_(2).mul_(inverse).add_(x)


def activation(kind: str, channels: int) -> nn.Module:
    """The activation named `kind` ("elu" or "snake") for `channels` channels."""
    if kind == "elu":
        return ELU()
    if kind == "snake":
        return Snake(channels)
    raise ConfigError(f"unknown activation {kind!r}; known: {', '.join(ACTIVATIONS)}")
