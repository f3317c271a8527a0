"""`analyze`: BS.1534-3 post-screening, means with t-based 95% CIs, summary files, box plot."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from codec.commands.mushra import mushra_app
from codec.eval.mushra import MushraError, TestDesign, analyze
from codec.eval.mushra.analyze import confidence_interval
from codec.eval.mushra.results import open_session, submit

ITEMS = tuple(f"item{k}" for k in range(7))
LISTENERS = ("ann", "ben", "cat", "dan")
T_975_DF2 = 4.302652729911275  # Student's t, 97.5% quantile, 2 and 20 degrees of freedom
T_975_DF20 = 2.085963447265837


def score(listener: str, item: str, condition: str) -> int:
    """ann misses the hidden reference on 1 of 7 items (kept), dan on 2 (excluded)."""
    k, i = LISTENERS.index(listener), ITEMS.index(item)
    if condition == "reference":
        misses = {"ann": {"item3"}, "dan": {"item0", "item5"}}.get(listener, set())
        return 80 if item in misses else 100
    if condition == "ours":
        return 0 if listener == "dan" else 50 + 10 * k + i
    return {"anchor_7k": 40, "anchor_3k5": 20}[condition]


def rated_test(root: Path, listeners=LISTENERS) -> Path:
    design = TestDesign(ITEMS, ("ours",), sample_rate=16000, seed=3, loudness_lufs=-23.0)
    design.save(root)
    for listener in listeners:
        record = open_session(root, design, listener)
        for index, trial in enumerate(record["plan"]):
            scores = {
                cid: score(listener, trial["item"], name) for cid, name in trial["conditions"]
            }
            submit(root, design, listener, trial=index, scores=scores, reference_played=True)
    return root


@pytest.fixture(scope="module")
def _rated(tmp_path_factory) -> Path:
    return rated_test(tmp_path_factory.mktemp("rated"))


@pytest.fixture
def rated(_rated, tmp_path) -> Path:
    """A test rated by ann, ben, cat (kept) and dan (excluded): a copy of its own."""
    return Path(shutil.copytree(_rated, tmp_path / "test"))


def stats_of(analysis, condition, item):
    return next(s for s in analysis.stats if (s.condition, s.item) == (condition, item))


def test_post_screening_drops_listeners_missing_the_reference_on_over_15_percent(rated):
    analysis = analyze(rated)
    assert analysis.included == ["ann", "ben", "cat"]
    dan = next(s for s in analysis.listeners if s.listener == "dan")
    assert (dan.trials, dan.reference_misses, dan.excluded) == (7, 2, True)
    screening = json.loads(analysis.summary_json.read_text())["post_screening"]["listeners"]
    assert [s["listener"] for s in screening if s["excluded"]] == ["dan"]


def test_mean_and_confidence_interval_match_a_hand_computation(rated):
    analysis = analyze(rated)
    first = stats_of(analysis, "ours", "item0")  # ann, ben, cat: 50, 60, 70 (dan's 0 dropped)
    assert (first.n, first.mean) == (3, 60.0)
    assert first.ci95 == pytest.approx(T_975_DF2 * 10 / math.sqrt(3))
    pooled = [50 + 10 * k + i for k in range(3) for i in range(7)]
    overall = stats_of(analysis, "ours", "all")
    assert (overall.n, overall.mean) == (21, pytest.approx(np.mean(pooled)))
    assert overall.ci95 == pytest.approx(T_975_DF20 * np.std(pooled, ddof=1) / math.sqrt(21))
    assert stats_of(analysis, "anchor_3k5", "all").ci95 == 0.0


def test_summary_files_and_box_plot_are_written(rated, tmp_path):
    pytest.importorskip("matplotlib")
    analysis = analyze(rated, tmp_path / "report")
    assert analysis.boxplot == tmp_path / "report" / "boxplot.png"
    assert analysis.boxplot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(analysis.summary_csv.open()))
    assert len(rows) == 4 * (1 + len(ITEMS))  # conditions x (all items + each item)
    assert rows[0]["condition"] == "reference" and rows[0]["item"] == "all"
    json.loads(analysis.summary_json.read_text())  # valid JSON: no NaN


def test_single_score_has_no_interval():
    assert confidence_interval([70]) == (70.0, pytest.approx(math.nan, nan_ok=True))


def test_no_results_or_no_listener_left_are_clear_errors(tmp_path):
    design = TestDesign(ITEMS, ("ours",), sample_rate=16000, seed=3, loudness_lufs=-23.0)
    design.save(tmp_path)
    with pytest.raises(MushraError, match="no listener has submitted a trial yet"):
        analyze(tmp_path)
    with pytest.raises(MushraError, match=r"every listener failed post-screening: dan \(2 of 7"):
        analyze(rated_test(tmp_path, listeners=["dan"]))
    with pytest.raises(MushraError, match="not a MUSHRA test"):
        analyze(tmp_path / "nowhere")


def test_cli_analyze_prints_screening_and_scores(rated):
    app = typer.Typer()
    app.add_typer(mushra_app, name="mushra")
    result = CliRunner().invoke(app, ["mushra", "analyze", str(rated)])
    assert result.exit_code == 0, result.output
    assert "dan: 7 trials, hidden reference < 90 on 2 -> excluded" in result.output
    assert "60.0 │ ± 24.8" in result.output  # ours on item0
    assert (rated / "analysis" / "summary.csv").is_file()
