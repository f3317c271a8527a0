"""`prepare`: stimuli per item and condition, anchors, loudness matching, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from codec.audio import load_audio, save_audio
from codec.commands.mushra import mushra_app
from codec.eval.mushra import MushraError, listener_plan, load_design, prepare
from codec.eval.mushra.loudness import integrated_loudness
from codec.eval.mushra.prepare import lowpass
from tests.eval.mushra.conftest import RATE, make_inputs

CONDITIONS = {"reference", "ours", "anchor_7k", "anchor_3k5"}


def test_every_item_gets_every_condition_at_the_reference_length(tmp_path):
    refs, systems = make_inputs(tmp_path, items=2)
    design = prepare(refs, systems, tmp_path / "test")
    assert design.items == ("clip0", "clip1")
    assert set(design.conditions) == CONDITIONS
    for item in design.items:
        for condition in design.conditions:
            wav = load_audio(design.stimulus(tmp_path / "test", item, condition), RATE)
            assert len(wav) == RATE  # 1 s, like the reference
    assert json.loads((tmp_path / "test" / "test.json").read_text())["systems"] == ["ours"]


def test_stimuli_are_loudness_matched(tmp_path):
    refs, systems = make_inputs(tmp_path, items=2)
    save_audio(systems["ours"] / "clip1.wav", 0.1 * load_audio(refs / "clip1.wav", RATE), RATE)
    design = prepare(refs, systems, tmp_path / "test", loudness_lufs=-26.0)
    assert design.loudness_lufs == -26.0
    for item in design.items:
        for condition in design.conditions:
            wav = load_audio(design.stimulus(tmp_path / "test", item, condition), RATE)
            assert integrated_loudness(wav, RATE) == pytest.approx(-26.0, abs=0.2)


def test_loud_target_is_lowered_rather_than_clipping(tmp_path):
    refs, systems = make_inputs(tmp_path, items=1)
    design = prepare(refs, systems, tmp_path / "test", loudness_lufs=0.0)
    assert design.loudness_lufs < -3
    wav = load_audio(design.stimulus(tmp_path / "test", "clip0", "reference"), RATE)
    assert np.max(np.abs(wav)) <= 10 ** (-1 / 20) + 1e-3


@pytest.mark.parametrize("cutoff", [3500.0, 7000.0])
def test_anchors_hold_no_energy_above_their_cutoff(cutoff):
    noise = np.random.default_rng(0).standard_normal(2 * RATE).astype(np.float32)
    anchor = lowpass(noise, RATE, cutoff)
    power = np.abs(np.fft.rfft(anchor * np.hanning(anchor.size))) ** 2
    freqs = np.fft.rfftfreq(anchor.size, 1 / RATE)
    assert power[freqs > cutoff].sum() < 1e-6 * power.sum()
    original = np.abs(np.fft.rfft(noise * np.hanning(noise.size))) ** 2
    pass_band = freqs < cutoff - 300
    assert power[pass_band].sum() == pytest.approx(original[pass_band].sum(), rel=0.02)


def test_delayed_system_clip_is_aligned_to_the_reference(tmp_path):
    refs, systems = make_inputs(tmp_path, items=1)
    ref = load_audio(refs / "clip0.wav", RATE)
    save_audio(systems["ours"] / "clip0.wav", np.concatenate([np.zeros(80), ref]), RATE)
    design = prepare(refs, systems, tmp_path / "test")
    assert design.delays_ms["ours"]["clip0"] == pytest.approx(5.0)
    ours = load_audio(design.stimulus(tmp_path / "test", "clip0", "ours"), RATE)
    reference = load_audio(design.stimulus(tmp_path / "test", "clip0", "reference"), RATE)
    np.testing.assert_allclose(ours, reference, atol=2e-3)


def test_missing_system_clip_names_the_file(tmp_path):
    refs, systems = make_inputs(tmp_path, items=2)
    (systems["ours"] / "clip1.wav").unlink()
    with pytest.raises(MushraError, match=r"system 'ours' lacks item 'clip1'.*ours/clip1\.wav"):
        prepare(refs, systems, tmp_path / "test")


def test_clip_of_another_length_is_refused(tmp_path):
    refs, systems = make_inputs(tmp_path, items=1)
    save_audio(systems["ours"] / "clip0.wav", np.zeros(2 * RATE) + 0.1, RATE)
    with pytest.raises(MushraError, match=r"'clip0': 2\.00 s long but the reference is 1\.00 s"):
        prepare(refs, systems, tmp_path / "test")


@pytest.mark.parametrize("name", ["reference", "anchor_7k", "bad/name", ""])
def test_reserved_or_odd_system_names_are_refused(tmp_path, name):
    refs, systems = make_inputs(tmp_path, items=1)
    with pytest.raises(MushraError, match="system name"):
        prepare(refs, {name: systems["ours"]}, tmp_path / "test")


def test_folder_with_results_is_not_overwritten(mushra_dir, tmp_path):
    (mushra_dir / "results").mkdir()
    (mushra_dir / "results" / "anna.json").write_text("{}")
    with pytest.raises(MushraError, match="already holds listeners' results"):
        prepare(*make_inputs(tmp_path / "again"), mushra_dir)


def test_listeners_get_blinded_shuffled_plans(mushra_dir):
    design = load_design(mushra_dir)
    anna, bob = listener_plan(design, "anna"), listener_plan(design, "bob")
    assert listener_plan(design, "anna") == anna  # the same listener always gets the same plan
    assert anna != bob
    for trial in anna:
        assert {name for _, name in trial.conditions} == CONDITIONS
        ids = [cid for cid, _ in trial.conditions]
        assert all(len(cid) == 10 and not any(n in cid for n in CONDITIONS) for cid in ids)
    orders = {tuple(n for _, n in t.conditions) for t in anna + bob}
    assert len(orders) > 1  # conditions are shuffled per trial


def test_cli_prepare_and_its_errors(tmp_path):
    app = typer.Typer()
    app.add_typer(mushra_app, name="mushra")
    refs, systems = make_inputs(tmp_path, items=1)
    runner = CliRunner()
    args = ["mushra", "prepare", str(refs), "-s", f"ours={systems['ours']}", "-o", tmp_path / "t"]
    ok = runner.invoke(app, [str(a) for a in args])
    assert ok.exit_code == 0, ok.output
    assert "1 items x 4 conditions at 16000 Hz" in ok.output
    bad = runner.invoke(app, ["mushra", "prepare", str(refs), "-s", "ours", "-o", "x"])
    assert bad.exit_code == 1
    assert "--system expects NAME=DIR, got 'ours'" in bad.output
    assert "Traceback" not in bad.output
