"""Listeners' results: one JSON file per listener, rewritten atomically after every trial.

`results/<listener>.json` holds the listener's plan (the opaque ids of every trial and
the conditions behind them) and every submitted trial, scores keyed by condition name.
Since the file is replaced (temporary file, fsync, rename) after each trial, a reload
or a crash of the server loses at most the trial being rated.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from codec.atomic import write_bytes_atomic
from codec.eval.mushra.design import (
    REFERENCE,
    MushraError,
    TestDesign,
    Trial,
    check_listener,
    listener_plan,
)

FORMAT = "codec-mushra-results"
VERSION = 1
REFERENCE_ID = "reference"  # the open (labelled) reference's id in audio URLs


class SubmissionError(MushraError):
    """A submitted trial is invalid: unknown, incomplete, out of range or already saved."""


class DuplicateTrialError(SubmissionError):
    """The trial was already submitted; scores are never overwritten."""


def results_path(test_dir: Path, listener: str) -> Path:
    return Path(test_dir, "results", f"{check_listener(listener)}.json")


def open_session(test_dir: Path, design: TestDesign, listener: str) -> dict[str, Any]:
    """The listener's record, created with a fresh plan on the first visit."""
    path = results_path(test_dir, listener)
    if path.exists():
        return load_record(path, design)
    plan = listener_plan(design, listener)
    record = {
        "format": FORMAT,
        "version": VERSION,
        "listener": listener,
        "test": design.fingerprint(),
        "started": _now(),
        "plan": [{"item": t.item, "conditions": [list(c) for c in t.conditions]} for t in plan],
        "trials": [],
    }
    _write(path, record)
    return record


def submit(
    test_dir: Path,
    design: TestDesign,
    listener: str,
    trial: object,
    scores: object,
    reference_played: object,
) -> dict[str, Any]:
    """Validate one trial's scores (by opaque id), save them by condition name, return the record.

    Every condition of the trial must be rated with an integer from 0 to 100, and the
    reference must have been played.
    """
    path = results_path(test_dir, listener)
    if not path.exists():
        raise SubmissionError(f"no session for listener {listener!r}; start one first")
    record = load_record(path, design)
    plan = plan_of(record)
    if not isinstance(trial, int) or isinstance(trial, bool) or not 0 <= trial < len(plan):
        raise SubmissionError(f"trial must be an integer from 0 to {len(plan) - 1}")
    if trial in done_trials(record):
        raise DuplicateTrialError(f"trial {trial + 1} was already submitted")
    if reference_played is not True:
        raise SubmissionError("listen to the reference before submitting")
    by_name = _scores_by_condition(plan[trial], scores)
    record["trials"].append(
        {"trial": trial, "item": plan[trial].item, "scores": by_name, "submitted": _now()}
    )
    _write(path, record)
    return record


def public_view(record: dict[str, Any]) -> dict[str, Any]:
    """What the listener's page sees: ids per trial and the trials done; no names."""
    return {
        "listener": record["listener"],
        "trials": [{"conditions": [cid for cid, _ in t.conditions]} for t in plan_of(record)],
        "done": sorted(done_trials(record)),
    }


def stimulus_of(record: dict[str, Any], trial: int, cid: str) -> tuple[str, str] | None:
    """(item, condition) behind an audio URL's trial and id, or None if there is none."""
    plan = plan_of(record)
    if not 0 <= trial < len(plan):
        return None
    condition = REFERENCE if cid == REFERENCE_ID else plan[trial].condition_of(cid)
    return None if condition is None else (plan[trial].item, condition)


def plan_of(record: dict[str, Any]) -> list[Trial]:
    return [Trial(t["item"], tuple((c, n) for c, n in t["conditions"])) for t in record["plan"]]


def done_trials(record: dict[str, Any]) -> set[int]:
    return {t["trial"] for t in record["trials"]}


def load_record(path: Path, design: TestDesign) -> dict[str, Any]:
    """Read one listener's file; raises `MushraError` if it is corrupt or of another test."""
    try:
        record = json.loads(Path(path).read_text())
        if record.get("format") != FORMAT or record.get("version") != VERSION:
            raise ValueError("unknown format or version")
        plan_of(record)  # raises on a malformed plan
        done_trials(record)  # raises on malformed trials
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise MushraError(f"{path}: not a valid MUSHRA results file ({e})") from e
    if record.get("test") != design.fingerprint():
        raise MushraError(f"{path}: results of a different test (test.json changed since)")
    return record


def load_all(test_dir: Path, design: TestDesign) -> list[dict[str, Any]]:
    """Every listener's record in `test_dir/results`, sorted by listener name."""
    paths = sorted(p for p in Path(test_dir, "results").glob("*.json") if p.name[0] != ".")
    return [load_record(p, design) for p in paths]


def _scores_by_condition(trial: Trial, scores: object) -> dict[str, int]:
    ids = [cid for cid, _ in trial.conditions]
    if not isinstance(scores, dict) or set(scores) != set(ids):
        raise SubmissionError(f"scores must rate exactly the {len(ids)} conditions of the trial")
    for value in scores.values():
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
            raise SubmissionError(f"every score must be an integer from 0 to 100, got {value!r}")
    return {name: scores[cid] for cid, name in trial.conditions}


def _write(path: Path, record: dict[str, Any]) -> None:
    write_bytes_atomic(path, (json.dumps(record, indent=1) + "\n").encode())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
