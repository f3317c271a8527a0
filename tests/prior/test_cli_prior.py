"""`codec prior train|export`, `codec encode --entropy`, `codec decode` and `codec sample`
end to end: a tiny codec, a tiny prior trained on a generated folder of audio."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codec import bitstream
from codec.audio import load_audio, save_audio
from codec.cli import app
from tests.conftest import tone

runner = CliRunner()


def codec(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def model_with_prior(tmp_path_factory, tiny_model_dir) -> Path:
    """A copy of the tiny model folder with a prior trained for 30 steps beside it."""
    root = tmp_path_factory.mktemp("prior")
    for i in range(6):  # a folder of clips; the manifest scan holds some out as valid
        save_audio(root / "audio" / f"spk{i % 2}" / f"clip{i}.wav", tone(3.0, seed=i), 16000)
    model = root / "tiny"
    shutil.copytree(tiny_model_dir, model)
    recipe = root / "prior.yaml"
    recipe.write_text(
        "model: {n_codebooks: 4, codebook_size: 1024, dim: 32, n_layers: 1, n_heads: 2,"
        " depth_dim: 16, window: 32}\n"
        f"data: {{root: {root / 'audio'}, valid_fraction: 0.34}}\n"
        f"codes: {{codec: {model}, cache_dir: {root / 'cache'}}}\n"
        "train: {steps: 30, batch_size: 4, seq_frames: 32, learning_rate: 0.003,"
        " warmup: 5, log_every: 10, valid_every: 100}\n"
    )
    r = codec("prior", "train", recipe, "--out", root / "run")
    assert r.exit_code == 0, r.output
    assert "bits/token" in r.output
    r = codec("prior", "export", root / "run", model)
    assert r.exit_code == 0, r.output
    return model


def test_entropy_coded_files_decode_to_the_same_audio(tmp_path, model_with_prior) -> None:
    wav = tmp_path / "in.wav"
    save_audio(wav, tone(4.0, seed=9), 16000)
    plain, coded = tmp_path / "plain.codes", tmp_path / "coded.codes"
    assert codec("encode", wav, plain, "-m", model_with_prior).exit_code == 0
    r = codec("encode", wav, coded, "-m", model_with_prior, "--entropy")
    assert r.exit_code == 0, r.output
    assert bitstream.read_header(coded).entropy_coded
    assert coded.stat().st_size < plain.stat().st_size
    for name in ("plain", "coded"):
        r = codec(
            "decode", tmp_path / f"{name}.codes", tmp_path / f"{name}.wav", "-m", model_with_prior
        )
        assert r.exit_code == 0, r.output
    assert (tmp_path / "plain.wav").read_bytes() == (tmp_path / "coded.wav").read_bytes()
    r = codec("info", coded)
    assert "range-coded by prior" in r.output


def test_a_corrupt_entropy_coded_file_is_refused(tmp_path, model_with_prior) -> None:
    wav = tmp_path / "in.wav"
    save_audio(wav, tone(2.0), 16000)
    coded = tmp_path / "c.codes"
    assert codec("encode", wav, coded, "-m", model_with_prior, "--entropy").exit_code == 0
    data = bytearray(coded.read_bytes())
    data[-3] ^= 0x10
    coded.write_bytes(bytes(data))
    r = codec("decode", coded, tmp_path / "out.wav", "-m", model_with_prior)
    assert r.exit_code == 1 and "corrupt" in r.output
    assert not (tmp_path / "out.wav").exists()


def test_entropy_needs_a_prior(tmp_path, speech_wav, tiny_model_dir) -> None:
    r = codec("encode", speech_wav, tmp_path / "s.codes", "-m", tiny_model_dir, "--entropy")
    assert r.exit_code == 1 and "has no prior" in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "s.codes").exists()


def test_pipes_carry_entropy_coded_files(tmp_path, model_with_prior) -> None:
    wav = tmp_path / "in.wav"
    save_audio(wav, tone(1.5), 16000)
    r = codec("encode", wav, "-", "-m", model_with_prior, "--entropy")
    assert r.exit_code == 0
    (tmp_path / "p.codes").write_bytes(r.stdout_bytes)
    assert bitstream.read_header(tmp_path / "p.codes").entropy_coded


def test_sample_is_reproducible_and_continues_a_prompt(tmp_path, model_with_prior) -> None:
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    for path in (a, b):
        r = codec("sample", path, "--seconds", 1, "--seed", 3, "-m", model_with_prior)
        assert r.exit_code == 0, r.output
    assert a.read_bytes() == b.read_bytes()
    assert len(load_audio(a, 16000)) == 16000
    prompt = tmp_path / "prompt.wav"
    save_audio(prompt, tone(1.0), 16000)
    r = codec("sample", tmp_path / "c.wav", "-s", 0.5, "--prompt", prompt, "--top-p", 0.9,
              "-m", model_with_prior)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(load_audio(tmp_path / "c.wav", 16000)) == 16000 + 8000


def test_export_refuses_a_prior_of_another_codec(
    tmp_path, model_with_prior, tiny_model_dir
) -> None:
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    (other / "config.json").write_text(
        (other / "config.json").read_text().replace('"ema_decay": 0.99', '"ema_decay": 0.9')
    )
    run = model_with_prior.parent / "run"
    r = codec("prior", "export", run, other)
    assert r.exit_code == 1 and "not of" in r.output


def test_a_run_hands_over_its_best_validation_step(tmp_path, model_with_prior) -> None:
    import json

    from codec.config import load_prior_recipe
    from codec.train.prior import train_prior

    root = model_with_prior.parent
    recipe = load_prior_recipe(
        root / "prior.yaml", ["train.steps=12", "train.valid_every=4", "train.learning_rate=0.3"]
    )  # a learning rate this high makes the loss wander, so the last step need not be best
    logs: list[str] = []
    metrics = train_prior(recipe, tmp_path / "run", log=logs.append)
    best = metrics["best"]
    assert best["steps"] in (4, 8, 12)
    assert best["bits_per_token"] <= metrics["bits_per_token"]
    stored = json.loads((tmp_path / "run" / "prior.json").read_text())["metrics"]
    assert stored["steps"] == best["steps"]
    assert stored["bits_per_token"] == pytest.approx(best["bits_per_token"])


def test_the_prior_trains_where_train_device_says(tmp_path, model_with_prior) -> None:
    import torch

    from codec.config import load_prior_recipe
    from codec.errors import ConfigError
    from codec.train.prior import train_prior

    recipe = model_with_prior.parent / "prior.yaml"
    logs: list[str] = []
    train_prior(
        load_prior_recipe(recipe, ["train.steps=2", "train.device=cpu"]),
        tmp_path / "cpu",
        log=logs.append,
    )
    assert any(line.endswith("parameters on cpu") for line in logs)
    with pytest.raises(ConfigError, match="train.device"):
        load_prior_recipe(recipe, ["train.device=tpu"])
    if not torch.cuda.is_available():  # a machine without CUDA says so in one line
        r = codec("prior", "train", recipe, "train.device=cuda", "--out", tmp_path / "gpu")
        assert r.exit_code == 1 and "no CUDA device" in r.output
