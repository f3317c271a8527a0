"""The MUSHRA listening page and its JSON API, on the standard library's HTTP server.

Routes (nothing else is served, so no URL can reach a file by its path):
    GET  /                               the page (static/index.html)
    GET  /static/mushra.js|mushra.css    its script and style
    POST /api/session   {listener}       start or resume: trial ids and trials done
    POST /api/submit    {listener, trial, scores: {id: 0-100}, reference_played: true}
    GET  /audio/<listener>/<trial>/<id>  one stimulus, looked up in the listener's plan
Errors come back as `{"error": message}`: 400 (invalid), 404, 409 (the trial was already
submitted), 500 (results could not be written), 403 and 415: on loopback, a request
naming another host (DNS rebinding) is refused, and POSTs must be JSON, which other
sites cannot send here without a CORS preflight that this server never grants.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from codec.eval.mushra import results
from codec.eval.mushra.design import MushraError, check_listener, load_design

_STATIC = {
    "index.html": "text/html; charset=utf-8",
    "mushra.js": "text/javascript; charset=utf-8",
    "mushra.css": "text/css; charset=utf-8",
}
_MAX_BODY = 64 * 1024
# The page may load nothing but its own files: no CDN, no inline script, no framing.
_CSP = "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


class MushraServer(ThreadingHTTPServer):
    """Serves one test folder; every submitted trial is saved before the reply.

    Args:
        test_dir: a folder written by `prepare`.
        host: address to listen on; loopback unless asked otherwise.
        port: port to listen on; 0 picks a free one (see `url`).
        log: called with one line per saved trial (and nothing else).
    """

    daemon_threads = True

    def __init__(
        self,
        test_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.test_dir = Path(test_dir)
        self.design = load_design(self.test_dir)
        _check_stimuli(self)
        self.lock = threading.Lock()  # one read-modify-write of a results file at a time
        self.log = log or (lambda line: None)
        self.loopback = is_loopback(host)
        if ":" in host:
            self.address_family = socket.AF_INET6
        try:
            super().__init__((host, port), _Handler)
        except OSError as e:
            raise MushraError(f"cannot listen on {host}:{port} ({e.strerror or e})") from e

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}/" if ":" in str(host) else f"http://{host}:{port}/"


def serve(
    test_dir: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[str], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> None:
    """Run the test's page until interrupted; `on_ready` gets the URL once listening."""
    with MushraServer(test_dir, host, port, log) as server:
        if on_ready:
            on_ready(server.url)
        server.serve_forever()


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or "localhost") is reachable from this machine only."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def _check_stimuli(server: MushraServer) -> None:
    design = server.design
    for item in design.items:
        for condition in design.conditions:
            path = design.stimulus(server.test_dir, item, condition)
            if not path.is_file():
                raise MushraError(f"{path}: stimulus missing; run `mushra prepare` again")


class _Handler(BaseHTTPRequestHandler):
    server: MushraServer
    server_version = "codec-mushra"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if not self._host_allowed():
            self._error(HTTPStatus.FORBIDDEN, "unexpected Host header")
        elif path in ("/", "/index.html"):
            self._static("index.html")
        elif path.startswith("/static/") and path.removeprefix("/static/") in _STATIC:
            self._static(path.removeprefix("/static/"))
        elif path.startswith("/audio/"):
            self._audio(path.split("/")[2:])
        else:
            self._error(HTTPStatus.NOT_FOUND, "not found")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path not in ("/api/session", "/api/submit"):
            return self._error(HTTPStatus.NOT_FOUND, "not found")
        if not self._host_allowed():
            return self._error(HTTPStatus.FORBIDDEN, "unexpected Host header")
        if self.headers.get_content_type() != "application/json":
            return self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send JSON (application/json)")
        try:
            body = self._body()
            with self.server.lock:
                record = self._session(body) if path == "/api/session" else self._submit(body)
        except results.DuplicateTrialError as e:
            return self._error(HTTPStatus.CONFLICT, str(e))
        except MushraError as e:
            return self._error(HTTPStatus.BAD_REQUEST, str(e))
        except OSError as e:
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"could not save: {e}")
        self._json(results.public_view(record))

    def _session(self, body: dict[str, Any]) -> dict[str, Any]:
        listener = check_listener(body.get("listener"))
        return results.open_session(self.server.test_dir, self.server.design, listener)

    def _submit(self, body: dict[str, Any]) -> dict[str, Any]:
        server = self.server
        listener = check_listener(body.get("listener"))
        record = results.submit(
            server.test_dir,
            server.design,
            listener,
            trial=body.get("trial"),
            scores=body.get("scores"),
            reference_played=body.get("reference_played"),
        )
        server.log(f"{listener}: trial {body['trial'] + 1} of {len(record['plan'])} saved")
        return record

    def _host_allowed(self) -> bool:
        """On loopback, only loopback host names: a rebound DNS name cannot reach the API."""
        host = urlsplit("//" + self.headers.get("Host", "")).hostname or ""
        return not self.server.loopback or is_loopback(host)

    def _body(self) -> dict[str, Any]:
        length = self.headers.get("Content-Length", "")
        length = int(length) if length.isdigit() and length.isascii() else 0
        if not 0 < length <= _MAX_BODY:
            raise MushraError(f"request body must be 1 to {_MAX_BODY} bytes of JSON")
        try:
            body = json.loads(self.rfile.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise MushraError(f"request body is not JSON ({e})") from e
        if not isinstance(body, dict):
            raise MushraError("request body must be a JSON object")
        return body

    def _audio(self, parts: list[str]) -> None:
        """`/audio/<listener>/<trial>/<id>`: the file comes from the plan, never the URL."""
        server = self.server
        found = None
        if len(parts) == 3 and parts[1].isdigit() and parts[1].isascii():
            try:
                path = results.results_path(server.test_dir, parts[0])
                if path.is_file():
                    record = results.load_record(path, server.design)
                    found = results.stimulus_of(record, int(parts[1]), parts[2])
            except MushraError:
                found = None
        if found is None:
            return self._error(HTTPStatus.NOT_FOUND, "no such stimulus")
        data = server.design.stimulus(server.test_dir, *found).read_bytes()
        self._send(HTTPStatus.OK, "audio/wav", data)

    def _static(self, name: str) -> None:
        data = resources.files("codec.eval.mushra").joinpath("static", name).read_bytes()
        self._send(HTTPStatus.OK, _STATIC[name], data)

    def _json(self, body: dict[str, Any], status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(status, "application/json", json.dumps(body).encode())

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._json({"error": message}, status)

    def _send(self, status: HTTPStatus, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", _CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log; the server logs saved trials instead."""
