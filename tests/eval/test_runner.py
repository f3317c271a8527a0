"""Running systems over a folder: rows per file and system, skipped files, summaries."""

import math
from pathlib import Path

import numpy as np
import pytest

from codec import pretrained
from codec.audio import save_audio
from codec.errors import CodecError
from codec.eval import runner
from codec.eval.baselines import Baseline
from tests.conftest import tone

SR = 16000


@pytest.fixture
def corpus(tmp_path) -> Path:
    """Two 1 s clips (one in a subfolder) and a file that is not audio."""
    save_audio(tmp_path / "a.wav", tone(1.0, seed=1), SR)
    save_audio(tmp_path / "sub" / "b.flac", tone(1.0, seed=2), SR)
    (tmp_path / "broken.wav").write_bytes(b"RIFF, but not really")
    return tmp_path


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return pretrained.load(str(tiny_model_dir))


def delayed_system(delay: int, name: str = "late") -> runner.System:
    """A perfect codec whose output comes `delay` samples late."""

    def code(path, wav, sample_rate):
        late = np.concatenate([np.zeros(delay, np.float32), wav])[: wav.size]
        return runner.Coded(late, payload_bytes=100, file_bytes=120)

    return runner.System(name, "test", code)


def test_evaluate_scores_every_readable_file_with_every_system(corpus, tiny):
    files, _ = runner.find_inputs(corpus)
    result = runner.evaluate(files, tiny, [0.5, 2.0], root=corpus)
    assert result.files == 2 and result.seconds == pytest.approx(2.0)
    assert [(r.file, r.system) for r in result.rows] == [
        ("a.wav", "codec:0.5"), ("a.wav", "codec:2"),
        ("sub/b.flac", "codec:0.5"), ("sub/b.flac", "codec:2"),
    ]  # fmt: skip
    assert len(result.skipped) == 1 and "broken.wav: cannot read audio" in result.skipped[0]
    for row in result.rows:
        assert not row.error and row.speed > 0
        assert math.isfinite(row.stoi) and math.isfinite(row.mel_distance)
    assert [s.system for s in result.summaries] == ["codec:0.5", "codec:2"]


def test_model_bitrate_is_measured_from_the_codes_file(corpus, tiny):
    result = runner.evaluate([corpus / "a.wav"], tiny, [1.0])
    (row,) = result.rows
    # 50 frames of 2 codebooks x 10 bits in 1 s, and the 64-byte header in the file.
    assert row.kbps_payload == pytest.approx(1.0)
    assert row.kbps_file == pytest.approx(1.0 + 64 * 8 / 1000)
    assert result.summaries[0].kbps_payload == pytest.approx(1.0)


def test_unavailable_system_gives_rows_that_say_why_and_the_run_goes_on(corpus, monkeypatch):
    monkeypatch.setenv("PATH", "")
    systems = runner.build_systems(None, [], [Baseline("codec2", "1600")]) + [delayed_system(0)]
    result = runner.run_systems([corpus / "a.wav"], systems, SR)
    missing, perfect = result.summaries
    assert missing.files == 0 and missing.status.startswith("unavailable: c2enc not found")
    assert "apt-get install codec2" in result.rows[0].error
    assert perfect.files == 1 and perfect.si_sdr > 100


def test_delay_is_found_by_cross_correlation_only_when_asked(corpus):
    wav_only = [corpus / "a.wav"]
    plain = runner.run_systems(wav_only, [delayed_system(40)], SR).rows[0]
    aligned = runner.run_systems(wav_only, [delayed_system(40)], SR, max_lag_ms=5).rows[0]
    assert plain.si_sdr < 10 < 100 < aligned.si_sdr


def test_decoded_signal_of_the_wrong_length_is_a_failed_row(corpus):
    def half(path, wav, sample_rate):
        return runner.Coded(wav[: wav.size // 2], 10, 10)

    result = runner.run_systems([corpus / "a.wav"], [runner.System("half", "test", half)], SR)
    assert result.rows[0].error == "decoded 0.50 s from 1.00 s of input"
    assert result.summaries[0].status == "1 failed: decoded 0.50 s from 1.00 s of input"


def test_file_whose_length_differs_from_the_manifest_is_skipped(corpus):
    (corpus / "manifest.tsv").write_text(
        "path\tseconds\tsample_rate\tsplit\n"
        "a.wav\t1.0\t16000\tvalid\nsub/b.flac\t3.5\t16000\tvalid\nbroken.wav\t1\t16000\ttrain\n"
    )
    files, durations = runner.find_inputs(corpus, split="valid")
    assert [f.name for f in files] == ["a.wav", "b.flac"]
    result = runner.run_systems(files, [delayed_system(0)], SR, durations=durations)
    assert result.files == 1
    assert result.skipped == [f"{files[1]}: 1.00 s of audio, but the manifest says 3.50 s"]


def test_find_inputs_limits_and_explains_what_it_cannot_find(corpus, tmp_path_factory):
    assert len(runner.find_inputs(corpus, limit=1)[0]) == 1
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(CodecError, match="no audio files"):
        runner.find_inputs(empty)
    with pytest.raises(CodecError, match="no manifest.tsv to choose the 'valid' split"):
        runner.find_inputs(corpus, split="valid")
    (corpus / "manifest.tsv").write_text("path\tsplit\na.wav\ttrain\n")
    with pytest.raises(CodecError, match=r"no files in split 'test' \(splits: train\)"):
        runner.find_inputs(corpus, split="test")


def test_no_readable_file_is_an_error(corpus):
    with pytest.raises(CodecError, match="none of the 1 files could be read"):
        runner.run_systems([corpus / "broken.wav"], [delayed_system(0)], SR)


def test_clips_keep_the_first_files_for_listening(corpus, tiny):
    files, _ = runner.find_inputs(corpus)
    result = runner.evaluate(files, tiny, [0.5], n_clips=1)
    (clip,) = result.clips
    assert clip.file == "a.wav" and list(clip.decoded) == ["codec:0.5"]
    assert clip.decoded["codec:0.5"].shape == clip.reference.shape == (SR,)
