"""SEANet encoder and decoder (Tagliasacchi et al. 2020; as used by SoundStream and EnCodec).

Each stage: residual units with growing dilation, then a strided convolution that halves
time resolution by `ratio` and doubles channels. The decoder mirrors it with transposed
convolutions. ELU activations (or DAC's Snake), weight norm everywhere, no normalisation
layers, so the causal variant can later run frame by frame.
"""

from __future__ import annotations

import torch
from torch import nn

from codec.nn.activation import activation as make_activation
from codec.nn.conv import Conv1d, ConvTranspose1d


class ResidualUnit(nn.Module):
    """act -> dilated conv (halving channels) -> act -> 1x1 conv, plus identity shortcut.

    Shapes: `[B, C, T] -> [B, C, T]`.
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int = 3,
        dilation: int = 1,
        causal: bool = True,
        activation: str = "elu",
    ):
        super().__init__()
        hidden = channels // 2
        self.dilation = dilation
        self.block = nn.Sequential(
            make_activation(activation, channels),
            Conv1d(channels, hidden, kernel_size, dilation=dilation, causal=causal),
            make_activation(activation, hidden),
            Conv1d(hidden, channels, 1, causal=causal),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def _residual_stack(
    channels: int, dilations: tuple[int, ...], kernel_size: int, causal: bool, activation: str
):
    return [
        ResidualUnit(
            channels, kernel_size=kernel_size, dilation=d, causal=causal, activation=activation
        )
        for d in dilations
    ]


class SEANetEncoder(nn.Module):
    """Waveform to latent frames.

    Args:
        channels: width of the first stage; doubled after each downsampling.
        latent_dim: size of each output frame vector.
        ratios: downsampling factor per stage; their product is the hop length.
        dilations: dilation of each residual unit within a stage.
        outer_dilations: those of the first stage, which runs at the full sample
            rate (None: `dilations`).
        activation: "elu" (SEANet) or "snake" (DAC).
    Shapes: `[B, 1, T] -> [B, latent_dim, T // prod(ratios)]`.
    """

    def __init__(
        self,
        *,
        channels: int = 16,
        latent_dim: int = 64,
        ratios: tuple[int, ...] = (2, 4, 5, 8),
        dilations: tuple[int, ...] = (1, 3, 9),
        outer_dilations: tuple[int, ...] | None = None,
        kernel_size: int = 7,
        residual_kernel_size: int = 3,
        causal: bool = True,
        activation: str = "elu",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [Conv1d(1, channels, kernel_size, causal=causal)]
        width = channels
        outer = dilations if outer_dilations is None else outer_dilations
        for i, ratio in enumerate(ratios):
            stage = outer if i == 0 else dilations
            layers += _residual_stack(width, stage, residual_kernel_size, causal, activation)
            layers += [
                make_activation(activation, width),
                Conv1d(width, width * 2, 2 * ratio, stride=ratio, causal=causal),
            ]
            width *= 2
        layers += [
            make_activation(activation, width),
            Conv1d(width, latent_dim, kernel_size, causal=causal),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class SEANetDecoder(nn.Module):
    """Latent frames to waveform; the mirror image of `SEANetEncoder`.

    Shapes: `[B, latent_dim, F] -> [B, 1, F * prod(ratios)]`.
    """

    def __init__(
        self,
        *,
        channels: int = 16,
        latent_dim: int = 64,
        ratios: tuple[int, ...] = (2, 4, 5, 8),
        dilations: tuple[int, ...] = (1, 3, 9),
        outer_dilations: tuple[int, ...] | None = None,
        kernel_size: int = 7,
        residual_kernel_size: int = 3,
        causal: bool = True,
        activation: str = "elu",
    ) -> None:
        super().__init__()
        width = channels * 2 ** len(ratios)
        layers: list[nn.Module] = [Conv1d(latent_dim, width, kernel_size, causal=causal)]
        outer = dilations if outer_dilations is None else outer_dilations
        for i, ratio in enumerate(reversed(ratios)):
            layers += [
                make_activation(activation, width),
                ConvTranspose1d(width, width // 2, 2 * ratio, stride=ratio, causal=causal),
            ]
            width //= 2
            stage = outer if i == len(ratios) - 1 else dilations
            layers += _residual_stack(width, stage, residual_kernel_size, causal, activation)
        layers += [make_activation(activation, width), Conv1d(width, 1, kernel_size, causal=causal)]
        self.model = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z)
