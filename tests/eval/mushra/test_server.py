"""The listening page's server: blinded sessions, validated and atomically saved trials."""

from __future__ import annotations

import http.client
import json
import socket

import pytest
import typer
from typer.testing import CliRunner

import codec.atomic
from codec.commands.mushra import mushra_app
from codec.eval.mushra import MushraError, MushraServer
from codec.eval.mushra.design import load_design
from tests.eval.mushra.conftest import running


def call(server: MushraServer, method: str, path: str, body: object = None, **headers: str):
    """(status, headers, parsed JSON or raw bytes) of one request; the path is sent as is."""
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=5)
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    conn.request(method, path, data, {"Content-Type": "application/json"} | headers)
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    is_json = response.getheader("Content-Type") == "application/json"
    return response.status, response.headers, json.loads(raw) if is_json else raw


def rate_all(view: dict, trial: int, score: int = 80) -> dict:
    return {cid: score for cid in view["trials"][trial]["conditions"]}


def submit(server, view, at, scores=None, **changes):
    """Submit a trial (every condition at 80 unless `scores`), with `changes` to the body."""
    body = {"listener": view["listener"], "trial": at, "reference_played": True}
    body["scores"] = rate_all(view, at) if scores is None else scores
    return call(server, "POST", "/api/submit", body | changes)


def test_page_and_its_assets_are_served_from_the_server_itself(mushra_dir):
    with running(mushra_dir) as server:
        status, headers, page = call(server, "GET", "/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        assert b"http://" not in page and b"https://" not in page and b'src="//' not in page
        for asset in ("mushra.js", "mushra.css"):
            status, _, text = call(server, "GET", f"/static/{asset}")
            assert status == 200 and b"http" not in text.replace(b"HTTP", b"")


def test_session_is_blinded_and_resumes_after_a_server_restart(mushra_dir):
    with running(mushra_dir) as server:
        status, _, view = call(server, "POST", "/api/session", {"listener": "anna"})
        assert status == 200 and view["done"] == []
        assert len(view["trials"]) == 3 and all(len(t["conditions"]) == 4 for t in view["trials"])
        assert not any(word in json.dumps(view) for word in ("ours", "anchor", "reference", "clip"))
        status, _, after = submit(
            server, view, 0, {c: 10 * i for i, c in enumerate(rate_all(view, 0))}
        )
        assert status == 200 and after["done"] == [0]
    saved = json.loads((mushra_dir / "results" / "anna.json").read_text())
    assert len(saved["trials"]) == 1
    assert sorted(saved["trials"][0]["scores"].values()) == [0, 10, 20, 30]
    assert set(saved["trials"][0]["scores"]) == set(load_design(mushra_dir).conditions)
    with running(mushra_dir) as server:  # a new server process finds the saved trial
        _, _, resumed = call(server, "POST", "/api/session", {"listener": "anna"})
        assert resumed == after


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"reference_played": False}, 400, "listen to the reference"),
        ({"trial": 3}, 400, "trial must be an integer from 0 to 2"),
        ({"trial": "0"}, 400, "trial must be an integer"),
        ({"listener": "../etc"}, 400, "listener name must be"),
        ({"listener": "nobody"}, 400, "no session for listener 'nobody'"),
        ({"scores": "high"}, 400, "scores must rate exactly the 4 conditions"),
        ({"scores": {"x": 50}}, 400, "scores must rate exactly the 4 conditions"),
        ({"score": 101}, 400, "every score must be an integer from 0 to 100, got 101"),
        ({"score": 50.5}, 400, "got 50.5"),
        ({"score": True}, 400, "got True"),
        ({"score": -1}, 400, "got -1"),
    ],
)
def test_invalid_submissions_are_refused_with_a_reason(mushra_dir, change, status, message):
    with running(mushra_dir) as server:
        _, _, view = call(server, "POST", "/api/session", {"listener": "anna"})
        if "score" in change:
            change = {"scores": rate_all(view, 0, change["score"])}
        got, _, body = submit(server, view, 0, **change)
        assert got == status and message in body["error"]
    assert json.loads((mushra_dir / "results" / "anna.json").read_text())["trials"] == []


def test_a_trial_is_never_overwritten(mushra_dir):
    with running(mushra_dir) as server:
        _, _, view = call(server, "POST", "/api/session", {"listener": "anna"})
        assert submit(server, view, 1)[0] == 200
        status, _, body = submit(server, view, 1, rate_all(view, 1, 5))
    assert (status, body["error"]) == (409, "trial 2 was already submitted")


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b""])
def test_malformed_requests_are_400(mushra_dir, body):
    with running(mushra_dir) as server:
        assert call(server, "POST", "/api/session", body)[0] == 400


def test_other_sites_cannot_use_the_api(mushra_dir):
    with running(mushra_dir) as server:
        start = {"listener": "anna"}
        assert (
            call(server, "POST", "/api/session", start, **{"Content-Type": "text/plain"})[0] == 415
        )
        assert call(server, "POST", "/api/session", start, Host="evil.example:80")[0] == 403
        assert call(server, "GET", "/", Host="evil.example")[0] == 403
        assert call(server, "GET", "/", Host=f"localhost:{server.server_address[1]}")[0] == 200
    assert not (mushra_dir / "results").exists()


def test_stimuli_are_reachable_only_through_the_plan(mushra_dir):
    with running(mushra_dir) as server:
        _, _, view = call(server, "POST", "/api/session", {"listener": "anna"})
        cid = view["trials"][0]["conditions"][0]
        status, headers, wav = call(server, "GET", f"/audio/anna/0/{cid}")
        assert status == 200 and headers["Content-Type"] == "audio/wav" and wav[:4] == b"RIFF"
        assert call(server, "GET", "/audio/anna/0/reference")[0] == 200
        for path in [
            "/audio/anna/0/../../test.json",
            "/audio/anna/0/%2e%2e%2ftest.json",
            "/audio/../test.json/0/reference",
            "/audio/anna/9/reference",
            "/audio/anna/-1/reference",
            "/audio/bob/0/reference",  # no session yet
            "/audio/anna/0/ours",  # names are not ids
            "/static/../test.json",
            "/static/%2e%2e/test.json",
            "/../test.json",
            "/test.json",
            "/stimuli/clip0/ours.wav",
            "/results/anna.json",
        ]:
            assert call(server, "GET", path)[0] == 404, path


def test_a_failed_write_keeps_the_saved_trials(mushra_dir, monkeypatch):
    with running(mushra_dir) as server:
        _, _, view = call(server, "POST", "/api/session", {"listener": "anna"})
        assert submit(server, view, 0)[0] == 200

        def disk_full(fd):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(codec.atomic.os, "fsync", disk_full)
        status, _, body = submit(server, view, 1)
        assert status == 500 and "No space left on device" in body["error"]
    results = mushra_dir / "results"
    assert [p.name for p in results.iterdir()] == ["anna.json"]  # no temporary file left
    assert [t["trial"] for t in json.loads((results / "anna.json").read_text())["trials"]] == [0]


def test_missing_test_or_stimulus_is_a_clear_error(mushra_dir, tmp_path):
    with pytest.raises(MushraError, match="not a MUSHRA test"):
        MushraServer(tmp_path)
    (mushra_dir / "stimuli" / "clip1" / "ours.wav").unlink()
    with pytest.raises(MushraError, match=r"clip1/ours\.wav: stimulus missing"):
        MushraServer(mushra_dir)


def test_cli_serve_reports_a_busy_port(mushra_dir):
    app = typer.Typer()
    app.add_typer(mushra_app, name="mushra")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["mushra", "serve", str(mushra_dir), "--port", str(port)])
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
