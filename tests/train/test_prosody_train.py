"""Training the prosody VAEs on a tiny generated corpus: recipe, data, loop, resume."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from codec.audio import save_audio
from codec.config import (
    DataConfig,
    ProsodyFeatureSection,
    ProsodyModelSection,
    ProsodyRecipe,
    ProsodyTrainSection,
    load_prosody_recipe,
)
from codec.errors import CodecError, ConfigError
from codec.train.prosody import KINDS, ProsodyData, build_model, train_prosody

RECIPE = Path(__file__).parents[2] / "recipes" / "prosody" / "speech16k.yaml"
SR = 16000


def syllables(seconds: float, f0: float, seed: int) -> np.ndarray:
    """Harmonics of a gliding pitch, gated into syllables with silent gaps."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    pitch = f0 * (1 + 0.2 * np.sin(2 * np.pi * (0.7 + 0.1 * seed) * t))
    phase = 2 * np.pi * np.cumsum(pitch) / SR
    wav = sum(np.sin(k * phase) / k for k in range(1, 6))
    gate = (np.sin(2 * np.pi * 2.5 * t + seed) > -0.3).astype(np.float64)
    noise = 0.001 * rng.standard_normal(len(t))
    return (0.2 * wav * gate + noise).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    """(audio root, feature cache): 2 speakers x 3 clips of about 1 s."""
    root = tmp_path_factory.mktemp("prosody_corpus")
    for s, (speaker, f0) in enumerate((("low", 110.0), ("high", 220.0))):
        for i in range(3):
            seconds = 0.8 + 0.2 * i
            save_audio(root / speaker / f"clip{i}.wav", syllables(seconds, f0, 3 * s + i), SR)
    corpus = root, tmp_path_factory.mktemp("prosody_cache")
    ProsodyData(tiny_recipe(corpus), note=lambda _: None)  # fills the feature cache once
    return corpus


def tiny_recipe(corpus: tuple[Path, Path], kind: str = "vrnn", **train: object) -> ProsodyRecipe:
    root, cache = corpus
    settings = dict(
        steps=20,
        batch_size=4,
        learning_rate=0.01,
        kl_warmup=10,
        checkpoint_every=10,
        valid_every=10,
        iwae_k=4,
        seed=0,
    )
    settings.update(train)
    return ProsodyRecipe(
        model=ProsodyModelSection(kind=kind, hidden=8, latent=4, latents=(4, 2)),
        data=DataConfig(root=str(root), valid_fraction=0.2),
        features=ProsodyFeatureSection(cache_dir=str(cache), segment_frames=40),
        train=ProsodyTrainSection(**settings),
    )


def test_shipped_recipe_loads_with_overrides():
    recipe = load_prosody_recipe(RECIPE, ["model.kind=vrae", "train.steps=5"])
    assert recipe.model.kind == "vrae"
    assert recipe.train.steps == 5
    assert Path(recipe.data.root).is_absolute()
    assert Path(recipe.data.root).name == "speech16k-mini"
    for kind in KINDS:
        build_model(load_prosody_recipe(RECIPE, [f"model.kind={kind}"]).model)


def test_unknown_keys_and_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="stepz"):
        load_prosody_recipe(RECIPE, ["train.stepz=5"])
    with pytest.raises(ConfigError, match="normalise"):
        load_prosody_recipe(RECIPE, ["features.normalise=global"])
    with pytest.raises(ConfigError, match="kl_schedule"):
        load_prosody_recipe(RECIPE, ["train.kl_schedule=sigmoid"])
    with pytest.raises(ConfigError, match="ladder"):
        build_model(ProsodyModelSection(kind="transformer"))


def test_crops_are_deterministic_per_seed_with_end_padding(corpus):
    data = ProsodyData(tiny_recipe(corpus), note=lambda _: None)
    x, mask = data.batch(3, 4, seed=0)
    assert x.shape == (4, 40, 3) and mask.shape == (4, 40) and mask.dtype == torch.bool
    again = data.batch(3, 4, seed=0)
    assert torch.equal(x, again[0]) and torch.equal(mask, again[1])
    assert not torch.equal(x, data.batch(3, 4, seed=1)[0])
    assert set(x[..., 1].unique().tolist()) <= {0.0, 1.0}

    long = dataclasses.replace(data.recipe.features, segment_frames=200)
    data.recipe = dataclasses.replace(data.recipe, features=long)
    x, mask = data.batch(0, 4, seed=0)
    lengths = mask.sum(1)
    assert (lengths < 200).all()  # clips of about 1 s are 40-50 frames
    for row, n in zip(mask, lengths, strict=True):
        assert row[:n].all() and not row[n:].any()  # real frames first, padding at the end
    assert (x[~mask] == 0).all()


def test_features_are_normalised_per_speaker(corpus):
    data = ProsodyData(tiny_recipe(corpus), note=lambda _: None)
    assert set(data.normalizer.stats) <= {"low", "high"} and data.normalizer.stats
    frames = np.concatenate(data.train)
    assert abs(frames[:, 2].mean()) < 0.5 and 0.5 < frames[:, 2].std() < 1.5
    voiced = frames[:, 1] > 0
    assert voiced.any() and abs(frames[voiced, 0].mean()) < 0.5
    batches = list(data.valid_batches(4))
    assert sum(len(x) for x, _ in batches) == len(data.valid) >= 1


@pytest.mark.parametrize("kind", KINDS)
def test_each_model_trains(corpus, tmp_path, kind):
    start = train_prosody(tiny_recipe(corpus, kind, steps=1), tmp_path / "a", log=lambda _: None)
    end = train_prosody(tiny_recipe(corpus, kind), tmp_path / "b", log=lambda _: None)
    assert end["steps"] == 20
    assert all(math.isfinite(v) for v in end.values())
    assert json.loads((tmp_path / "b" / "metrics.json").read_text()) == end
    if kind in ("rnn", "vrnn"):
        assert end["elbo_per_frame"] > start["elbo_per_frame"]
    if kind == "rnn":
        assert end["kl_per_frame"] == 0.0


def test_resume_continues_the_same_run(corpus, tmp_path):
    quiet = {"log": lambda _: None}
    whole = train_prosody(tiny_recipe(corpus, "vrnn"), tmp_path / "whole", **quiet)
    train_prosody(tiny_recipe(corpus, "vrnn", steps=10), tmp_path / "split", **quiet)
    with pytest.raises(CodecError, match="not empty"):
        train_prosody(tiny_recipe(corpus, "vrnn"), tmp_path / "split", **quiet)
    resumed = train_prosody(tiny_recipe(corpus, "vrnn"), tmp_path / "split", resume=True, **quiet)
    assert resumed["steps"] == 20
    assert resumed == pytest.approx(whole, rel=1e-5)


def test_resume_needs_a_checkpoint(corpus, tmp_path):
    with pytest.raises(CodecError, match="no such checkpoint"):
        train_prosody(tiny_recipe(corpus), tmp_path / "empty", resume=True, log=lambda _: None)


def test_codec_prosody_train_runs_from_the_shipped_recipe(corpus, tmp_path):
    from typer.testing import CliRunner

    from codec.cli import app

    root, cache = corpus
    recipe = Path(__file__).parents[2] / "recipes" / "prosody" / "speech16k.yaml"
    args = [
        "prosody", "train", str(recipe), f"data.root={root}", f"features.cache_dir={cache}",
        "model.kind=vrae", "model.hidden=8", "model.latent=4", "features.segment_frames=40",
        "train.steps=4", "train.batch_size=4", "train.iwae_k=4", "train.valid_every=4",
        "train.checkpoint_every=4", "--out", str(tmp_path / "run"),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "iwae_per_frame" in result.output
    assert (tmp_path / "run" / "metrics.json").is_file()
    again = CliRunner().invoke(app, args)  # the folder holds a run: refused without --resume
    assert again.exit_code == 1 and "Traceback" not in again.output


@pytest.mark.parametrize("kind", ["vrae", "ladder", "vrnn"])
def test_codec_prosody_analyze_draws_an_utterance(corpus, tmp_path, kind):
    from typer.testing import CliRunner

    from codec.cli import app

    root, _ = corpus
    train_prosody(tiny_recipe(corpus, kind, steps=2), tmp_path / "run", log=lambda _: None)
    clip = next(root.rglob("*.wav"))
    png = tmp_path / "analysis.png"
    result = CliRunner().invoke(
        app, ["prosody", "analyze", str(clip), "--run", str(tmp_path / "run"), "--plot", str(png)]
    )
    assert result.exit_code == 0, result.output
    assert "cents" in result.output and "voicing error" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if kind in ("vrae", "ladder"):
        assert ("z:" in result.output) or ("layer0:" in result.output)


def test_codec_prosody_analyze_without_a_run_is_a_one_line_error(corpus, tmp_path):
    from typer.testing import CliRunner

    from codec.cli import app

    clip = next(corpus[0].rglob("*.wav"))
    result = CliRunner().invoke(app, ["prosody", "analyze", str(clip), "--run", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_an_unreadable_file_is_reported_and_skipped(corpus, tmp_path):
    import shutil

    root, cache = corpus
    copy = tmp_path / "corpus"
    shutil.copytree(root, copy)
    (copy / "low" / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEgarbage")
    notes: list[str] = []
    data = ProsodyData(tiny_recipe((copy, cache)), note=notes.append)
    assert any("broken.wav" in n for n in notes)
    assert len(data.train) + len(data.valid) == 6


def test_codec_prosody_eval_scores_every_kind_on_held_out_clips(corpus, tmp_path):
    from typer.testing import CliRunner

    from codec.cli import app

    runs = []
    for kind in KINDS:
        run = tmp_path / kind
        train_prosody(tiny_recipe(corpus, kind, steps=2), run, log=lambda _: None)
        runs.append(str(run))
    table = tmp_path / "table.json"
    args = ["prosody", "eval", *runs, "--k", "4", "--limit", "5", "--json", str(table)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(table.read_text())
    assert [r["kind"] for r in rows] == list(KINDS)
    for r in rows:
        assert r["utterances"] >= 1 and r["frames"] > 0 and r["k"] == 4
        assert math.isfinite(r["nll_per_frame"]) and r["kl_per_frame"] >= 0
        assert 0 <= r["voicing_error"] <= 1
        assert f"| {r['kind']} |" in result.output
    rnn = rows[0]
    assert rnn["active_units"] == {} and rnn["kl_per_frame"] == 0
    assert rnn["nll_per_frame"] == pytest.approx(-rnn["elbo_per_frame"], rel=1e-5)  # exact
    assert set(rows[4]["active_units"]) == {"layer0", "layer1"}  # the ladder, per layer
    for r in (rows[1], rows[4]):  # global latents: information and speaker clusters
        assert all(0 <= v <= math.log(5) + 1e-6 for v in r["mutual_information"].values())
        if r.get("speakers", 0) > 1:  # this tiny split may hold one speaker only
            assert all(0 < v <= 1 for v in r["speaker_purity"].values())
        assert "mutual information" in result.output
    for r in rows[1:]:
        assert all(0 <= n <= 4 for n in r["active_units"].values())
