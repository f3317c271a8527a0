"""`codec eval` through Typer's test runner, registered as codec/cli.py registers it."""

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from codec.audio import save_audio
from codec.commands.evaluate import eval_command
from tests.conftest import tone

app = typer.Typer()
app.command("eval")(eval_command)
app.command("unused")(lambda: None)  # two commands: `eval` stays a subcommand name
runner = CliRunner()


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    save_audio(folder / "a.wav", tone(1.0, seed=1), 16000)
    save_audio(folder / "b.wav", tone(1.2, seed=2), 16000)
    (folder / "broken.flac").write_bytes(b"fLaC but nothing else")
    return folder


def invoke(*args: str):
    return runner.invoke(app, ["eval", *map(str, args)])


def test_eval_writes_the_report_and_prints_the_summary(corpus, tiny_model_dir, tmp_path):
    out = tmp_path / "eval"
    result = invoke(corpus, "--model", tiny_model_dir, "-b", "0.5,2", "--out", out, "--clips", 1)
    assert result.exit_code == 0, result.output
    assert "codec:0.5" in result.stdout and "codec:2" in result.stdout
    assert "2 files, 2.2 s of audio, 1 skipped" in result.stdout
    assert "skipped" in result.stderr and "broken.flac" in result.stderr
    for name in ("results.csv", "summary.json", "summary.md", "rate_quality.png", "report.html"):
        assert (out / name).is_file()
    assert len(list((out / "spectrograms").glob("*.png"))) == 1
    doc = json.loads((out / "summary.json").read_text())
    assert [s["system"] for s in doc["systems"]] == ["codec:0.5", "codec:2"]
    assert doc["split"] == "all" and len(doc["model_id"]) == 32


def test_missing_codec_tool_gives_an_unavailable_row(corpus, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "")
    result = invoke(
        corpus, "-m", tiny_model_dir, "-b", "2", "--baseline", "codec2:1600",
        "--limit", 1, "--clips", 0, "--out", tmp_path / "eval",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert doc["systems"][1]["status"] == (
        "unavailable: c2enc not found: install codec2 (apt-get install codec2)"
    )
    assert "unavailable" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--baseline", "mp3:8"], "error: baseline 'mp3:8': unknown codec 'mp3'"),
        (["--baseline", "opus:2"], "'2' is not a bitrate of 6 to 256 kbps"),
        (["-b", "1,x"], "error: --bitrate: 'x' is not a number of kbps"),
        (["-b", "7"], "error: bitrate 7 kbps is not available"),
        (["--split", "valid"], "no manifest.tsv to choose the 'valid' split"),
    ],
)
def test_bad_arguments_fail_in_one_line(corpus, tiny_model_dir, args, message):
    result = invoke(corpus, "-m", tiny_model_dir, *args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_folder_without_audio_is_an_error(tmp_path, tiny_model_dir):
    (tmp_path / "notes.txt").write_text("no audio here")
    result = invoke(tmp_path, "-m", tiny_model_dir)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {tmp_path}: no audio files (WAV, FLAC or OGG) found"
