"""recipes/speech16k/device_stage.sh: one lent-GPU call that trains the shipped model on,
exports it and trains its postfilter; run here on the CPU with a tiny packed corpus and
budgets of seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codec import pretrained
from tests.recipes.corpus import speaker_corpus

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "recipes" / "speech16k" / "device_stage.sh"


def _packed_corpus(tmp_path: Path) -> Path:
    src = speaker_corpus(tmp_path / "corpus", train_per_speaker=3)
    subprocess.run(
        [sys.executable, str(SCRIPT.parent / "pack_opus.py"), str(src), str(tmp_path / "packed")],
        check=True,
        capture_output=True,
    )
    return tmp_path / "packed"


@pytest.mark.slow
def test_one_call_trains_the_model_on_and_a_postfilter_for_it(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    env = {
        **os.environ,
        "OUT": str(out),
        "DATA": str(_packed_corpus(tmp_path)),
        "WAV": str(tmp_path / "wav"),
        "RUN": str(tmp_path / "run"),
        "PF": str(tmp_path / "pf"),
        "PYTHON": sys.executable,
        "LIMIT": "300",
        "EXTRA": "data.num_workers=0 num_threads=1 data.batch_size=2 logging.valid_clips=2",
    }
    result = subprocess.run(
        ["bash", str(SCRIPT), "4", "4", "cpu"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    log = (out / "log.txt").read_text()
    assert result.returncode == 0, log + result.stderr
    assert log.rstrip().endswith("done")
    assert "train rc=0" in log and "postfilter rc=0" in log

    model = pretrained.load(str(out / "model"))
    shipped = pretrained.load("speech16k")
    assert model.config == shipped.config
    assert pretrained.id_of(model) != pretrained.id_of(shipped)  # trained on
    meta = json.loads((out / "postfilter.json").read_text())
    assert meta["codec_model_id"] == pretrained.id_of(model).hex()
    assert (out / "postfilter.safetensors").stat().st_size > 0
    shipped_pf = json.loads((pretrained.resolve("speech16k") / "postfilter.json").read_text())
    assert meta["config"] == shipped_pf["config"]  # the shape that decodes by default

    # PF_SECONDS 0 skips the postfilter; PRIOR=1 trains a prior on the new codec's codes.
    again = tmp_path / "again"
    again.mkdir()
    tiny_prior = "train.steps=2 train.batch_size=2 train.seq_frames=16 train.valid_every=100"
    result = subprocess.run(
        ["bash", str(SCRIPT), "2", "0", "cpu"],
        cwd=ROOT,
        env={
            **env,
            "OUT": str(again),
            "PRIOR": "1",
            "PRIOR_RUN": str(tmp_path / "prior"),
            "PRIOR_EXTRA": tiny_prior,
        },
        capture_output=True,
        text=True,
        timeout=200,
    )
    log = (again / "log.txt").read_text()
    assert result.returncode == 0, log + result.stderr
    assert "train rc=0" in log and "no postfilter" in log and "postfilter rc" not in log
    assert not (again / "postfilter.safetensors").exists()
    assert "prior rc=0" in log
    model = pretrained.load(str(again / "model"))
    prior = json.loads((again / "model" / "prior.json").read_text())
    assert prior["codec_model_id"] == pretrained.id_of(model).hex()
