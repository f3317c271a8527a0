import math
import os

import numpy as np
import pytest

import codec.features.cache as cache
from codec.audio import save_audio
from codec.errors import CodecError
from codec.features import (
    Normalizer,
    ProsodyConfig,
    ProsodyStats,
    cached_extract,
    extract,
    num_frames,
)

SR = 16000
CONFIG = ProsodyConfig()


def harmonic_glide(f_start: float, f_end: float, seconds: float = 1.0, gain: float = 0.3):
    """[T] three-harmonic tone whose F0 glides linearly; returns (wav, f0 per sample)."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = f_start + (f_end - f_start) * t / seconds
    phase = 2 * np.pi * np.cumsum(f0) / SR
    wav = sum(np.sin(k * phase) / k for k in (1, 2, 3))
    envelope = np.linspace(0.3, 1.0, len(t))  # varying loudness: energy has a real std
    return (gain * envelope * wav / 1.8).astype(np.float32), f0


@pytest.fixture(scope="module")
def glide():
    wav, f0 = harmonic_glide(150.0, 250.0)
    return wav, f0, extract(wav, CONFIG)


def test_glide_log_f0_within_50_cents(glide):
    wav, f0, feats = glide
    truth = f0[np.arange(feats.num_frames) * CONFIG.hop_length]
    inner = slice(3, -3)  # the edge frames see the zero padding of center=True
    assert feats.voiced[inner].all()
    assert np.median(feats.voiced_prob[inner]) > 0.5
    cents = 1200 / math.log(2) * (feats.log_f0[inner] - np.log(truth[inner]))
    assert np.abs(cents).max() < 50


def test_features_stack_and_frame_rate(glide):
    _, _, feats = glide
    assert feats.stack().shape == (feats.num_frames, 3)
    assert feats.frame_rate == 50.0
    assert ((feats.voiced_prob >= 0) & (feats.voiced_prob <= 1)).all()


@pytest.mark.parametrize("length", [0, 1, 100, 319, 320, 321, 1000, 16000, 16001])
def test_silence_is_unvoiced_finite_and_frame_aligned(length):
    feats = extract(np.zeros(length, np.float32), CONFIG)
    assert feats.num_frames == num_frames(length, CONFIG.hop_length) == math.ceil(length / 320)
    assert not feats.voiced.any()
    for array in (feats.log_f0, feats.voiced_prob, feats.log_energy):
        assert array.shape == (feats.num_frames,)
        assert np.isfinite(array).all()
    assert np.allclose(feats.log_energy, math.log(10) * CONFIG.energy_floor_db / 20)


@pytest.mark.parametrize("length", [4000, 4321, 9600])
def test_frame_count_on_voiced_audio(length):
    wav, _ = harmonic_glide(200.0, 200.0, seconds=length / SR)
    assert extract(wav, CONFIG).num_frames == math.ceil(length / CONFIG.hop_length)


def test_energy_follows_6db_gain(glide):
    wav, _, feats = glide
    louder = extract(2 * wav, CONFIG)
    np.testing.assert_allclose(louder.log_energy - feats.log_energy, math.log(2), atol=1e-4)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_is_a_codec_error(bad):
    wav = np.zeros(1600, np.float32)
    wav[10] = bad
    with pytest.raises(CodecError):
        extract(wav, CONFIG)


@pytest.fixture(scope="module")
def speakers():
    low = [extract(harmonic_glide(f, f + 30)[0], CONFIG) for f in (100.0, 120.0)]
    high = [extract(harmonic_glide(f, f + 60, gain=0.1)[0], CONFIG) for f in (220.0, 260.0)]
    return {"low": low, "high": high}


def test_per_speaker_normaliser_round_trip_and_standardises(speakers):
    norm = Normalizer().fit(speakers)
    for speaker, utterances in speakers.items():
        normed = [norm.apply(f, speaker) for f in utterances]
        f0 = np.concatenate([n.log_f0[n.voiced] for n in normed])
        energy = np.concatenate([n.log_energy for n in normed])
        assert abs(f0.mean()) < 1e-4 and abs(f0.std() - 1) < 1e-3
        assert abs(energy.mean()) < 1e-4 and abs(energy.std() - 1) < 1e-3
        for original, n in zip(utterances, normed, strict=True):
            back = norm.invert(n, speaker)
            np.testing.assert_allclose(back.log_f0, original.log_f0, atol=1e-5)
            np.testing.assert_allclose(back.log_energy, original.log_energy, atol=1e-5)
            np.testing.assert_array_equal(n.voiced_prob, original.voiced_prob)


def test_speakers_get_different_statistics(speakers):
    stats = Normalizer().fit(speakers).stats
    assert stats["high"].f0_mean - stats["low"].f0_mean > math.log(1.8)
    assert stats["high"].energy_mean < stats["low"].energy_mean


def test_per_utterance_and_flat_input_do_not_divide_by_zero(glide):
    _, _, feats = glide
    normed = Normalizer().per_utterance(feats)
    assert abs(normed.log_f0[feats.voiced].mean()) < 1e-4
    silent = extract(np.zeros(1600, np.float32), CONFIG)
    stats = ProsodyStats.fit([silent], min_std=1e-3)
    assert stats.f0_std == stats.energy_std == 1e-3
    assert np.isfinite(stats.apply(silent).stack()).all()


def test_unknown_speaker_is_a_codec_error(speakers):
    with pytest.raises(CodecError, match="nope"):
        Normalizer().fit(speakers).apply(speakers["low"][0], "nope")


@pytest.fixture
def counted_extract(monkeypatch):
    calls = []

    def counting(wav, config):
        calls.append(len(wav))
        return extract(wav, config)

    monkeypatch.setattr(cache, "extract", counting)
    return calls


def write_tone(path, seconds: float, f0: float = 200.0) -> None:
    save_audio(path, harmonic_glide(f0, f0, seconds)[0], SR)


def test_cache_hit_returns_equal_arrays_without_recomputing(tmp_path, counted_extract):
    wav_path = tmp_path / "a.wav"
    write_tone(wav_path, 1.0)
    first = cached_extract(wav_path, CONFIG, tmp_path / "cache")
    second = cached_extract(wav_path, CONFIG, tmp_path / "cache")
    assert len(counted_extract) == 1
    np.testing.assert_array_equal(first.stack(), second.stack())
    np.testing.assert_array_equal(first.voiced, second.voiced)
    assert second.voiced.dtype == bool and second.frame_rate == first.frame_rate


def test_cache_misses_when_file_or_config_changes(tmp_path, counted_extract):
    wav_path = tmp_path / "a.wav"
    write_tone(wav_path, 1.0)
    cached_extract(wav_path, CONFIG, tmp_path / "cache")
    write_tone(wav_path, 1.5, f0=120.0)
    stat = wav_path.stat()
    os.utime(wav_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    changed = cached_extract(wav_path, CONFIG, tmp_path / "cache")
    assert len(counted_extract) == 2
    assert changed.num_frames == 75
    cached_extract(wav_path, ProsodyConfig(fmax=400.0), tmp_path / "cache")
    assert len(counted_extract) == 3


def test_corrupt_cache_file_is_recomputed(tmp_path, counted_extract):
    wav_path = tmp_path / "a.wav"
    write_tone(wav_path, 1.0)
    first = cached_extract(wav_path, CONFIG, tmp_path / "cache")
    (cache_file,) = (tmp_path / "cache").glob("*.npz")
    cache_file.write_bytes(b"not a zip file")
    again = cached_extract(wav_path, CONFIG, tmp_path / "cache")
    assert len(counted_extract) == 2
    np.testing.assert_array_equal(first.stack(), again.stack())
    assert cached_extract(wav_path, CONFIG, tmp_path / "cache").num_frames == 50
    assert len(counted_extract) == 2  # the rewritten cache file is good again
