"""The MUSHRA page in a real headless Chromium: rate, reload mid-test, resume, finish.

Chromium is driven through chromedriver's W3C WebDriver HTTP API with the standard
library (no Selenium). Needs Debian's `chromium` and `chromium-driver`; skipped without.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.eval.mushra.conftest import running

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Chromium and its driver (apt-get install chromium chromium-driver)",
)
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference
ARROW_UP = "\ue013"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # nothing but the test server
    "--window-size=1200,900",
]


class Browser:
    """The few WebDriver commands this test needs, sent to chromedriver over HTTP."""

    def __init__(self, driver_url: str, profile: Path) -> None:
        self.base = driver_url
        options = {"binary": CHROMIUM, "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]}
        caps = {"browserName": "chrome", "goog:chromeOptions": options}
        session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})
        self.base += f"/session/{session['sessionId']}"

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        data = json.dumps(body if body is not None else {}).encode() if method == "POST" else None
        request = urllib.request.Request(self.base + path, data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as e:
            raise AssertionError(f"WebDriver {method} {path}: {e.read().decode()[:300]}") from e

    def get(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})

    def refresh(self) -> None:
        self._call("POST", "/refresh")

    def element(self, css: str) -> str:
        return self._call("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def elements(self, css: str) -> list[str]:
        found = self._call("POST", "/elements", {"using": "css selector", "value": css})
        return [e[ELEMENT] for e in found]

    def click(self, element: str) -> None:
        self._call("POST", f"/element/{element}/click")

    def type(self, element: str, text: str) -> None:
        self._call("POST", f"/element/{element}/value", {"text": text})

    def run(self, script: str, *args: Any) -> Any:
        return self._call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def text(self, css: str) -> str:
        return self.run("return document.querySelector(arguments[0]).textContent;", css)

    def wait_for(self, condition: str, timeout: float = 10.0) -> None:
        """Poll a JavaScript expression until it is truthy."""
        deadline = time.monotonic() + timeout
        while not self.run(f"return Boolean({condition});"):
            if time.monotonic() > deadline:
                page = (self.run("return document.body.dataset.state;"), self.text("#message"))
                raise AssertionError(f"timed out waiting for {condition} (page: {page})")
            time.sleep(0.05)

    def quit(self) -> None:
        with contextlib.suppress(AssertionError, OSError):
            self._call("DELETE", "")


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[Browser]:
    """A chromedriver on a free loopback port and one headless Chromium session."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    driver = subprocess.Popen(
        [CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    browser = None
    try:
        _wait_until_ready(f"http://127.0.0.1:{port}")
        browser = Browser(f"http://127.0.0.1:{port}", profile)
        yield browser
    finally:
        if browser is not None:
            browser.quit()
        driver.terminate()
        driver.wait(timeout=10)


def _wait_until_ready(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(url + "/status", timeout=1) as response:
                if json.loads(response.read())["value"]["ready"]:
                    return
        if time.monotonic() > deadline:
            raise AssertionError("chromedriver did not start")
        time.sleep(0.05)


def rate_trial(browser: Browser, play_reference: bool = True) -> dict[str, int]:
    """Once the sounds are loaded, move every slider like a listener (click, arrow keys).

    Returns:
        opaque condition id -> score shown by the slider.
    """
    browser.wait_for("document.body.dataset.ready === 'true'")
    for k, slider in enumerate(browser.elements("#conditions .slider")):
        browser.click(slider)  # the middle of the track: about 50
        browser.type(slider, ARROW_UP * (k + 1))
    if play_reference:
        browser.click(browser.element("#play-reference"))
    return browser.run(
        "return Object.fromEntries([...document.querySelectorAll('#conditions .slider')]"
        ".map((s) => [s.dataset.cid, Number(s.value)]));"
    )


def submit_trial(browser: Browser) -> None:
    browser.wait_for("!document.getElementById('submit').disabled")
    browser.click(browser.element("#submit"))


def test_listener_rates_reloads_mid_test_resumes_and_finishes(mushra_dir, tmp_path):
    results = mushra_dir / "results" / "tess.json"
    rated = []  # id -> score of every trial, in the order submitted
    with running(mushra_dir) as server, chromium(tmp_path / "profile") as browser:
        browser.get(server.url)
        browser.wait_for("document.body.dataset.state === 'start'")
        browser.type(browser.element("#listener"), "tess")
        browser.click(browser.element("#start-button"))

        scores = rate_trial(browser, play_reference=False)
        assert browser.text("#progress") == "Trial 1 of 3"
        assert browser.run("return document.querySelector('#submit').disabled;")
        assert browser.text("#hint") == "Listen to the reference first."
        browser.click(browser.element("#play-reference"))
        assert browser.elements("#play-reference.active")  # playing the reference
        browser.click(browser.elements("#conditions .play")[1])  # switch while playing
        assert browser.elements("#conditions .play.active")
        submit_trial(browser)
        rated.append(scores)
        browser.wait_for("document.querySelector('#progress').textContent === 'Trial 2 of 3'")
        assert len(json.loads(results.read_text())["trials"]) == 1  # saved as submitted

        browser.wait_for("document.body.dataset.ready === 'true'")
        browser.click(browser.elements("#conditions .slider")[0])  # half-rated, then reload
        browser.refresh()
        browser.wait_for("document.body.dataset.ready === 'true'")
        assert browser.text("#progress") == "Trial 2 of 3"
        assert not browser.elements("#conditions .slider[data-moved='true']")

        for progress in ("Trial 3 of 3", None):
            rated.append(rate_trial(browser))
            submit_trial(browser)
            if progress:
                browser.wait_for(
                    f"document.querySelector('#progress').textContent === '{progress}'"
                )
        browser.wait_for("document.body.dataset.state === 'finish'")
        assert browser.text("#finish-count") == "3" and browser.text("#message") == ""

    saved = json.loads(results.read_text())
    assert [t["trial"] for t in saved["trials"]] == [0, 1, 2]
    for trial, scores in zip(saved["trials"], rated, strict=True):
        names = dict(saved["plan"][trial["trial"]]["conditions"])
        assert trial["scores"] == {names[cid]: score for cid, score in scores.items()}
        assert len(set(scores.values())) == len(scores)  # every slider really moved
