"""recipes/librispeech/prepare.py on a tiny tree in LibriSpeech's exact layout.

Downloads come from a local HTTP server on 127.0.0.1; nothing reaches the internet.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec.errors import CodecError
from codec.train.manifest import read_manifest

SCRIPT = Path(__file__).parents[2] / "recipes" / "librispeech" / "prepare.py"
SPEAKERS = {"train-clean-100": ("103", "1034"), "dev-clean": ("19", "84")}
CHAPTERS = ("198", "227")


def _load_script():
    spec = importlib.util.spec_from_file_location("librispeech_prepare", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prepare = _load_script()


def make_librispeech(root: Path, subsets: tuple[str, ...] = tuple(SPEAKERS)) -> Path:
    """`root/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac` + transcripts:
    2 speakers x 2 chapters x 2 utterances of 0.5 s per subset."""
    rng = np.random.default_rng(0)
    for subset in subsets:
        word = subset.split("-")[0].upper()
        for spk in SPEAKERS[subset]:
            for chapter in CHAPTERS:
                folder = root / "LibriSpeech" / subset / spk / chapter
                folder.mkdir(parents=True)
                lines = []
                for utt in range(2):
                    uid = f"{spk}-{chapter}-{utt:04d}"
                    wav = 0.1 * rng.standard_normal(8000).astype(np.float32)
                    sf.write(folder / f"{uid}.flac", wav, 16000)
                    lines.append(f"{uid} {word} {spk} {chapter} {utt}\n")
                (folder / f"{spk}-{chapter}.trans.txt").write_text("".join(lines))
    return root


def test_prepare_writes_a_manifest_of_the_extracted_tree(tmp_path, capsys):
    make_librispeech(tmp_path)
    assert prepare.main([str(tmp_path)]) == 0
    entries = read_manifest(tmp_path / "manifest.tsv")
    assert len(entries) == 16
    assert {e.split for e in entries} == {"train", "valid"}
    train = [e for e in entries if e.split == "train"]
    assert {e.speaker for e in train} == {"103", "1034"}
    assert all(e.seconds == 0.5 and e.sample_rate == 16000 for e in entries)
    by_name = {e.path.name: e for e in entries}
    assert by_name["1034-227-0001.flac"].text == "TRAIN 1034 227 1"
    assert by_name["84-198-0000.flac"].split == "valid"
    first_row = (tmp_path / "manifest.tsv").read_text().splitlines()[1]
    assert first_row.startswith("LibriSpeech/dev-clean/19/198/19-198-0000.flac\t0.5\t16000\t19\t")
    out = capsys.readouterr().out
    assert "train       8 files" in out and "valid       8 files" in out


def test_prepare_can_pick_subsets_and_the_output(tmp_path):
    make_librispeech(tmp_path)
    out = tmp_path / "lists" / "dev.tsv"
    assert prepare.main([str(tmp_path), "--subsets", "dev-clean", "--out", str(out)]) == 0
    assert {e.split for e in read_manifest(out)} == {"valid"}


def test_a_missing_tree_is_a_one_line_error(tmp_path, capsys):
    assert prepare.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no LibriSpeech folder" in err
    assert err.count("\n") == 1


# --- downloads, from a local server ------------------------------------------------------


def tar_gz_of(root: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(root / "LibriSpeech", arcname="LibriSpeech")
    return buffer.getvalue()


class Server:
    """Serves `files` (URL path -> bytes) on 127.0.0.1, with or without Range support."""

    def __init__(self, files: dict[str, bytes], ranges: bool = True) -> None:
        self.files, self.ranges, self.requests = files, ranges, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.requests.append((self.path, self.headers.get("Range")))
                if self.path not in server.files:
                    self.send_error(404)
                    return
                body, status, first = server.files[self.path], 200, 0
                wanted = self.headers.get("Range")
                if server.ranges and wanted and wanted.startswith("bytes="):
                    first = int(wanted[len("bytes=") :].split("-")[0])
                    if first >= len(body):
                        self.send_error(416)
                        return
                    status = 206
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {first}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - first))
                self.end_headers()
                self.wfile.write(body[first:])

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/resources/12"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        ).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def archive(tmp_path: Path) -> bytes:
    return tar_gz_of(make_librispeech(tmp_path / "source", ("dev-clean",)))


@pytest.fixture
def serve(monkeypatch) -> Iterator:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    servers = []

    def start(files: dict[str, bytes], ranges: bool = True) -> Server:
        servers.append(Server(files, ranges))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def download_args(root: Path, server: Server) -> list[str]:
    return [str(root), "--download", "--subsets", "dev-clean", "--mirror", server.url]


@pytest.mark.parametrize("ranges", [True, False], ids=["resumed", "server-restarts"])
def test_download_resumes_verifies_extracts_then_skips(
    tmp_path, archive, serve, monkeypatch, ranges
):
    monkeypatch.setitem(prepare.MD5, "dev-clean", hashlib.md5(archive).hexdigest())
    server = serve({"/resources/12/dev-clean.tar.gz": archive}, ranges=ranges)
    root = tmp_path / "data"
    part = root / "downloads" / "dev-clean.tar.gz.part"
    part.parent.mkdir(parents=True)
    partial = archive[:100] if ranges else b"junk from an older, different file"
    part.write_bytes(partial)

    assert prepare.main(download_args(root, server)) == 0
    assert server.requests == [("/resources/12/dev-clean.tar.gz", f"bytes={len(partial)}-")]
    assert not part.exists()
    assert (root / "downloads" / "dev-clean.tar.gz").read_bytes() == archive
    assert (root / "LibriSpeech/dev-clean/19/198/19-198-0000.flac").is_file()
    assert len(read_manifest(root / "manifest.tsv")) == 8

    assert prepare.main(download_args(root, server)) == 0  # all done: no new request
    assert len(server.requests) == 1


def test_a_wrong_checksum_fails_and_keeps_no_file(tmp_path, archive, serve, monkeypatch, capsys):
    monkeypatch.setitem(prepare.MD5, "dev-clean", "0" * 32)
    server = serve({"/resources/12/dev-clean.tar.gz": archive})
    root = tmp_path / "data"
    assert prepare.main(download_args(root, server)) == 1
    err = capsys.readouterr().err
    assert "MD5" in err and "is not the published 000" in err
    assert list((root / "downloads").iterdir()) == []
    assert not (root / "LibriSpeech").exists()


def test_http_errors_and_unknown_subsets_are_one_line_errors(tmp_path, serve, capsys):
    server = serve({})
    assert prepare.main(download_args(tmp_path, server)) == 1
    assert "HTTP 404" in capsys.readouterr().err
    assert prepare.main([str(tmp_path), "--download", "--subsets", "train-clean-5"]) == 1
    assert "train-clean-5: no published MD5" in capsys.readouterr().err


def test_extract_refuses_members_outside_the_destination(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    (tmp_path / "bad.tar.gz").write_bytes(buffer.getvalue())
    with pytest.raises(CodecError, match="refusing unsafe member '../evil.txt'"):
        prepare.extract(tmp_path / "bad.tar.gz", tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_librispeech_recipe_runs_end_to_end_on_a_prepared_tree(tmp_path):
    """prepare.py, then `codec train` with the shipped recipe (shrunk), then export."""
    from typer.testing import CliRunner

    from codec.cli import app
    from codec.train.checkpoint import load_checkpoint
    from tests.train.test_loop import TINY

    make_librispeech(tmp_path / "data")
    assert prepare.main([str(tmp_path / "data")]) == 0
    recipe = SCRIPT.parent / "codec16k.yaml"
    run = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "train",
            str(recipe),
            *TINY,
            f"data.manifest={tmp_path / 'data' / 'manifest.tsv'}",
            "schedule.steps=3",
            "--out",
            str(run),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "8 training files" in result.output  # train-clean-100 only; dev-clean validates
    assert "2 validation clips" in result.output
    assert load_checkpoint(run / "checkpoint.pt")["valid"]["mel_distance"] > 0
    result = runner.invoke(app, ["export", str(run / "checkpoint.pt"), str(tmp_path / "model")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "model" / "model.safetensors").is_file()
