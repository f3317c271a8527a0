"""A learnt postfilter: gains on the decoded audio's spectrum, its phase kept.

The decoder's output has the right spectrum below 1 kHz and the wrong fine structure
above it (`docs/model-zoo.md`): with the input's 1-4 kHz magnitudes and its own phase,
the shipped model's PESQ-WB would rise from 1.7 to 2.35. A speech codec's postfilter is
the classical answer (the pitch and formant postfilters of AMR-WB and EVS; Opus 1.5's
learnt LACE/NoLACE): it reshapes the decoded spectrum, after the bitstream, so the codes
and everything that reads them stay as they are.

This one is a causal temporal convolution network over STFT frames. Each frame's log
magnitudes (and those of the frames before it) give a gain per bin, bounded to
`+-max_gain_db`; the gains scale the complex spectrum and the frames are overlap-added
back. The output layer starts at zero, so an untrained postfilter is the identity.
Frames overlap by 75% (hop `N / 4`, Hann window) or by 50% (hop `N / 2`, a sqrt-Hann
window for analysis and again for synthesis, as RNNoise and PercepNet do): half the
frames, so about half the cost, and a hop less latency.

Framing is causal: frame k covers samples `[kH - (N - H), kH + H)` (zeros before the
start), and once it is in, every sample before `kH + H - (N - H)` is final. So in a
stream the output runs `N - H` samples (24 ms at the defaults) behind the input, a hop
(8 ms) at a time: the postfilter's latency, added to the codec's one frame.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from codec.config import PostFilterConfig
from codec.nn.conv import Conv1d


class PostFilter(nn.Module):
    """Causal spectral-gain postfilter.

    Example:
        >>> pf = PostFilter(PostFilterConfig()).eval()
        >>> enhanced = pf(decoded)          # [B, T] -> [B, T], aligned with the input

    Shapes: `gains`: magnitudes `[B, bins, F]` -> log10 gains `[B, bins, F]`;
    `forward`: `[B, T]` -> `[B, T]`.
    """

    def __init__(self, config: PostFilterConfig) -> None:
        super().__init__()
        self.config = config
        bins, ch = config.n_fft // 2 + 1, config.channels
        self.inp = Conv1d(bins, ch, 3)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.GELU(), Conv1d(ch, ch, 3, dilation=d), nn.GELU(), Conv1d(ch, ch, 1))
            for d in config.dilations
        )
        self.act = nn.GELU()
        self.out = nn.Conv1d(ch, bins, 1)  # zero at init: the identity filter
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        window = torch.hann_window(config.n_fft)
        if config.overlap == 2:  # analysis and synthesis sqrt-Hann: their product sums to 1
            window = window.sqrt()
        self.register_buffer("window", window, persistent=False)
        # Divided by what the overlapping squared windows sum to (1.5 for Hann at 75%,
        # 1 at 50%), so that analysis, synthesis and overlap-add give back the input.
        ola_gain = (window**2).sum() / config.hop_length
        self.register_buffer("synthesis_window", window / ola_gain, persistent=False)

    def gains(self, magnitudes: torch.Tensor) -> torch.Tensor:
        """Log10 gain per bin and frame, each frame seeing only itself and earlier ones."""
        features = magnitudes.clamp_min(self.config.floor).log10() + 1.0
        return (self.config.max_gain_db / 20) * self._bounded(features)

    def _bounded(self, features: torch.Tensor) -> torch.Tensor:
        """The network: features `log10 |X| + 1` -> gains in [-1, 1], to be scaled."""
        h = self.inp(features)
        for block in self.blocks:
            h = h + block(h)
        return torch.tanh(self.out(self.act(h)))

    def apply_gains(self, spectra: torch.Tensor) -> torch.Tensor:
        """`spectra` (complex, or magnitudes) scaled by the gains their magnitudes give."""
        if not spectra.is_complex():
            return spectra * 10 ** self.gains(spectra)
        # The same, cheaper: log magnitudes from the power (no square root), the gains
        # as one exp, applied as a complex-by-real product.
        power = spectra.real.square() + spectra.imag.square()
        features = 0.5 * power.clamp_min(self.config.floor**2).log10() + 1.0
        gains = torch.exp((math.log(10) * self.config.max_gain_db / 20) * self._bounded(features))
        return spectra * gains

    def frames(self, audio: torch.Tensor) -> torch.Tensor:
        """Complex spectra of the causal frames of `[B, L]` audio whose first `N - H`
        samples are history: `[B, bins, (L - N) // H + 1]`."""
        n, h = self.config.n_fft, self.config.hop_length
        frames = audio.unfold(-1, n, h) * self.window
        return torch.fft.rfft(frames, dim=-1).transpose(1, 2)

    def synthesis(self, spectra: torch.Tensor) -> torch.Tensor:
        """Windowed inverse FFTs of `[B, bins, F]`, overlap-added: `[B, (F - 1) H + N]`.
        Only samples covered by `overlap` frames are complete."""
        n, h, r = self.config.n_fft, self.config.hop_length, self.config.overlap
        frames = torch.fft.irfft(spectra.transpose(1, 2), n=n, dim=-1) * self.synthesis_window
        b, f = frames.shape[:2]
        # Hop-long pieces: output hop k is the sum of piece j of frame k - j, j < r.
        pieces = frames.view(b, f, r, h)
        out = frames.new_zeros(b, f + r - 1, h)
        for j in range(r):
            out[:, j : j + f] += pieces[:, :, j]
        return out.view(b, (f + r - 1) * h)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        n, h = self.config.n_fft, self.config.hop_length
        t = audio.shape[-1]
        n_frames = (n - h + t - 1) // h + 1
        right = (n_frames - 1) * h + n - (n - h) - t
        padded = nn.functional.pad(audio, (n - h, right))
        return self.synthesis(self.apply_gains(self.frames(padded)))[:, n - h : n - h + t]
