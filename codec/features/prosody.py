"""Per-frame prosody features at the codec's frame rate: log-F0, voicing, log energy.

F0 and voicing come from pYIN (`librosa.pyin`, Mauch & Dixon 2014); energy is the log
RMS over the same window. Frames are aligned with codec frames: frame `i` is centred on
sample `i * hop_length` and there are `ceil(T / hop_length)` of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Self

import librosa
import numpy as np

from codec.errors import AudioError, CodecError


@dataclass(frozen=True)
class ProsodyConfig:
    """How prosody features are extracted.

    Args:
        sample_rate: rate of the input waveform in Hz.
        hop_length: samples per frame; 320 at 16 kHz is the codec's 50 Hz frame rate.
        fmin: lowest F0 searched by pYIN, in Hz.
        fmax: highest F0 searched by pYIN, in Hz.
        frame_length: pYIN analysis window (also the RMS window), in samples.
        energy_floor_db: floor of the frame RMS in dB re full scale (silence stays finite).
    """

    sample_rate: int = 16000
    hop_length: int = 320
    fmin: float = 60.0
    fmax: float = 500.0
    frame_length: int = 1024
    energy_floor_db: float = -80.0

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.sample_rate / self.hop_length


@dataclass
class ProsodyFeatures:
    """Prosody of one utterance, one value per codec frame.

    Args:
        log_f0: [F] natural log of F0 in Hz. Unvoiced frames are filled by linear
            interpolation between voiced neighbours, held at the edges; with no voiced
            frame at all, the constant log(sqrt(fmin * fmax)).
        voiced_prob: [F] pYIN voicing probability in [0, 1].
        voiced: [F] bool, pYIN's voicing decision.
        log_energy: [F] natural log of the frame RMS, floored at `energy_floor_db`.
        frame_rate: frames per second.
    """

    log_f0: np.ndarray
    voiced_prob: np.ndarray
    voiced: np.ndarray
    log_energy: np.ndarray
    frame_rate: float

    @property
    def num_frames(self) -> int:
        """Number of frames F."""
        return len(self.log_f0)

    def stack(self) -> np.ndarray:
        """[F, 3] float32 matrix of (log_f0, voiced_prob, log_energy)."""
        return np.stack([self.log_f0, self.voiced_prob, self.log_energy], axis=1).astype(np.float32)


def num_frames(num_samples: int, hop_length: int) -> int:
    """Codec frame count for `num_samples` samples: ceil(T / hop_length)."""
    return -(-num_samples // hop_length)


def extract(wav: np.ndarray, config: ProsodyConfig = ProsodyConfig()) -> ProsodyFeatures:
    """Prosody features of a mono waveform [T] at `config.sample_rate`.

    pYIN with `center=True` gives `1 + T // hop` frames; the output is trimmed (or
    edge-padded, never needed in practice) to the codec's `ceil(T / hop)` frames.
    Raises `AudioError` for non-finite samples or a non-1-D array.
    """
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise AudioError(f"prosody needs a mono waveform [T], got shape {wav.shape}")
    if not np.all(np.isfinite(wav)):
        raise AudioError("waveform holds NaN or infinite samples")
    n = num_frames(len(wav), config.hop_length)
    if n == 0:
        empty = np.zeros(0, dtype=np.float32)
        return ProsodyFeatures(
            empty, empty.copy(), np.zeros(0, bool), empty.copy(), config.frame_rate
        )
    f0, voiced, voiced_prob = librosa.pyin(
        wav,
        fmin=config.fmin,
        fmax=config.fmax,
        sr=config.sample_rate,
        frame_length=config.frame_length,
        hop_length=config.hop_length,
        center=True,
    )
    voiced = _fit_length(voiced, n) & np.isfinite(_fit_length(f0, n))
    log_f0 = _fill_unvoiced(np.log(_fit_length(f0, n)), voiced, _default_log_f0(config))
    voiced_prob = np.clip(np.nan_to_num(_fit_length(voiced_prob, n)), 0.0, 1.0)
    return ProsodyFeatures(
        log_f0=log_f0.astype(np.float32),
        voiced_prob=voiced_prob.astype(np.float32),
        voiced=voiced.astype(bool),
        log_energy=_log_energy(wav, config, n),
        frame_rate=config.frame_rate,
    )


def _log_energy(wav: np.ndarray, config: ProsodyConfig, n: int) -> np.ndarray:
    """[F] log RMS over `frame_length` windows centred on the frames, floored."""
    rms = librosa.feature.rms(
        y=wav, frame_length=config.frame_length, hop_length=config.hop_length, center=True
    )[0]
    floor = math.log(10.0) * config.energy_floor_db / 20.0
    with np.errstate(divide="ignore"):
        log_rms = np.log(_fit_length(rms, n).astype(np.float64))
    return np.maximum(log_rms, floor).astype(np.float32)


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Trim [F'] to [n] frames, or repeat the last frame if it is short."""
    if len(x) >= n:
        return x[:n]
    return np.concatenate([x, np.repeat(x[-1:], n - len(x))])


def _default_log_f0(config: ProsodyConfig) -> float:
    """log-F0 used when nothing is voiced: the geometric middle of the search range."""
    return 0.5 * (math.log(config.fmin) + math.log(config.fmax))


def _fill_unvoiced(log_f0: np.ndarray, voiced: np.ndarray, default: float) -> np.ndarray:
    """[F] log_f0 with unvoiced frames interpolated between voiced ones, edge-held."""
    if not voiced.any():
        return np.full(len(log_f0), default)
    idx = np.arange(len(log_f0))
    return np.interp(idx, idx[voiced], log_f0[voiced])


@dataclass(frozen=True)
class ProsodyStats:
    """Mean and std of log-F0 (over voiced frames) and of log energy (over all frames)."""

    f0_mean: float
    f0_std: float
    energy_mean: float
    energy_std: float

    @classmethod
    def fit(cls, features: list[ProsodyFeatures], min_std: float = 1e-3) -> Self:
        """Statistics of a list of utterances; std floored at `min_std`.

        With no voiced frame at all, log-F0 statistics use every frame (the filled value).
        """
        if not features or sum(f.num_frames for f in features) == 0:
            raise CodecError("cannot fit prosody statistics on zero frames")
        log_f0 = np.concatenate([f.log_f0 for f in features]).astype(np.float64)
        voiced = np.concatenate([f.voiced for f in features])
        f0 = log_f0[voiced] if voiced.any() else log_f0
        energy = np.concatenate([f.log_energy for f in features]).astype(np.float64)
        return cls(
            f0_mean=float(f0.mean()),
            f0_std=max(float(f0.std()), min_std),
            energy_mean=float(energy.mean()),
            energy_std=max(float(energy.std()), min_std),
        )

    def apply(self, features: ProsodyFeatures) -> ProsodyFeatures:
        """Standardise log_f0 and log_energy; voiced_prob and voiced are untouched."""
        return replace(
            features,
            log_f0=((features.log_f0 - self.f0_mean) / self.f0_std).astype(np.float32),
            log_energy=((features.log_energy - self.energy_mean) / self.energy_std).astype(
                np.float32
            ),
        )

    def invert(self, features: ProsodyFeatures) -> ProsodyFeatures:
        """Undo `apply`."""
        return replace(
            features,
            log_f0=(features.log_f0 * self.f0_std + self.f0_mean).astype(np.float32),
            log_energy=(features.log_energy * self.energy_std + self.energy_mean).astype(
                np.float32
            ),
        )


class Normalizer:
    """Per-speaker (or per-utterance) standardisation of log-F0 and log energy.

    Args:
        min_std: floor of every std, so a flat speaker never divides by zero.
    """

    def __init__(self, min_std: float = 1e-3) -> None:
        self.min_std = min_std
        self.stats: dict[str, ProsodyStats] = {}

    def fit(self, features_by_speaker: dict[str, list[ProsodyFeatures]]) -> Self:
        """Fit one `ProsodyStats` per speaker; returns self."""
        self.stats = {
            speaker: ProsodyStats.fit(features, self.min_std)
            for speaker, features in features_by_speaker.items()
        }
        return self

    def apply(self, features: ProsodyFeatures, speaker: str) -> ProsodyFeatures:
        """Normalise one utterance with its speaker's statistics."""
        return self._stats(speaker).apply(features)

    def invert(self, features: ProsodyFeatures, speaker: str) -> ProsodyFeatures:
        """Undo `apply` for that speaker."""
        return self._stats(speaker).invert(features)

    def per_utterance(self, features: ProsodyFeatures) -> ProsodyFeatures:
        """Normalise one utterance with its own statistics (no speaker labels needed)."""
        return ProsodyStats.fit([features], self.min_std).apply(features)

    def _stats(self, speaker: str) -> ProsodyStats:
        if speaker not in self.stats:
            raise CodecError(f"no prosody statistics for speaker {speaker!r}; fit it first")
        return self.stats[speaker]
