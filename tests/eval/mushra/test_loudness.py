"""BS.1770 loudness: the standard's filter coefficients and its calibration tone."""

from __future__ import annotations

import numpy as np
import pytest

from codec.eval.mushra.loudness import integrated_loudness, k_weighting


def test_k_weighting_matches_the_published_48khz_coefficients():
    shelf, high_pass = k_weighting(48000)
    np.testing.assert_allclose(shelf[:3], [1.53512485958697, -2.69169618940638, 1.19839281085285])
    np.testing.assert_allclose(shelf[4:], [-1.69065929318241, 0.73248077421585])
    np.testing.assert_allclose(high_pass[:3], [1.0, -2.0, 1.0])
    np.testing.assert_allclose(high_pass[4:], [-1.99004745483398, 0.99007225036621])


@pytest.mark.parametrize("rate", [16000, 48000])
def test_full_scale_997hz_sine_reads_minus_3_lufs(rate):
    t = np.arange(3 * rate) / rate
    assert integrated_loudness(np.sin(2 * np.pi * 997 * t), rate) == pytest.approx(-3.01, abs=0.05)


def test_gating_ignores_silence_and_silence_alone_is_minus_infinity():
    rate = 16000
    t = np.arange(2 * rate) / rate
    tone = 0.1 * np.sin(2 * np.pi * 997 * t)
    padded = np.concatenate([np.zeros(4 * rate), tone])
    # Without gating, 4 s of silence would lower the 2 s tone by 10*log10(3) = 4.8 dB;
    # only the blocks straddling the onset still count a little.
    expected = integrated_loudness(tone, rate)
    assert integrated_loudness(padded, rate) == pytest.approx(expected, abs=0.5)
    assert integrated_loudness(np.zeros(rate), rate) == float("-inf")
