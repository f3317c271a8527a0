"""Objective metrics on synthetic speech-like signals with known degradations."""

import math

import numpy as np
import pytest
import scipy.signal

from codec.eval import metrics

SR = 16000


def voiced(sample_rate: int = SR, seconds: float = 3.0) -> np.ndarray:
    """A vowel-like test signal `[T]`: a gliding harmonic source through three formant
    resonators, gated into syllables by a 2 Hz envelope; PESQ accepts it as speech."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t) + 10 * np.sin(2 * np.pi * 2.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    source = sum(np.sin(k * phase) / k for k in range(1, int(sample_rate / 2 / 180)))
    out = np.zeros_like(t)
    for centre, bandwidth, gain in [(700, 130, 1.0), (1220, 70, 0.6), (2600, 160, 0.3)]:
        r = np.exp(-np.pi * bandwidth / sample_rate)
        theta = 2 * np.pi * centre / sample_rate
        out += gain * scipy.signal.lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], source)
    out *= np.sqrt(np.clip(np.sin(2 * np.pi * 2.0 * t), 0, None))
    return (0.3 * out / np.max(np.abs(out))).astype(np.float32)


def add_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """`x` plus white noise scaled to exactly `snr_db` against `x`'s zero-mean energy."""
    noise = np.random.default_rng(seed).standard_normal(x.size)
    noise -= noise.mean()
    signal_energy = np.sum((x - x.mean()) ** 2)
    noise *= np.sqrt(signal_energy / np.sum(noise**2) / 10 ** (snr_db / 10))
    return (x + noise).astype(np.float32)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return voiced()


def test_si_sdr_of_identical_signals_is_huge(speech):
    assert metrics.si_sdr(speech, speech) > 100


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_si_sdr_matches_known_snr(speech, snr_db):
    assert metrics.si_sdr(speech, add_noise(speech, snr_db)) == pytest.approx(snr_db, abs=0.5)


def test_si_sdr_is_scale_invariant(speech):
    noisy = add_noise(speech, 10.0)
    base = metrics.si_sdr(speech, noisy)
    assert metrics.si_sdr(speech, 0.01 * noisy) == pytest.approx(base, abs=1e-6)
    assert metrics.si_sdr(7.0 * speech, noisy) == pytest.approx(base, abs=1e-6)


@pytest.mark.parametrize("delay", [37, -25, 0])
def test_align_recovers_integer_delay(delay):
    x = np.random.default_rng(1).standard_normal(8000).astype(np.float32)
    if delay >= 0:
        delayed = np.concatenate([np.zeros(delay, np.float32), x])
    else:
        delayed = x[-delay:]
    ref, deg, lag = metrics.align(x, delayed, max_lag=100)
    assert lag == delay
    assert ref.shape == deg.shape
    np.testing.assert_array_equal(ref, deg)


def test_align_searches_only_within_max_lag():
    x = np.random.default_rng(2).standard_normal(4000)
    delayed = np.concatenate([np.zeros(300), x])
    assert abs(metrics.align(x, delayed, max_lag=100)[2]) <= 100


def test_pesq_wb_ranks_clean_above_noisy(speech):
    clean = metrics.pesq_wb(speech, speech, SR)
    assert clean > 4.0
    assert metrics.pesq_wb(speech, add_noise(speech, 5.0), SR) < clean - 1.0


def test_pesq_resamples_other_rates():
    x = voiced(sample_rate=24000)
    assert metrics.pesq_wb(x, x, 24000) > 4.0
    assert metrics.pesq_nb(x, x, 24000) > 4.0


@pytest.mark.parametrize("case", ["silent", "too_short"])
def test_pesq_is_nan_when_it_finds_no_speech(speech, case):
    ref = np.zeros_like(speech) if case == "silent" else speech[:1000]
    deg = speech if case == "silent" else ref
    assert math.isnan(metrics.pesq_wb(ref, deg, SR))
    assert math.isnan(metrics.pesq_nb(ref, deg, SR))


def test_metrics_reject_unequal_lengths(speech):
    with pytest.raises(ValueError, match="length"):
        metrics.stoi(speech, speech[:-1], SR)


def test_stoi_ranks_clean_above_noisy(speech):
    assert metrics.stoi(speech, speech, SR) == pytest.approx(1.0, abs=1e-6)
    assert metrics.stoi(speech, add_noise(speech, 0.0), SR) < 0.9


def test_mel_distance_is_zero_for_identical_and_grows_with_noise(speech):
    assert metrics.mel_distance(speech, speech, SR) == 0.0
    mild = metrics.mel_distance(speech, add_noise(speech, 20.0), SR)
    assert 0.0 < mild < metrics.mel_distance(speech, add_noise(speech, 0.0), SR)


def test_score_aligns_before_scoring(speech):
    late = np.concatenate([np.zeros(40, np.float32), speech])
    scores = metrics.score(speech, late, SR, max_lag=160)
    assert scores.si_sdr > 100
    assert scores.pesq_wb > 4.0
    assert scores.stoi == pytest.approx(1.0, abs=1e-6)
    assert scores.mel_distance == 0.0


def test_stoi_is_nan_for_a_clip_too_short_to_score():
    clip = voiced(SR, seconds=0.2)
    assert np.isnan(metrics.stoi(clip, clip, SR))
