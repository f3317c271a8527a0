"""The `codec` command line, end to end on generated clips with a tiny model folder."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from codec.audio import load_audio, save_audio
from codec.cli import app
from tests.conftest import tone

runner = CliRunner()


def codec(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_encode_decode_round_trip(tmp_path, speech_wav, tiny_model_dir):
    r = codec("encode", speech_wav, tmp_path / "s.codes", "--model", tiny_model_dir, "-b", "2")
    assert r.exit_code == 0, r.output
    assert "2 kbps codes" in r.output
    r = codec("decode", tmp_path / "s.codes", tmp_path / "s.wav", "--model", tiny_model_dir)
    assert r.exit_code == 0, r.output
    assert len(load_audio(tmp_path / "s.wav", 16000)) == len(load_audio(speech_wav, 16000))


def test_payload_is_the_requested_bitrate_plus_a_small_header(tmp_path, tiny_model_dir):
    save_audio(tmp_path / "ten.wav", tone(10.0), 16000)
    assert (
        codec(
            "encode", tmp_path / "ten.wav", tmp_path / "t.codes", "-m", tiny_model_dir, "-b", "2"
        ).exit_code
        == 0
    )
    size = (tmp_path / "t.codes").stat().st_size
    payload = 2000 * 10 / 8  # 2 kbps for 10 s
    assert payload <= size <= payload + 100


def test_decode_finds_the_model_from_the_file(tmp_path, speech_wav, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("CODEC_MODELS_DIR", str(tiny_model_dir.parent))
    assert codec("encode", speech_wav, tmp_path / "s.codes", "-m", "tiny", "-b", "1").exit_code == 0
    r = codec("decode", tmp_path / "s.codes", tmp_path / "s.wav")
    assert r.exit_code == 0, r.output
    r = codec("info", tmp_path / "s.codes")
    assert r.exit_code == 0 and "(tiny)" in r.output and "50 Hz" in r.output
    r = codec("models")
    assert r.exit_code == 0 and "tiny" in r.output


def test_folder_keeps_tree_and_skips_bad_files(tmp_path, tiny_model_dir):
    src = tmp_path / "corpus"
    save_audio(src / "a" / "one.flac", tone(1.0), 16000)
    save_audio(src / "two.wav", tone(0.5), 16000)
    (src / "a" / "broken.wav").write_bytes(b"RIFF....not audio")
    r = codec("encode", src, tmp_path / "codes", "-m", tiny_model_dir)
    assert r.exit_code == 1
    assert "broken.wav" in r.output and "2 of 3 files done, 1 failed" in r.output
    assert (tmp_path / "codes" / "a" / "one.codes").is_file()
    assert (tmp_path / "codes" / "two.codes").is_file()
    r = codec("decode", tmp_path / "codes", tmp_path / "wav", "-m", tiny_model_dir)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "wav" / "a" / "one.wav").is_file()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(3000)), "cannot read audio"),
    ],
    ids=["missing", "empty", "garbage"],
)
def test_bad_audio_gives_one_line_error(tmp_path, tiny_model_dir, make, message):
    bad = tmp_path / "bad.wav"
    make(bad)
    r = codec("encode", bad, tmp_path / "x.codes", "-m", tiny_model_dir)
    assert r.exit_code == 1
    assert message in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.codes").exists()


def test_bad_codes_files_give_one_line_errors(tmp_path, speech_wav, tiny_model_dir):
    good = tmp_path / "s.codes"
    codec("encode", speech_wav, good, "-m", tiny_model_dir)
    data = bytearray(good.read_bytes())
    cases = {
        "truncated": bytes(data[:-3]),
        "checksum": bytes(data[:70]) + bytes([data[70] ^ 0x10]) + bytes(data[71:]),
        "bad magic": b"RIFF" + bytes(data[4:]),
    }
    for message, content in cases.items():
        (tmp_path / "bad.codes").write_bytes(content)
        r = codec("decode", tmp_path / "bad.codes", tmp_path / "out.wav", "-m", tiny_model_dir)
        assert r.exit_code == 1 and message in r.output, (message, r.output)
        assert "Traceback" not in r.output
    assert not (tmp_path / "out.wav").exists()


def test_unknown_model_and_bitrate_are_reported(tmp_path, speech_wav, tiny_model_dir):
    r = codec("encode", speech_wav, tmp_path / "x.codes", "-m", "no-such-model")
    assert r.exit_code == 1 and "not found" in r.output
    r = codec("encode", speech_wav, tmp_path / "x.codes", "-m", tiny_model_dir, "-b", "7")
    assert r.exit_code == 1 and "not available" in r.output


def test_every_command_has_examples_in_its_help():
    for command in ("encode", "decode", "info", "models"):
        r = codec(command, "--help")
        assert r.exit_code == 0 and "Example" in r.output, command


def test_nan_and_zero_length_audio_are_refused(tmp_path, tiny_model_dir):
    import soundfile as sf

    sf.write(tmp_path / "nan.wav", np.full(1600, np.nan, np.float32), 16000, subtype="FLOAT")
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    for name, message in (("nan.wav", "NaN"), ("zero.wav", "empty")):
        r = codec("encode", tmp_path / name, tmp_path / "x.codes", "-m", tiny_model_dir)
        assert r.exit_code == 1 and message in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.codes").exists()


def test_a_file_from_another_model_is_refused_and_nothing_is_written(
    tmp_path, speech_wav, tiny_model_dir
):
    from codec import pretrained
    from tests.conftest import make_tiny_model

    pretrained.save(make_tiny_model(seed=5), tmp_path / "other")
    assert (
        codec("encode", speech_wav, tmp_path / "s.codes", "-m", tmp_path / "other").exit_code == 0
    )
    (tmp_path / "out.wav").write_bytes(b"precious")
    r = codec("decode", tmp_path / "s.codes", tmp_path / "out.wav", "-m", tiny_model_dir)
    assert r.exit_code == 1 and "encoded by model" in r.output
    assert (tmp_path / "out.wav").read_bytes() == b"precious"


def test_a_folder_loads_the_model_once(tmp_path, tiny_model_dir, monkeypatch):
    from codec import pretrained

    src = tmp_path / "corpus"
    for name in ("a.wav", "b.wav", "c.wav"):
        save_audio(src / name, tone(0.3), 16000)
    assert codec("encode", src, tmp_path / "codes", "-m", tiny_model_dir).exit_code == 0
    loads = []
    real_load = pretrained.load
    monkeypatch.setattr(pretrained, "load", lambda *a: loads.append(a) or real_load(*a))
    r = codec("decode", tmp_path / "codes", tmp_path / "wav", "-m", tiny_model_dir)
    assert r.exit_code == 0, r.output
    assert len(loads) == 1


def test_thread_count_can_be_chosen(tmp_path, speech_wav, tiny_model_dir):
    import torch

    before = torch.get_num_threads()
    r = codec("encode", speech_wav, tmp_path / "s.codes", "-m", tiny_model_dir, "--threads", "1")
    assert torch.get_num_threads() == 1
    torch.set_num_threads(before)  # this process runs the other tests too
    assert r.exit_code == 0, r.output
    r = codec("decode", tmp_path / "s.codes", tmp_path / "s.wav", "-m", tiny_model_dir,
              "--threads", "0")  # fmt: skip
    assert r.exit_code == 1 and "--threads must be >= 1" in r.output
