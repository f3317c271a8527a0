"""Reconstruction losses for codec training.

The multi-scale mel loss compares log-mel spectrograms at several window sizes, so both
fine time detail (short windows) and pitch harmonics (long windows) are penalised; it
follows DAC's `MelSpectrogramLoss` (windows 32..2048, L1 on log10 magnitudes).
"""

from __future__ import annotations

import librosa
import torch
from torch import nn


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
        spec = torch.stft(
            wav, self.n_fft, self.hop_length, window=self.window, center=True, return_complex=True
        ).abs()
        return self.filters @ spec


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
        x, y = estimate.reshape(-1, estimate.shape[-1]), target.reshape(-1, target.shape[-1])
        loss = x.new_zeros(())
        for mel in self.mels:
            mx = mel(x).clamp_min(self.clamp_eps).log10()
            my = mel(y).clamp_min(self.clamp_eps).log10()
            loss = loss + (mx - my).abs().mean()
        return loss / len(self.mels)


def waveform_l1(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute sample error (EnCodec's time-domain reconstruction term)."""
    return (estimate - target).abs().mean()
