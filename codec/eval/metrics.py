"""Objective quality metrics for decoded speech: SI-SDR, PESQ, STOI, mel distance.

Every metric takes 1-D float arrays `[T]` of equal length (call `align` first when the
degraded signal may be delayed) and returns a Python float; higher is better except for
`mel_distance`. PESQ returns NaN when either input is silent or it finds no speech in
it (or less than about a quarter second), so one bad clip does not stop an evaluation
run; reports should count NaNs rather than silently averaging them away.
"""

import warnings
from dataclasses import dataclass
from functools import lru_cache

import librosa
import numpy as np
import pystoi
import scipy.signal
import soxr

_SI_SDR_MAX_DB = 150.0  # cap for identical signals, so that averages stay finite
_MEL_N_FFT = 1024
_MEL_HOP = 256
_MEL_BANDS = 80
_LOG_FLOOR = 1e-5


def align(
    reference: np.ndarray, degraded: np.ndarray, max_lag: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Undo the delay of `degraded` against `reference`, found by FFT cross-correlation.

    The lag maximises `sum_n degraded[n + lag] * reference[n]` over `|lag| <= max_lag`,
    so a positive lag means `degraded` is late. Both signals are then shifted and trimmed
    to their common length `T'`.

    Args:
        reference: `[T1]` signal.
        degraded: `[T2]` signal, a delayed and distorted copy of `reference`.
        max_lag: largest delay searched, in samples, in either direction.
    Returns:
        `(reference [T'], degraded [T'], lag)`.
    """
    reference, degraded = _as_mono(reference), _as_mono(degraded)
    if max_lag < 0:
        raise ValueError(f"max_lag must be >= 0, got {max_lag}")
    if reference.size == 0 or degraded.size == 0:
        raise ValueError("cannot align an empty signal")
    corr = scipy.signal.correlate(degraded, reference, mode="full", method="fft")
    lags = scipy.signal.correlation_lags(degraded.size, reference.size, mode="full")
    window = np.abs(lags) <= max_lag
    lag = int(lags[window][np.argmax(corr[window])])
    if lag > 0:
        degraded = degraded[lag:]
    else:
        reference = reference[-lag:]
    n = min(reference.size, degraded.size)
    return reference[:n], degraded[:n], lag


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al., 2019, "SDR - half-baked or well done?").

    Both signals `[T]` are made zero-mean. Identical signals give 150 dB (a cap); an
    estimate with nothing of the reference in it gives -inf; a silent reference gives
    NaN, since the target is undefined.
    """
    ref, est = _check_pair(reference, estimate)
    ref, est = ref - ref.mean(), est - est.mean()
    ref_energy = float(np.dot(ref, ref))
    if ref_energy == 0.0:
        return float("nan")
    target = (np.dot(est, ref) / ref_energy) * ref
    target_energy = float(np.dot(target, target))
    if target_energy == 0.0:
        return float("-inf")
    noise = est - target
    noise_energy = max(float(np.dot(noise, noise)), target_energy * 10 ** (-_SI_SDR_MAX_DB / 10))
    return float(10 * np.log10(target_energy / noise_energy))


def pesq_wb(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
    """Wide-band PESQ (ITU-T P.862.2, MOS-LQO, about 1.0 to 4.64) at 16 kHz.

    Inputs `[T]` at `sample_rate` are resampled to 16 kHz. NaN when PESQ finds no speech.
    """
    return _pesq(reference, degraded, sample_rate, rate=16000, mode="wb")


def pesq_nb(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
    """Narrow-band PESQ (ITU-T P.862, MOS-LQO) at 8 kHz; NaN when PESQ finds no speech."""
    return _pesq(reference, degraded, sample_rate, rate=8000, mode="nb")


def stoi(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
    """Short-time objective intelligibility (Taal et al., 2011), about 0 to 1.

    pystoi resamples `[T]` inputs to 10 kHz itself. A clip with too little non-silent
    audio for one 384 ms analysis segment gets NaN: pystoi would return 1e-5 with a
    warning, a number that would drag any average down.
    """
    ref, deg = _check_pair(reference, degraded)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(pystoi.stoi(ref, deg, sample_rate, extended=False))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        return float("nan")
    return value


def mel_distance(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> float:
    """Mean absolute difference of log10 mel spectrograms (lower is better, 0 if equal).

    Magnitude STFT (Hann, n_fft 1024, hop 256, centred), 80 librosa (Slaney) mel bands
    up to Nyquist, `log10(max(mel, 1e-5))`.
    """
    ref, deg = _check_pair(reference, degraded)
    return float(np.mean(np.abs(_log_mel(ref, sample_rate) - _log_mel(deg, sample_rate))))


@dataclass(frozen=True)
class Scores:
    """All metrics of one decoded clip against its reference."""

    pesq_wb: float
    stoi: float
    si_sdr: float
    mel_distance: float


def score(
    reference: np.ndarray,
    degraded: np.ndarray,
    sample_rate: int,
    max_lag: int | None = None,
) -> Scores:
    """Compute every metric; with `max_lag` (samples) the signals are aligned first."""
    if max_lag is not None:
        reference, degraded, _ = align(reference, degraded, max_lag)
    return Scores(
        pesq_wb=pesq_wb(reference, degraded, sample_rate),
        stoi=stoi(reference, degraded, sample_rate),
        si_sdr=si_sdr(reference, degraded),
        mel_distance=mel_distance(reference, degraded, sample_rate),
    )


def _as_mono(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected a 1-D signal [T], got shape {x.shape}")
    return x


def _check_pair(reference: np.ndarray, degraded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref, deg = _as_mono(reference), _as_mono(degraded)
    if ref.size != deg.size:
        raise ValueError(
            f"signals differ in length ({ref.size} vs {deg.size}): align or trim them first"
        )
    if ref.size == 0:
        raise ValueError("cannot score an empty signal")
    return ref, deg


def _pesq(
    reference: np.ndarray, degraded: np.ndarray, sample_rate: int, rate: int, mode: str
) -> float:
    import pesq  # a C extension built from source: only needed when PESQ is asked for

    ref, deg = _check_pair(reference, degraded)
    if sample_rate != rate:
        ref, deg = soxr.resample(ref, sample_rate, rate), soxr.resample(deg, sample_rate, rate)
    if not (np.any(ref) and np.any(deg)):  # the pesq package fails on a silent input
        return float("nan")
    try:
        return float(pesq.pesq(rate, ref, deg, mode))
    except (pesq.NoUtterancesError, pesq.BufferTooShortError):
        return float("nan")


@lru_cache(maxsize=8)
def _mel_basis(sample_rate: int) -> np.ndarray:
    return librosa.filters.mel(sr=sample_rate, n_fft=_MEL_N_FFT, n_mels=_MEL_BANDS)


def _log_mel(x: np.ndarray, sample_rate: int) -> np.ndarray:
    spec = np.abs(librosa.stft(x, n_fft=_MEL_N_FFT, hop_length=_MEL_HOP, window="hann"))
    return np.log10(np.maximum(_mel_basis(sample_rate) @ spec, _LOG_FLOOR))
