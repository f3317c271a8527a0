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


needs_codec2 = pytest.mark.skipif(not baselines.codec2_available(), reason="codec2 missing")
needs_speex = pytest.mark.skipif(not baselines.speex_available(), reason="speex missing")


def _shifted(x: np.ndarray, samples: int) -> np.ndarray:
    """`x` moved later by `samples` (earlier if negative), same length."""
    out = np.zeros_like(x)
    if samples >= 0:
        out[samples:] = x[: x.size - samples]
    else:
        out[:samples] = x[-samples:]
    return out


@needs_codec2
@pytest.mark.parametrize("mode, kbps", [("3200", 3.2), ("1600", 1.6), ("700C", 0.7)])
def test_run_codec2_returns_aligned_signal_at_mode_bitrate(speech, mode, kbps):
    result = baselines.run_codec2(speech, SR, mode)
    assert result.decoded.shape == speech.shape
    assert result.decoded.dtype == np.float32
    assert result.packet_bytes * 8 / 3.0 / 1000 == pytest.approx(kbps, rel=0.1)
    assert result.payload_bytes >= result.packet_bytes + 7  # the .c2 header, byte-aligned frames
    # Codec 2 synthesises its own phase, so alignment shows in intelligibility, not SI-SDR:
    # 20 ms more or less delay costs STOI.
    aligned = metrics.stoi(speech, result.decoded, SR)
    assert aligned > 0.75
    for shift in (-320, 320):
        assert aligned > metrics.stoi(speech, _shifted(result.decoded, shift), SR) + 0.03


@needs_speex
@pytest.mark.parametrize("seconds", [1.0, 3.0])  # audio on one Ogg page, and on several
def test_run_speex_wideband_is_aligned_at_its_nominal_bitrate(seconds):
    speech = voiced(seconds=seconds)
    result = baselines.Baseline("speex", "wb4").run(speech, SR)
    assert result.decoded.shape == speech.shape
    assert result.packet_bytes * 8 / seconds / 1000 == pytest.approx(12.8, rel=0.05)
    assert result.payload_bytes > result.packet_bytes
    _, _, lag = metrics.align(speech, result.decoded, max_lag=SR // 10)
    assert lag == 0
    assert metrics.si_sdr(speech, result.decoded) > 1.0


@needs_speex
def test_run_speex_narrowband_codes_at_8_khz_and_returns_input_rate(speech):
    result = baselines.run_speex(speech, SR, quality=8, band="nb")
    assert result.decoded.shape == speech.shape
    assert result.packet_bytes * 8 / 3.0 / 1000 == pytest.approx(15.0, rel=0.05)
    assert metrics.align(speech, result.decoded, max_lag=SR // 10)[2] == 0


@pytest.mark.parametrize(
    "run, message",
    [
        (lambda x: baselines.run_codec2(x, SR, "1600"), "c2enc not found: install codec2"),
        (lambda x: baselines.run_speex(x, SR, 4), "speexenc not found: install speex"),
    ],
)
def test_missing_tools_name_their_debian_package(monkeypatch, speech, run, message):
    monkeypatch.setenv("PATH", "")
    with pytest.raises(baselines.BaselineError, match=message):
        run(speech)
    assert "apt-get install" in baselines.Baseline("codec2", "1600").missing_tool()


def test_parse_baselines_gives_one_baseline_per_setting():
    parsed = baselines.parse_baselines(["opus:6,8.0,12", "codec2:1600,700c", "speex:WB4,nb8"])
    assert [b.name for b in parsed] == [
        "opus:6", "opus:8", "opus:12", "codec2:1600", "codec2:700C", "speex:wb4", "speex:nb8",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "spec, message",
    [
        ("opus", "expected CODEC:SETTINGS"),
        ("opus:", "expected CODEC:SETTINGS"),
        ("mp3:8", "unknown codec 'mp3'"),
        ("opus:3", "'3' is not a bitrate of 6 to 256 kbps"),
        ("opus:fast", "'fast' is not a bitrate"),
        ("codec2:999", "'999' is not a Codec 2 mode"),
        ("speex:wb11", "'wb11' is not a Speex band and quality"),
        ("speex:uwb4", "'uwb4' is not a Speex band"),
        ("opus:6,6", "opus:6 is given twice"),
    ],
)
def test_parse_baselines_rejects_bad_specs_in_one_line(spec, message):
    with pytest.raises(baselines.BaselineError, match=message) as caught:
        baselines.parse_baselines([spec])
    assert "\n" not in str(caught.value)
