"""Discriminators for adversarial codec training.

- `MultiScaleSTFTDiscriminator`: EnCodec's MS-STFT discriminator (Défossez et al. 2022,
  section 3.4), 2-D convolutions over the real and imaginary parts of complex STFTs at
  several window sizes; it sees phase as well as magnitude.
- `MultiPeriodDiscriminator`: HiFi-GAN's MPD (Kong et al. 2020), 2-D convolutions over
  the waveform folded by a prime period, which exposes periodic structure.

Every discriminator maps `[B, 1, T]` to a `DiscriminatorOutput` with one logits tensor
and one list of feature maps per sub-discriminator, so they can be combined freely.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from codec.errors import ConfigError
from codec.train.losses import float32_stft


@dataclass
class DiscriminatorOutput:
    """Result of a discriminator on `[B, 1, T]` audio, one entry per sub-discriminator."""

    logits: list[torch.Tensor]  # each [B, 1, ...]; real audio should score high
    features: list[list[torch.Tensor]]  # activations after each conv block, for feature loss


def _conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: tuple[int, int],
    *,
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
) -> nn.Module:
    """Weight-normalised `nn.Conv2d`, zero-padded so a stride of 1 keeps the size."""
    padding = tuple((k - 1) * d // 2 for k, d in zip(kernel_size, dilation, strict=True))
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, stride=stride, dilation=dilation, padding=padding
    )
    return weight_norm(conv)


class STFTDiscriminator(nn.Module):
    """One scale of the MS-STFT discriminator.

    Complex STFT (Hann window, hop `n_fft // 4`, normalised) -> real and imaginary parts
    as 2 channels `[B, 2, frames, freq]` -> Conv2d (3, 9) -> three Conv2d (3, 9) with time
    dilations 1, 2, 4 and stride 2 in frequency -> Conv2d (3, 3) -> Conv2d (3, 3) to logits.

    Args:
        filters: channels of every hidden layer (EnCodec: 32).
        n_fft: FFT size, also the window length.
        dilations: time dilations of the strided blocks.
        negative_slope: of the LeakyReLU after each block.
    Shapes: `[B, 1, T] -> logits [B, 1, frames, freq']`.
    """

    def __init__(
        self,
        filters: int = 32,
        n_fft: int = 1024,
        *,
        dilations: tuple[int, ...] = (1, 2, 4),
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        convs = [_conv2d(2, filters, (3, 9))]
        for d in dilations:
            convs.append(_conv2d(filters, filters, (3, 9), stride=(1, 2), dilation=(d, 1)))
        convs.append(_conv2d(filters, filters, (3, 3)))
        self.convs = nn.ModuleList(convs)
        self.conv_post = _conv2d(filters, 1, (3, 3))
        self.activation = nn.LeakyReLU(negative_slope)

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # Zero padding (not reflect) so that audio shorter than half a window still works.
        spec = float32_stft(
            wav.reshape(-1, wav.shape[-1]),
            self.n_fft,
            self.hop_length,
            self.window,
            normalized=True,
            pad_mode="constant",
        )  # [B, freq, frames]
        x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # [B, 2, frames, freq]
        features = []
        for conv in self.convs:
            x = self.activation(conv(x))
            features.append(x)
        return self.conv_post(x), features


class _Scales(nn.Module):
    """Sub-discriminators (`self.discriminators`) applied to the same audio."""

    discriminators: nn.ModuleList

    def forward(self, wav: torch.Tensor) -> DiscriminatorOutput:
        logits, features = [], []
        for disc in self.discriminators:
            lg, ft = disc(wav)
            logits.append(lg)
            features.append(ft)
        return DiscriminatorOutput(logits, features)


class MultiScaleSTFTDiscriminator(_Scales):
    """EnCodec's MS-STFT discriminator: one `STFTDiscriminator` per FFT size.

    Args:
        filters: hidden channels of each scale (EnCodec: 32).
        n_ffts: window sizes (EnCodec: 1024, 2048, 512); hops are a quarter of each.
    Shapes: `[B, 1, T] -> DiscriminatorOutput` with `len(n_ffts)` entries.
    """

    def __init__(self, filters: int = 32, n_ffts: tuple[int, ...] = (1024, 2048, 512)) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(STFTDiscriminator(filters, n) for n in n_ffts)


class PeriodDiscriminator(nn.Module):
    """One period of HiFi-GAN's MPD.

    The waveform is reflect-padded to a multiple of `period` and folded to
    `[B, 1, T / period, period]`, so each column holds samples `period` apart; Conv2d
    kernels (5, 1) with stride (3, 1) (the last one stride 1), then (3, 1) to logits.

    Args:
        period: folding period (HiFi-GAN: primes 2, 3, 5, 7, 11, so periods rarely overlap).
        channels: output channels of the conv blocks (HiFi-GAN: 32, 128, 512, 1024, 1024).
        negative_slope: of the LeakyReLU after each block.
    Shapes: `[B, 1, T] -> logits [B, 1, frames, period]`.
    """

    def __init__(
        self,
        period: int,
        channels: tuple[int, ...] = (32, 128, 512, 1024, 1024),
        *,
        negative_slope: float = 0.1,
    ) -> None:
        super().__init__()
        self.period = period
        ins = (1, *channels[:-1])
        strides = [3] * (len(channels) - 1) + [1]
        self.convs = nn.ModuleList(
            _conv2d(i, o, (5, 1), stride=(s, 1))
            for i, o, s in zip(ins, channels, strides, strict=True)
        )
        self.conv_post = _conv2d(channels[-1], 1, (3, 1))
        self.activation = nn.LeakyReLU(negative_slope)

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = wav.reshape(wav.shape[0], 1, wav.shape[-1])
        x = nn.functional.pad(x, (0, -x.shape[-1] % self.period), mode="reflect")
        x = x.reshape(x.shape[0], 1, -1, self.period)
        features = []
        for conv in self.convs:
            x = self.activation(conv(x))
            features.append(x)
        return self.conv_post(x), features


class MultiPeriodDiscriminator(_Scales):
    """HiFi-GAN's multi-period discriminator: one `PeriodDiscriminator` per period.

    Shapes: `[B, 1, T] -> DiscriminatorOutput` with `len(periods)` entries.
    """

    def __init__(
        self,
        periods: tuple[int, ...] = (2, 3, 5, 7, 11),
        channels: tuple[int, ...] = (32, 128, 512, 1024, 1024),
    ) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)


class CombinedDiscriminator(nn.Module):
    """Several discriminators as one: their logits and feature lists are concatenated."""

    def __init__(self, discriminators: list[nn.Module]) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(discriminators)

    def forward(self, wav: torch.Tensor) -> DiscriminatorOutput:
        logits, features = [], []
        for disc in self.discriminators:
            out = disc(wav)
            logits.extend(out.logits)
            features.extend(out.features)
        return DiscriminatorOutput(logits, features)


DISCRIMINATORS = ("msstft", "mpd", "msstft+mpd")


def build_discriminator(kind: str, filters: int = 32) -> nn.Module:
    """The discriminator of a recipe: "msstft", "mpd" or "msstft+mpd".

    `filters` is the hidden width of the MS-STFT discriminator and the first width of
    the MPD, whose channels are `(f, 4f, 16f, 32f, 32f)` (HiFi-GAN at f = 32).
    """
    if kind not in DISCRIMINATORS:
        raise ConfigError(f"unknown discriminator {kind!r}; known: {', '.join(DISCRIMINATORS)}")
    f = filters
    parts: list[nn.Module] = []
    if "msstft" in kind.split("+"):
        parts.append(MultiScaleSTFTDiscriminator(f))
    if "mpd" in kind.split("+"):
        parts.append(MultiPeriodDiscriminator(channels=(f, 4 * f, 16 * f, 32 * f, 32 * f)))
    return parts[0] if len(parts) == 1 else CombinedDiscriminator(parts)
