"""`codec encode -` and `codec decode ... -`: audio and codes over pipes, equal to files."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from codec.audio import save_audio
from codec.cli import app
from codec.errors import AudioError
from codec.pcm import read_stream, to_pcm16, wav_header
from tests.conftest import tone

REPO = Path(__file__).parents[1]
runner = CliRunner()


def codec(*args, stdin: bytes | None = None):
    return runner.invoke(app, [str(a) for a in args], input=stdin)


@pytest.fixture
def clip(tmp_path) -> Path:
    path = tmp_path / "clip.wav"
    save_audio(path, tone(2.3), 16000)  # 16-bit PCM WAV
    return path


def test_encoding_stdin_gives_the_same_file_as_encoding_the_file(tmp_path, clip, tiny_model_dir):
    assert codec("encode", clip, tmp_path / "file.codes", "-m", tiny_model_dir).exit_code == 0
    r = codec("encode", "-", tmp_path / "pipe.codes", "-m", tiny_model_dir, stdin=clip.read_bytes())
    assert r.exit_code == 0, r.output
    assert (tmp_path / "pipe.codes").read_bytes() == (tmp_path / "file.codes").read_bytes()


def test_raw_pcm_on_stdin_and_codes_on_stdout(tmp_path, clip, tiny_model_dir):
    codec("encode", clip, tmp_path / "file.codes", "-m", tiny_model_dir)
    pcm = sf.read(clip, dtype="int16")[0].astype("<i2").tobytes()
    r = codec("encode", "-", "-", "-m", tiny_model_dir, "--rate", "16000", stdin=pcm)
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes == (tmp_path / "file.codes").read_bytes()
    assert "x real time" in r.stderr  # the summary never mixes with the codes


def test_decoding_to_stdout_streams_a_wav_equal_to_the_file(tmp_path, clip, tiny_model_dir):
    codec("encode", clip, tmp_path / "c.codes", "-m", tiny_model_dir)
    assert (
        codec("decode", tmp_path / "c.codes", tmp_path / "d.wav", "-m", tiny_model_dir).exit_code
        == 0
    )
    r = codec("decode", tmp_path / "c.codes", "-", "-m", tiny_model_dir)
    assert r.exit_code == 0, r.stderr
    piped, rate = sf.read(io.BytesIO(r.stdout_bytes), dtype="int16")
    from_file, _ = sf.read(tmp_path / "d.wav", dtype="int16")
    assert rate == 16000
    assert np.array_equal(piped, from_file)
    raw = codec("decode", tmp_path / "c.codes", "-", "--raw", "-m", tiny_model_dir).stdout_bytes
    assert raw == r.stdout_bytes[44:]


def test_codes_on_stdin_decode(tmp_path, clip, tiny_model_dir):
    codec("encode", clip, tmp_path / "c.codes", "-m", tiny_model_dir)
    data = (tmp_path / "c.codes").read_bytes()
    r = codec("decode", "-", tmp_path / "out.wav", "-m", tiny_model_dir, stdin=data)
    assert r.exit_code == 0, r.output
    assert len(sf.read(tmp_path / "out.wav")[0]) == len(sf.read(clip)[0])


def test_a_real_shell_pipeline(tmp_path, clip, tiny_model_dir):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = (
        f"{sys.executable} -m codec encode - - -m {tiny_model_dir} < {clip} | "
        f"{sys.executable} -m codec decode - - -m {tiny_model_dir} > {tmp_path / 'out.wav'}"
    )
    subprocess.run(cmd, shell=True, check=True, env=env, capture_output=True)
    out, rate = sf.read(tmp_path / "out.wav")
    assert rate == 16000 and len(out) == len(sf.read(clip)[0])


@pytest.mark.parametrize(
    ("stdin", "message"),
    [(b"", "no audio"), (b"RIFF\x00\x00\x00\x00WAVEjunk", "WAV stream")],
)
def test_bad_audio_on_stdin_is_a_one_line_error(stdin, message, tmp_path, tiny_model_dir):
    r = codec("encode", "-", tmp_path / "x.codes", "-m", tiny_model_dir, stdin=stdin)
    assert r.exit_code == 1
    assert message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x.codes").exists()


def test_garbage_codes_on_stdin_are_a_one_line_error(tmp_path, tiny_model_dir):
    r = codec("decode", "-", tmp_path / "x.wav", "-m", tiny_model_dir, stdin=b"not codes" * 10)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert not (tmp_path / "x.wav").exists()


# The stream reader -----------------------------------------------------------------


def wav_bytes(data: np.ndarray, rate: int, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, data, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "PCM_U8"])
def test_wav_sample_formats_decode_like_soundfile(subtype):
    data = tone(0.5)
    stream = io.BytesIO(wav_bytes(data, 16000, subtype))
    got = np.concatenate(list(read_stream(stream, 16000)))
    expected = sf.read(io.BytesIO(wav_bytes(data, 16000, subtype)), dtype="float32")[0]
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_stereo_is_averaged_and_other_rates_resampled():
    left, right = tone(1.0, 44100), tone(1.0, 44100, seed=1)
    stream = io.BytesIO(wav_bytes(np.stack([left, right], 1), 44100, "FLOAT"))
    got = np.concatenate(list(read_stream(stream, 16000)))
    assert abs(len(got) - 16000) <= 2


def test_a_wav_of_unknown_length_runs_to_the_end_of_the_stream():
    data = tone(0.7)
    body = wav_bytes(data, 16000, "PCM_16")
    streamed = body[:4] + struct.pack("<I", 0xFFFFFFFF) + body[8:40] + b"\xff\xff\xff\xff"
    streamed += body[44:]
    got = np.concatenate(list(read_stream(io.BytesIO(streamed), 16000)))
    assert len(got) == len(data)


def test_wav_header_and_pcm16_make_a_readable_file():
    wav = tone(0.3)
    data = wav_header(len(wav), 16000) + to_pcm16(wav)
    back, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == 16000
    np.testing.assert_allclose(back, wav, atol=1 / 32000)


def test_nan_on_stdin_is_refused():
    stream = io.BytesIO(wav_bytes(np.full(100, np.nan, np.float32), 16000, "FLOAT"))
    with pytest.raises(AudioError, match="NaN"):
        list(read_stream(stream, 16000))
