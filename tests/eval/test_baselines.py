"""Opus through opus-tools as a baseline: length, bitrate and delay compensation."""

import numpy as np
import pytest

from codec.eval import baselines, metrics
from tests.eval.test_metrics import SR, voiced

needs_opus = pytest.mark.skipif(not baselines.opus_available(), reason="opus-tools missing")


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return voiced()


@needs_opus
@pytest.mark.parametrize("kbps", [6.0, 12.0])
def test_run_opus_returns_aligned_signal_at_requested_bitrate(speech, kbps):
    result = baselines.run_opus(speech, SR, kbps)
    assert result.decoded.shape == speech.shape
    assert result.decoded.dtype == np.float32
    assert result.bitrate_kbps == pytest.approx(kbps, rel=0.4)
    assert result.bitrate_kbps == result.payload_bytes * 8 / 3.0 / 1000
    assert 0 < result.packet_bytes < result.payload_bytes
    _, _, lag = metrics.align(speech, result.decoded, max_lag=SR // 10)
    assert abs(lag) <= 1
    assert metrics.si_sdr(speech, result.decoded) > 3.0


@needs_opus
def test_run_opus_keeps_input_sample_rate():
    x = voiced(sample_rate=24000, seconds=1.0)
    result = baselines.run_opus(x, 24000, 12.0)
    assert result.decoded.shape == x.shape
    assert np.corrcoef(x, result.decoded)[0, 1] > 0.5


@needs_opus
def test_run_opus_rejects_out_of_range_bitrate(speech):
    with pytest.raises(baselines.BaselineError, match="bitrate"):
        baselines.run_opus(speech, SR, 3.0)


def test_missing_opus_tools_raise_baseline_error(monkeypatch, speech):
    monkeypatch.setenv("PATH", "")
    assert not baselines.opus_available()
    with pytest.raises(baselines.BaselineError, match="opusenc not found"):
        baselines.run_opus(speech, SR, 12.0)
