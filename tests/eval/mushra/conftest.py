"""Fixtures: reference clips, a system's decoded clips and a prepared MUSHRA test."""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from codec.audio import save_audio
from codec.eval.mushra import MushraServer, prepare
from tests.conftest import tone

RATE = 16000


def make_inputs(root: Path, items: int = 3, seconds: float = 1.0) -> tuple[Path, dict[str, Path]]:
    """`root/refs/<name>.wav` and, for system "ours", the same clips with noise added."""
    rng = np.random.default_rng(0)
    refs, ours = root / "refs", root / "ours"
    for k in range(items):
        ref = tone(seconds, RATE, seed=k)
        save_audio(refs / f"clip{k}.wav", ref, RATE)
        save_audio(ours / f"clip{k}.wav", ref + 0.02 * rng.standard_normal(ref.size), RATE)
    return refs, {"ours": ours}


@pytest.fixture(scope="session")
def _prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mushra")
    refs, systems = make_inputs(root)
    prepare(refs, systems, root / "test", seed=7)
    return root / "test"


@pytest.fixture
def mushra_dir(_prepared, tmp_path) -> Path:
    """A prepared test of its own: 3 items of 1 s; reference, "ours" and two anchors."""
    return Path(shutil.copytree(_prepared, tmp_path / "test"))


@contextlib.contextmanager
def running(test_dir: Path) -> Iterator[MushraServer]:
    """A `MushraServer` on a free loopback port, serving from a background thread."""
    server = MushraServer(test_dir)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
