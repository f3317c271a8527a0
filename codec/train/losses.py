"""Losses for codec training: reconstruction (mel, STFT, compressed
magnitudes, waveform) and adversarial.

The multi-scale mel loss compares log-mel spectrograms at several window sizes, so both
fine time detail (short windows) and pitch harmonics (long windows) are penalised; it
follows DAC's `MelSpectrogramLoss` (windows 32..2048, L1 on log10 magnitudes). The
multi-resolution STFT loss is Parallel WaveGAN's (Yamamoto et al. 2020). The power-law
compressed magnitude loss is Braun and Tashev's (2021). The hinge
adversarial loss and the relative feature-matching loss follow EnCodec (Défossez et al.
2022, section 3.4).

Spectra are always computed in float32, also under bf16 autocast: log magnitudes of
bf16 spectra are too coarse to train on.
"""

from __future__ import annotations

import librosa
import torch
from torch import nn

from codec.errors import ConfigError


def float32_stft(
    wav: torch.Tensor,
    n_fft: int,
    hop_length: int,
    window: torch.Tensor,
    *,
    normalized: bool = False,
    pad_mode: str = "reflect",
) -> torch.Tensor:
    """Centred complex STFT in float32 with autocast off: `[B, T] -> [B, n_fft//2+1, frames]`."""
    with torch.autocast(device_type=wav.device.type, enabled=False):
        return torch.stft(
            wav.float(),
            n_fft,
            hop_length,
            window=window.float(),
            center=True,
            pad_mode=pad_mode,
            normalized=normalized,
            return_complex=True,
        )


def _flatten(wav: torch.Tensor) -> torch.Tensor:
    """`[B, 1, T]` or `[B, T]` -> `[B, T]`."""
    return wav.reshape(-1, wav.shape[-1])


class MelSpectrogram(nn.Module):
    """Magnitude mel spectrogram with a Hann window: `[B, T] -> [B, n_mels, frames]`."""

    def __init__(self, sample_rate: int, n_fft: int, n_mels: int, hop_length: int | None = None):
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length or n_fft // 4
        fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=0.0)
        self.register_buffer("filters", torch.from_numpy(fb).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        spec = float32_stft(wav, self.n_fft, self.hop_length, self.window).abs()
        with torch.autocast(device_type=wav.device.type, enabled=False):
            return self.filters.float() @ spec


class MultiScaleMelLoss(nn.Module):
    """Mean over scales of `|log10 mel(x) - log10 mel(y)|`, floors at `clamp_eps`.

    Args:
        windows: FFT sizes; each uses `mels_per_window[i]` mel bands.
    Shapes: `[B, 1, T]` or `[B, T]` for both inputs -> scalar.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        windows: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048),
        mels_per_window: tuple[int, ...] = (8, 16, 32, 64, 128, 128),
        clamp_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.clamp_eps = clamp_eps
        self.mels = nn.ModuleList(
            MelSpectrogram(sample_rate, w, m) for w, m in zip(windows, mels_per_window, strict=True)
        )

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x, y = _flatten(estimate), _flatten(target)
        loss = x.new_zeros((), dtype=torch.float32)
        for mel in self.mels:
            mx = mel(x).clamp_min(self.clamp_eps).log10()
            my = mel(y).clamp_min(self.clamp_eps).log10()
            loss = loss + (mx - my).abs().mean()
        return loss / len(self.mels)


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence plus log-magnitude L1, averaged over STFT resolutions.

    Per resolution: `||S_y - S_x||_F / ||S_y||_F + mean|log S_y - log S_x|`, magnitudes
    floored at `clamp_eps` (Parallel WaveGAN, Yamamoto et al. 2020; DAC's `STFTLoss`).

    Args:
        fft_sizes, hop_sizes, win_lengths: one entry per resolution (Hann windows).
        clamp_eps: floor of the magnitudes, so silence gives finite logs and gradients.
    Shapes: `[B, 1, T]` or `[B, T]` for both inputs -> scalar.
    """

    def __init__(
        self,
        fft_sizes: tuple[int, ...] = (512, 1024, 2048),
        hop_sizes: tuple[int, ...] = (128, 256, 512),
        win_lengths: tuple[int, ...] = (512, 1024, 2048),
        clamp_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if not len(fft_sizes) == len(hop_sizes) == len(win_lengths):
            raise ConfigError("fft_sizes, hop_sizes and win_lengths must have the same length")
        self.resolutions = list(zip(fft_sizes, hop_sizes, strict=True))
        self.clamp_eps = clamp_eps
        for i, (n_fft, win) in enumerate(zip(fft_sizes, win_lengths, strict=True)):
            # torch.stft centres a shorter window inside the frame; pad it here once.
            offset = (n_fft - win) // 2
            window = nn.functional.pad(torch.hann_window(win), (offset, n_fft - win - offset))
            self.register_buffer(f"window{i}", window, persistent=False)

    def _magnitude(self, wav: torch.Tensor, i: int) -> torch.Tensor:
        n_fft, hop = self.resolutions[i]
        spec = float32_stft(wav, n_fft, hop, getattr(self, f"window{i}"))
        return spec.abs().clamp_min(self.clamp_eps)

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x, y = _flatten(estimate), _flatten(target)
        loss = x.new_zeros((), dtype=torch.float32)
        for i in range(len(self.resolutions)):
            sx, sy = self._magnitude(x, i), self._magnitude(y, i)
            convergence = torch.linalg.vector_norm(sy - sx) / torch.linalg.vector_norm(sy)
            log_l1 = (sy.log() - sx.log()).abs().mean()
            loss = loss + convergence + log_l1
        return loss / len(self.resolutions)


COMPRESSION = 0.3


def compressed_spectral_loss(
    estimate: torch.Tensor,
    target: torch.Tensor,
    power: float = COMPRESSION,
    overshoot: float = 1.0,
) -> torch.Tensor:
    """`mean (E^c - T^c)^2` of two magnitude spectrograms, `c = power` (the postfilter's
    loss, and `CompressedSpectralLoss`'s at each resolution). With `overshoot` w != 1,
    the bins where the estimate is louder than the target count w times: PESQ's
    disturbance weighs added components up to 12 times more than missing ones."""
    error = estimate.clamp_min(1e-8) ** power - target.clamp_min(1e-8) ** power
    if overshoot == 1.0:
        return error.square().mean()
    return (error.square() * torch.where(error > 0, overshoot, 1.0)).mean()


class CompressedSpectralLoss(nn.Module):
    """Mean squared error of power-law compressed STFT magnitudes, over resolutions.

    Per resolution: `mean (|S_y|^c - |S_x|^c)^2` with `c` = 0.3 (Braun and Tashev 2021,
    the loss of the speech-enhancement comparison that scored best in PESQ). Compression
    weighs bins as loudness does: a log loss (the STFT loss above) weighs the near-silent
    bins as much as the harmonics, a linear one only the loudest bins. On the postfilter
    it gained 0.16 PESQ-WB where log magnitudes gained 0.02 (docs/model-zoo.md); this
    puts the same objective on the codec's own output.

    Args:
        fft_sizes: Hann windows of these sizes, hop a quarter of each.
        compression: the exponent `c`.
        eps: added to the magnitudes, so the power's gradient is finite at silence.
    Shapes: `[B, 1, T]` or `[B, T]` for both inputs -> scalar.
    """

    def __init__(
        self,
        fft_sizes: tuple[int, ...] = (256, 512, 1024),
        compression: float = COMPRESSION,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if not fft_sizes or not 0 < compression <= 1:
            raise ConfigError("the compressed loss needs FFT sizes and 0 < compression <= 1")
        self.fft_sizes = tuple(fft_sizes)
        self.compression, self.eps = compression, eps
        for n_fft in self.fft_sizes:
            self.register_buffer(f"window{n_fft}", torch.hann_window(n_fft), persistent=False)

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x, y = _flatten(estimate), _flatten(target)
        loss = x.new_zeros((), dtype=torch.float32)
        for n_fft in self.fft_sizes:
            window = getattr(self, f"window{n_fft}")
            sx, sy = (float32_stft(w, n_fft, n_fft // 4, window).abs() + self.eps for w in (x, y))
            loss = loss + compressed_spectral_loss(sx, sy, self.compression)
        return loss / len(self.fft_sizes)


def waveform_l1(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute sample error (EnCodec's time-domain reconstruction term)."""
    return (estimate - target).abs().mean()


def lowpass_taps(cutoff_hz: float, sample_rate: int, n_taps: int = 255) -> torch.Tensor:
    """Linear-phase FIR low-pass: a Hann-windowed sinc with unit gain at 0 Hz.

    With 255 taps the transition band is about 3 * sample_rate / 255 wide (190 Hz at
    16 kHz), centred on `cutoff_hz`.
    """
    if not 0 < cutoff_hz < sample_rate / 2:
        raise ConfigError(
            f"losses.waveform_cutoff must be between 0 and {sample_rate / 2:g} Hz "
            f"(half the sample rate), got {cutoff_hz:g}"
        )
    t = torch.arange(n_taps, dtype=torch.float64) - (n_taps - 1) / 2
    taps = torch.sinc(2 * cutoff_hz / sample_rate * t) * torch.hann_window(
        n_taps, periodic=False, dtype=torch.float64
    )
    return (taps / taps.sum()).float()


class WaveformL1(nn.Module):
    """`waveform_l1` as a module: `[B, 1, T]`, `[B, 1, T]` -> scalar.

    With `cutoff_hz` > 0 the error is low-passed before the L1, so the term anchors only
    the bands below the cutoff, where a waveform match is attainable; above it the
    phase is unpredictable and an L1's optimum is silence, which muffles the output
    (docs/benchmarks.md, seventh session). 0 compares the full band (EnCodec's term).
    """

    def __init__(self, cutoff_hz: float = 0.0, sample_rate: int = 16000) -> None:
        super().__init__()
        taps = lowpass_taps(cutoff_hz, sample_rate) if cutoff_hz != 0 else None
        self.register_buffer("taps", taps, persistent=False)

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.taps is None:
            return waveform_l1(estimate, target)
        error = _flatten(estimate).float() - _flatten(target).float()
        # The "same" linear convolution with the taps, through FFTs: as a conv1d, 255 taps
        # cost 120 ms a step of 16 one-second crops on a CPU thread, the FFTs 12 ms.
        n_taps, length = self.taps.shape[-1], error.shape[-1]
        n = length + n_taps - 1
        with torch.autocast(device_type=error.device.type, enabled=False):
            spectrum = torch.fft.rfft(error, n) * torch.fft.rfft(self.taps, n)
            low = torch.fft.irfft(spectrum, n)[:, n_taps // 2 : n_taps // 2 + length]
        return low.abs().mean()


class AdversarialLoss(nn.Module):
    """GAN objectives on lists of discriminator logits, one tensor per sub-discriminator.

    Each term is averaged over the sub-discriminators.

    Args:
        kind: "hinge" (EnCodec, MelGAN) or "lsgan" (least squares, HiFi-GAN/DAC).
    """

    KINDS = ("hinge", "lsgan")

    def __init__(self, kind: str = "hinge") -> None:
        super().__init__()
        if kind not in self.KINDS:
            raise ConfigError(f"unknown adversarial loss {kind!r}; known: {', '.join(self.KINDS)}")
        self.kind = kind

    def generator(self, fake_logits: list[torch.Tensor]) -> torch.Tensor:
        """Loss of the generator, which wants its audio called real: scalar."""
        if self.kind == "hinge":
            terms = [nn.functional.relu(1 - f).mean() for f in fake_logits]
        else:
            terms = [(1 - f).pow(2).mean() for f in fake_logits]
        return torch.stack(terms).mean()

    def discriminator(
        self, real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]
    ) -> torch.Tensor:
        """Loss of the discriminator, which wants real near 1 (or above) and fake near -1/0."""
        terms = []
        for r, f in zip(real_logits, fake_logits, strict=True):
            if self.kind == "hinge":
                terms.append(nn.functional.relu(1 - r).mean() + nn.functional.relu(1 + f).mean())
            else:
                terms.append((1 - r).pow(2).mean() + f.pow(2).mean())
        return torch.stack(terms).mean()


class FeatureMatchingLoss(nn.Module):
    """EnCodec's relative feature-matching loss, averaged over all layers of all
    sub-discriminators: `mean|f_fake - f_real| / (mean|f_real| + eps)`.

    Dividing by the size of the real features keeps every layer on the same scale, and
    makes the loss invariant to scaling both features by a constant. Real features are
    detached: this loss trains the generator only.

    Shapes: `features[k][l]` is layer l of sub-discriminator k, any shape -> scalar.
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(
        self, real_features: list[list[torch.Tensor]], fake_features: list[list[torch.Tensor]]
    ) -> torch.Tensor:
        terms = []
        for real_layers, fake_layers in zip(real_features, fake_features, strict=True):
            for real, fake in zip(real_layers, fake_layers, strict=True):
                real = real.detach().float()
                distance = (fake.float() - real).abs().mean()
                terms.append(distance / (real.abs().mean() + self.eps))
        return torch.stack(terms).mean()
