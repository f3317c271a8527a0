"""Training runs end to end: from a folder, with a critic, resumed after kill -9,
exported, data-parallel over 2 processes and compiled. Every run here is tiny: a 4-channel
codec, half-second crops and a handful of steps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from codec import pretrained
from codec.audio import save_audio
from codec.cli import app
from codec.config import load_recipe, replace_recipe
from codec.errors import CodecError
from codec.train import distributed
from codec.train.checkpoint import load_checkpoint
from codec.train.data import loader
from codec.train.export import model_card
from codec.train.logger import TrainLogger
from codec.train.loop import Trainer, cosine_with_warmup, train
from tests.conftest import tone

REPO = Path(__file__).parents[2]
FOLDER_RECIPE = REPO / "recipes" / "folder" / "codec16k.yaml"
runner = CliRunner()

# Shrinks the shipped folder recipe to something 2 CPU cores train in seconds.
TINY = [
    "model.channels=4",
    "model.latent_dim=8",
    "model.dilations=[1]",
    "model.n_codebooks=4",
    "model.codebook_size=64",
    "data.segment_seconds=0.5",
    "data.batch_size=2",
    "data.num_workers=0",
    "losses.discriminator_filters=4",
    "losses.adversarial_start=2",
    "optim.learning_rate=0.001",
    "schedule.steps=6",
    "schedule.warmup_steps=2",
    "logging.log_every=2",
    "logging.checkpoint_every=2",
    "logging.valid_every=3",
    "logging.valid_clips=2",
    "logging.valid_seconds=1.0",
    "logging.pesq_clips=1",
    "num_threads=1",
]


@pytest.fixture(scope="module")
def audio_folder(tmp_path_factory) -> Path:
    """Three speakers' folders of speech-like clips (1 to 3 s), WAV and FLAC."""
    root = tmp_path_factory.mktemp("audio")
    for s in range(3):
        for i in range(4):
            path = root / f"speaker{s}" / f"clip{i}.{'flac' if i % 2 else 'wav'}"
            path.parent.mkdir(exist_ok=True)
            save_audio(path, tone(1.0 + i * 0.5, seed=10 * s + i), 16000)
    return root


def tiny_recipe(audio_folder: Path, *extra: str):
    return load_recipe(FOLDER_RECIPE, [*TINY, f"data.root={audio_folder}", *extra])


def state_tensors(path: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(path)
    tensors = {f"model.{k}": v for k, v in state["model"].items()}
    tensors.update({f"discriminator.{k}": v for k, v in state.get("discriminator", {}).items()})
    return tensors


# The schedule -------------------------------------------------------------------------


def test_cosine_schedule_warms_up_then_decays_to_the_final_ratio():
    assert cosine_with_warmup(0, 10, 100) == pytest.approx(0.1)
    assert cosine_with_warmup(9, 10, 100) == pytest.approx(1.0)
    assert cosine_with_warmup(55, 10, 100) == pytest.approx(0.5)
    assert cosine_with_warmup(100, 10, 100, final=0.1) == pytest.approx(0.1)


# A whole run from the command line ---------------------------------------------------


def test_codec_train_on_a_folder_trains_validates_checkpoints_and_exports(audio_folder, tmp_path):
    run = tmp_path / "run"
    overrides = [*TINY, f"data.root={audio_folder}", "data.num_workers=2"]
    result = runner.invoke(app, ["train", str(FOLDER_RECIPE), *overrides, "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "trained to step 6" in result.output
    assert "mel_distance" in result.output  # validation ran and was reported

    state = load_checkpoint(run / "checkpoint.pt")
    assert state["step"] == 6
    assert state["samples_seen"] == 6 * 2
    assert "discriminator" in state and "balancer" in state
    assert state["valid"]["mel_distance"] > 0
    assert (run / "recipe.json").is_file()
    assert any((run / "tensorboard").glob("events.out.tfevents.*"))

    # export, then use the exported model as any shipped one
    result = runner.invoke(app, ["export", str(run), str(tmp_path / "mine")])
    assert result.exit_code == 0, result.output
    card = (tmp_path / "mine" / "README.md").read_text()
    assert "6 steps" in card and "mel_distance" in card
    model = pretrained.load(tmp_path / "mine")
    assert model.config.channels == 4
    wav = tmp_path / "in.wav"
    save_audio(wav, tone(1.2), 16000)
    codes = tmp_path / "in.codes"
    result = runner.invoke(app, ["encode", "-m", str(tmp_path / "mine"), str(wav), str(codes)])
    assert result.exit_code == 0, result.output


def test_a_run_folder_is_never_overwritten_without_resume(audio_folder, tmp_path):
    recipe = tiny_recipe(audio_folder, "schedule.steps=2", "losses.adversarial=0")
    train(recipe, tmp_path / "run")
    with pytest.raises(CodecError, match="--resume"):
        train(recipe, tmp_path / "run")
    result = runner.invoke(
        app,
        [
            "train",
            str(FOLDER_RECIPE),
            *TINY,
            f"data.root={audio_folder}",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 1
    assert "--resume" in result.output and "Traceback" not in result.output


def test_resume_refuses_a_different_model(audio_folder, tmp_path):
    train(tiny_recipe(audio_folder, "schedule.steps=2"), tmp_path / "run")
    other = tiny_recipe(audio_folder, "schedule.steps=4", "model.channels=8")
    with pytest.raises(CodecError, match="model config differs"):
        train(other, tmp_path / "run", resume=True)


def test_a_finished_run_resumed_with_more_steps_continues(audio_folder, tmp_path):
    train(tiny_recipe(audio_folder, "schedule.steps=2"), tmp_path / "run")
    result = train(tiny_recipe(audio_folder, "schedule.steps=4"), tmp_path / "run", resume=True)
    assert result.step == 4
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 4


def test_a_fresh_run_can_start_from_an_exported_model(audio_folder, tmp_path):
    train(tiny_recipe(audio_folder, "schedule.steps=3"), tmp_path / "first")
    result = runner.invoke(app, ["export", str(tmp_path / "first"), str(tmp_path / "stage1")])
    assert result.exit_code == 0, result.output
    stage1 = pretrained.load_for_training(tmp_path / "stage1").state_dict()

    recipe = tiny_recipe(
        audio_folder, f"init_from={tmp_path / 'stage1'}", "model.quantizer_dropout=0.2"
    )
    trainer = Trainer(recipe, tmp_path / "second", distributed.setup("cpu"))
    start = trainer.model.state_dict()
    assert start.keys() == stage1.keys()
    assert all(torch.equal(start[k], stage1[k]) for k in stage1)
    assert bool(trainer.model.quantizer.layers[0].initialized)  # no k-means on top
    assert trainer.step == 0  # the optimiser and the schedule start afresh

    lines: list[str] = []
    assert train(recipe, tmp_path / "third", log=lines.append).step == 6
    assert any(f"weights and codebooks from {tmp_path / 'stage1'}" in x for x in lines)


def test_starting_from_a_model_of_another_shape_is_a_one_line_error(audio_folder, tmp_path):
    train(tiny_recipe(audio_folder, "schedule.steps=2"), tmp_path / "first")
    runner.invoke(app, ["export", str(tmp_path / "first"), str(tmp_path / "stage1")])
    trained = json.loads((tmp_path / "stage1" / "config.json").read_text())
    other = tiny_recipe(
        audio_folder,
        f"init_from={tmp_path / 'stage1'}",
        f"model.channels={2 * trained['channels']}",
        "model.ratios=[5,4]",
    )
    with pytest.raises(CodecError, match="architecture differs") as raised:
        Trainer(other, tmp_path / "second", distributed.setup("cpu"))
    # The message names the overrides that match the exported model, ready to paste.
    ratios = ",".join(map(str, trained["ratios"]))
    assert f"model.channels={trained['channels']} model.ratios=[{ratios}])" in str(raised.value)
    missing = tiny_recipe(audio_folder, f"init_from={tmp_path / 'nowhere'}")
    with pytest.raises(CodecError, match="not found"):
        Trainer(missing, tmp_path / "third", distributed.setup("cpu"))


def test_a_faster_model_can_start_from_one_with_more_outer_residual_units(audio_folder, tmp_path):
    train(tiny_recipe(audio_folder, "schedule.steps=2"), tmp_path / "first")
    runner.invoke(app, ["export", str(tmp_path / "first"), str(tmp_path / "stage1")])
    stage1 = pretrained.load_for_training(tmp_path / "stage1")
    pruned = tiny_recipe(
        audio_folder, f"init_from={tmp_path / 'stage1'}", "model.outer_dilations=[]"
    )
    trainer = Trainer(pruned, tmp_path / "second", distributed.setup("cpu"))
    trainer.logger.close()
    kept = trainer.model.state_dict()
    assert len(kept) < len(stage1.state_dict())
    encoder_in = "encoder.model.0.conv.parametrizations.weight.original1"
    assert torch.equal(kept[encoder_in], stage1.state_dict()[encoder_in])
    assert torch.equal(
        kept["quantizer.layers.0.codebook"], stage1.state_dict()["quantizer.layers.0.codebook"]
    )


def test_during_the_critic_warmup_only_the_critic_learns_from_the_game(audio_folder, tmp_path):
    recipe = tiny_recipe(audio_folder, "losses.adversarial_start=1", "losses.critic_warmup=2")
    trainer = Trainer(recipe, tmp_path / "run", distributed.setup("cpu"))
    trainer.logger.close()
    batches = loader(trainer.dataset, recipe.data.batch_size, num_workers=0)
    played = []  # (the critic trained, the codec saw the critic) at each step
    for _ in range(4):
        stats = trainer.train_step(batches)
        trainer.step += 1
        played.append(("discriminator" in stats, "adversarial" in stats and "feature" in stats))
    assert played == [(False, False), (True, False), (True, False), (True, True)]


def budget_recipe(audio_folder: Path, seconds: float):
    """A tiny run with no critic and no mid-run validation or checkpoint, given a
    wall-clock budget instead of a step count."""
    return tiny_recipe(
        audio_folder,
        "schedule.steps=100000",
        f"schedule.seconds={seconds:g}",
        "losses.adversarial=0",
        "losses.feature=0",
        "logging.valid_every=100000",
        "logging.checkpoint_every=100000",
    )


def test_a_wall_clock_budget_ends_the_schedule_when_the_time_is_up(audio_folder, tmp_path):
    budget = budget_recipe(audio_folder, seconds=5)
    t0 = time.monotonic()
    result = train(budget, tmp_path / "run")
    assert time.monotonic() - t0 < 30  # not 100,000 steps
    fitted = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["recipe"]["schedule"]
    # timed over steps 10 to 30, then fitted to the budget
    assert 30 <= fitted["steps"] < 100000
    assert result.step == fitted["steps"]
    assert f'"steps": {fitted["steps"]}' in (tmp_path / "run" / "recipe.json").read_text()

    # resumed, the run keeps the end it was fitted to (it is already there)
    again = train(budget, tmp_path / "run", resume=True)
    assert again.step == fitted["steps"]


def _slow_steps_from(monkeypatch, step: int, seconds: float) -> list[str]:
    """Make every training step from `step` on take `seconds` longer; returns the list
    the trainer's log lines go to."""
    fast_step = Trainer.train_step

    def slow_step(self, batches):
        if self.step >= step:
            time.sleep(seconds)
        return fast_step(self, batches)

    monkeypatch.setattr(Trainer, "train_step", slow_step)
    lines: list[str] = []
    monkeypatch.setattr(TrainLogger, "line", lambda self, text: lines.append(text))
    return lines


def test_a_run_that_slows_after_its_rate_was_timed_is_refitted_and_ends_on_budget(
    audio_folder, tmp_path, monkeypatch
):
    # Timed at full speed over steps 10 to 30, then every step takes 0.3 s longer (a
    # machine shared with a second run, say): the fitted end is out of reach in time, so
    # the end is re-fitted to the slower rate and the cosine comes down before the time
    # is up. The budget leaves room for a CI machine several times slower than a laptop.
    lines = _slow_steps_from(monkeypatch, 40, seconds=0.3)
    budget = budget_recipe(audio_folder, seconds=8)
    t0 = time.monotonic()
    result = train(budget, tmp_path / "run")
    assert time.monotonic() - t0 < 25
    log = "\n".join(lines)
    fitted = int(log.split("so the schedule ends at step ")[1].split()[0])
    assert "re-fitted to" in log
    assert 40 <= result.step < fitted
    # the checkpoint and recipe say where it ended, so a resumed run is already done
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert saved["step"] == result.step == saved["recipe"]["schedule"]["steps"]
    assert train(budget, tmp_path / "run", resume=True).step == result.step


def test_a_budget_still_ends_a_run_that_slows_past_its_last_refit(
    audio_folder, tmp_path, monkeypatch
):
    # Steps slow to 2 s from step 45: the re-fit after step 40 (at full speed) cannot
    # see it coming, so the held budget ends the run when the time is up.
    lines = _slow_steps_from(monkeypatch, 45, seconds=2.0)
    result = train(budget_recipe(audio_folder, seconds=8), tmp_path / "run")
    log = "\n".join(lines)
    assert "time budget 8 s spent (fitted end" in log
    assert 45 <= result.step < int(log.split("so the schedule ends at step ")[1].split()[0])


def test_a_budget_spent_before_the_rate_is_timed_still_ends_the_run(audio_folder, tmp_path):
    slow = tiny_recipe(
        audio_folder, "schedule.steps=100000", "schedule.seconds=0.5", "losses.adversarial_start=50"
    )
    result = train(slow, tmp_path / "run")
    assert 1 <= result.step < 50


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.root=/no/such/folder", "no such folder"),
        ("data.root=", "set data.root"),
        ("losses.waveform_cutoff=-1", "losses.waveform_cutoff must be 0"),
        ("losses.waveform_cutoff=8000", "below 8000 Hz"),
    ],
)
def test_bad_data_or_settings_are_a_one_line_error(override, message, tmp_path):
    result = runner.invoke(
        app, ["train", str(FOLDER_RECIPE), *TINY, override, "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_a_low_passed_waveform_term_trains_and_is_named_on_the_card(audio_folder, tmp_path):
    recipe = tiny_recipe(
        audio_folder, "schedule.steps=2", "losses.adversarial=0", "losses.waveform_cutoff=1500"
    )
    result = train(recipe, tmp_path / "run")
    assert result.step == 2
    card = model_card("mine", recipe, load_checkpoint(tmp_path / "run" / "checkpoint.pt"))
    assert "waveform below 1500 Hz" in card


def test_the_compressed_magnitude_loss_trains_and_is_named_on_the_card(audio_folder, tmp_path):
    recipe = tiny_recipe(audio_folder, "schedule.steps=2", "losses.compressed=1")
    result = train(recipe, tmp_path / "run")
    assert result.step == 2
    card = model_card("mine", recipe, load_checkpoint(tmp_path / "run" / "checkpoint.pt"))
    assert "compressed" in card


def test_unknown_recipe_key_is_named(tmp_path):
    result = runner.invoke(app, ["train", str(FOLDER_RECIPE), "optim.lerning_rate=1"])
    assert result.exit_code == 1
    assert "unknown key 'lerning_rate'" in result.output


def test_accumulation_and_bf16_autocast_train(audio_folder, tmp_path):
    recipe = tiny_recipe(
        audio_folder, "schedule.steps=2", "optim.accumulate=2", "optim.precision=bf16"
    )
    result = train(recipe, tmp_path / "run")
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert result.step == 2
    assert state["samples_seen"] == 2 * 2 * 2  # steps x micro-batches x batch
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


# Resume after kill -9 -----------------------------------------------------------------


def _train_command(audio_folder: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "codec",
        "train",
        str(FOLDER_RECIPE),
        *TINY,
        f"data.root={audio_folder}",
        "schedule.steps=8",
        *extra,
        "--out",
        str(out),
    ]


@pytest.mark.slow
def test_training_killed_and_resumed_reaches_the_same_weights(audio_folder, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    straight = tmp_path / "straight"
    subprocess.run(_train_command(audio_folder, straight), check=True, env=env, capture_output=True)

    interrupted = tmp_path / "interrupted"
    proc = subprocess.Popen(
        _train_command(audio_folder, interrupted),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not (interrupted / "checkpoint.pt").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(interrupted / "checkpoint.pt")["step"]
    assert killed_at < 8, "the run finished before it could be killed"

    subprocess.run(
        [*_train_command(audio_folder, interrupted), "--resume"],
        check=True,
        env=env,
        capture_output=True,
    )
    a = state_tensors(straight / "checkpoint.pt")
    b = state_tensors(interrupted / "checkpoint.pt")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resuming at {killed_at}"


# Scale-out and compilation ------------------------------------------------------------

DDP_SCRIPT = """
import sys, torch
from codec.config import load_recipe
from codec.train import distributed
from codec.train.loop import Trainer
from pathlib import Path
recipe = load_recipe(sys.argv[1], sys.argv[3:])
info = distributed.setup("cpu")
trainer = Trainer(recipe, Path(sys.argv[2]), info)
trainer.run()
state = {**{"model." + k: v for k, v in trainer.model.state_dict().items()},
         **{"disc." + k: v for k, v in trainer.discriminator.state_dict().items()}}
torch.save(state, Path(sys.argv[2]) / f"replica{info.rank}.pt")
distributed.cleanup()
"""


@pytest.mark.slow
def test_two_process_data_parallel_training_keeps_replicas_equal(audio_folder, tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
        str(FOLDER_RECIPE),
        str(out),
        *TINY,
        f"data.root={audio_folder}",
        "schedule.steps=4",
        "losses.adversarial_start=1",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(out / "replica0.pt", weights_only=True)
    b = torch.load(out / "replica1.pt", weights_only=True)
    for name in a:
        assert torch.equal(a[name], b[name]), f"replicas disagree on {name}"
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["samples_seen"] == 4 * 2 * 2  # steps x batch x processes
    assert len(state["rng"]) == 2
    # the replicas learnt: weights moved from their initial values
    first = load_checkpoint(out / "checkpoint.pt")["model"]
    assert all(torch.isfinite(v).all() for v in first.values() if v.is_floating_point())


@pytest.mark.slow
def test_compiled_training_runs_on_cpu(audio_folder, tmp_path):
    recipe = replace_recipe(
        tiny_recipe(audio_folder, "schedule.steps=2", "losses.adversarial=0", "losses.feature=0"),
        compile=True,
    )
    result = train(recipe, tmp_path / "run")
    assert result.step == 2
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert not any("_orig_mod" in k for k in state["model"])  # loadable without compile
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_codec_manifest_lists_a_folder_for_training(audio_folder, tmp_path):
    target = tmp_path / "lists" / "corpus.tsv"
    result = runner.invoke(app, ["manifest", str(audio_folder), "--out", str(target)])
    assert result.exit_code == 0, result.output
    assert "train" in result.output
    header, *rows = target.read_text().splitlines()
    assert header.split("\t")[:5] == ["path", "seconds", "sample_rate", "speaker", "split"]
    assert len(rows) == 12
    recipe = tiny_recipe(audio_folder, f"data.manifest={target}", "schedule.steps=1")
    assert train(recipe, tmp_path / "run").step == 1


def test_codec_manifest_of_a_missing_folder_is_a_one_line_error(tmp_path):
    result = runner.invoke(app, ["manifest", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert "not a folder" in result.output and "Traceback" not in result.output
