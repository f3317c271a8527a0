"""Post-screening and statistics of a MUSHRA test's results (ITU-R BS.1534-3, sections 4.1.2, 9).

A listener is excluded when they rated the hidden reference below 90 for more than 15%
of the items they rated. For the others, every condition gets its mean score and 95%
confidence interval (Student's t) per item (over listeners) and over all items (over
every listener and item), written to `summary.csv` and `summary.json` with a box plot.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.special

from codec.atomic import atomic_path, write_bytes_atomic
from codec.eval.mushra.design import REFERENCE, MushraError, TestDesign, load_design
from codec.eval.mushra.results import load_all

REFERENCE_MIN_SCORE = 90
MAX_REFERENCE_MISSES = 0.15  # fraction of items
ALL_ITEMS = "all"


@dataclass(frozen=True)
class ListenerScreening:
    """How one listener fared in post-screening."""

    listener: str
    trials: int
    reference_misses: int  # items whose hidden reference was rated below 90

    @property
    def excluded(self) -> bool:
        return self.reference_misses > MAX_REFERENCE_MISSES * self.trials


@dataclass(frozen=True)
class ConditionStats:
    """Scores of one condition on one item (or on `ALL_ITEMS`).

    Args:
        ci95: half width of the 95% confidence interval; NaN with fewer than 2 scores.
    """

    condition: str
    item: str
    n: int
    mean: float
    ci95: float


@dataclass(frozen=True)
class Analysis:
    """What `analyze` found and wrote."""

    listeners: list[ListenerScreening]
    stats: list[ConditionStats]
    summary_csv: Path
    summary_json: Path
    boxplot: Path | None  # None when matplotlib is not installed

    @property
    def included(self) -> list[str]:
        return [s.listener for s in self.listeners if not s.excluded]


def analyze(test_dir: Path, out_dir: Path | None = None) -> Analysis:
    """Screen listeners, compute statistics, write them and a box plot to `out_dir`.

    `out_dir` defaults to `test_dir/analysis`.
    """
    design = load_design(test_dir)
    records = [r for r in load_all(test_dir, design) if r["trials"]]
    if not records:
        raise MushraError(f"{test_dir}: no listener has submitted a trial yet")
    screening = [post_screen(r) for r in records]
    kept = {s.listener for s in screening if not s.excluded}
    if not kept:
        raise MushraError(f"every listener failed post-screening: {_describe(screening)}")
    scores = _scores([r for r in records if r["listener"] in kept])
    stats = summarise(scores, design)
    out = Path(out_dir) if out_dir is not None else Path(test_dir, "analysis")
    boxplot = out / "boxplot.png" if importlib.util.find_spec("matplotlib") else None
    analysis = Analysis(screening, stats, out / "summary.csv", out / "summary.json", boxplot)
    write_bytes_atomic(analysis.summary_csv, _csv(stats).encode())
    write_bytes_atomic(analysis.summary_json, _json(analysis, design).encode())
    if boxplot is not None:
        _boxplot(scores, design, analysis, boxplot)
    return analysis


def post_screen(record: dict[str, Any]) -> ListenerScreening:
    """Count the items where a listener rated the hidden reference below 90."""
    trials = record["trials"]
    misses = sum(t["scores"][REFERENCE] < REFERENCE_MIN_SCORE for t in trials)
    return ListenerScreening(record["listener"], len(trials), misses)


def confidence_interval(scores: list[float] | np.ndarray) -> tuple[float, float]:
    """Mean and half width of the 95% confidence interval, `t(0.975, n-1) * s / sqrt(n)`."""
    x = np.asarray(scores, dtype=np.float64)
    if x.size < 2:
        return float(x.mean()) if x.size else math.nan, math.nan
    half = scipy.special.stdtrit(x.size - 1, 0.975) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean()), float(half)


def summarise(scores: dict[tuple[str, str], list[int]], design: TestDesign) -> list[ConditionStats]:
    """Statistics of every condition over all items, then of every condition per item.

    Args:
        scores: (condition, item) -> the scores of the included listeners.
    """
    stats = []
    for condition in design.conditions:
        pooled = [s for item in design.items for s in scores.get((condition, item), [])]
        stats.append(
            ConditionStats(condition, ALL_ITEMS, len(pooled), *confidence_interval(pooled))
        )
    for item in design.items:
        for condition in design.conditions:
            these = scores.get((condition, item), [])
            stats.append(ConditionStats(condition, item, len(these), *confidence_interval(these)))
    return [s for s in stats if s.n > 0]


def _scores(records: list[dict[str, Any]]) -> dict[tuple[str, str], list[int]]:
    scores: dict[tuple[str, str], list[int]] = {}
    for record in records:
        for trial in record["trials"]:
            for condition, score in trial["scores"].items():
                scores.setdefault((condition, trial["item"]), []).append(score)
    return scores


def _describe(screening: list[ListenerScreening]) -> str:
    return ", ".join(f"{s.listener} ({s.reference_misses} of {s.trials} items)" for s in screening)


def _csv(stats: list[ConditionStats]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["condition", "item", "n", "mean", "ci95", "ci95_low", "ci95_high"])
    for s in stats:
        low, high = s.mean - s.ci95, s.mean + s.ci95
        writer.writerow([s.condition, s.item, s.n, *(_fmt(v) for v in (s.mean, s.ci95, low, high))])
    return buffer.getvalue()


def _json(analysis: Analysis, design: TestDesign) -> str:
    body = {
        "test": design.fingerprint(),
        "post_screening": {
            "rule": f"exclude a listener rating the hidden reference below {REFERENCE_MIN_SCORE} "
            f"for more than {MAX_REFERENCE_MISSES:.0%} of items",
            "listeners": [asdict(s) | {"excluded": s.excluded} for s in analysis.listeners],
        },
        "stats": [
            {
                k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(s).items()
            }
            for s in analysis.stats
        ],
    }
    return json.dumps(body, indent=2) + "\n"


def _fmt(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.2f}"


def _boxplot(
    scores: dict[tuple[str, str], list[int]], design: TestDesign, analysis: Analysis, path: Path
) -> None:
    """Box per condition over all items, mean and 95% CI drawn beside it, grade bands."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    conditions = [c for c in design.conditions if any(scores.get((c, i)) for i in design.items)]
    data = [[s for i in design.items for s in scores.get((c, i), [])] for c in conditions]
    overall = {s.condition: s for s in analysis.stats if s.item == ALL_ITEMS}
    fig = Figure(figsize=(1.2 * len(conditions) + 2.5, 4.8), layout="constrained")
    ax = fig.subplots()
    for y in (20, 40, 60, 80):
        ax.axhline(y, color="0.85", linewidth=0.8, zorder=0)
    ax.boxplot(data, tick_labels=conditions, widths=0.45)
    x = np.arange(1, len(conditions) + 1) + 0.32
    means = [overall[c].mean for c in conditions]
    cis = [0 if math.isnan(overall[c].ci95) else overall[c].ci95 for c in conditions]
    ax.errorbar(x, means, yerr=cis, fmt="D", color="tab:blue", capsize=3, label="mean, 95% CI")
    ax.set_ylim(-2, 102)  # room for the markers of scores at 0 and 100
    grades = ax.secondary_yaxis("right")
    grades.set_yticks([10, 30, 50, 70, 90], ["Bad", "Poor", "Fair", "Good", "Excellent"])
    grades.tick_params(length=0)
    ax.set_ylabel("score")
    ax.set_title(f"MUSHRA: {len(analysis.included)} listeners, {len(design.items)} items")
    ax.tick_params(axis="x", labelrotation=30)
    ax.legend(loc="lower left", fontsize="small")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
