"""A prepared MUSHRA test (`test.json`) and each listener's blinded, randomised plan.

A test folder holds `test.json`, the stimuli `stimuli/<item>/<condition>.wav` and, once
listeners start, `results/<listener>.json`. Conditions are the hidden reference, the two
low-pass anchors of ITU-R BS.1534-3 and the systems under test. Listeners never see a
condition's name: each trial gives every condition an opaque id drawn for that listener.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from codec.atomic import write_bytes_atomic
from codec.errors import CodecError

REFERENCE = "reference"
ANCHOR_LOW = "anchor_3k5"  # BS.1534-3 low anchor: low-pass at 3.5 kHz
ANCHOR_MID = "anchor_7k"  # BS.1534-3 mid anchor: low-pass at 7 kHz
ANCHORS = {ANCHOR_LOW: 3500.0, ANCHOR_MID: 7000.0}
RESERVED = (REFERENCE, *ANCHORS)

FORMAT = "codec-mushra-test"
VERSION = 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
_LISTENER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")


class MushraError(CodecError):
    """A MUSHRA test folder, its inputs or a listener's submission is invalid."""


@dataclass(frozen=True)
class TestDesign:
    """What `test.json` holds: the items, the conditions and how the stimuli were made.

    Args:
        items: item names, the reference clips' relative paths without extension.
        systems: names of the systems under test, in the order given to `prepare`.
        sample_rate: rate of every stimulus, in Hz.
        seed: base of every listener's random order.
        loudness_lufs: integrated loudness (ITU-R BS.1770) of every stimulus.
        delays_ms: per system and item, the delay removed from the system's clip.
    """

    __test__ = False  # not a pytest test class, despite the name

    items: tuple[str, ...]
    systems: tuple[str, ...]
    sample_rate: int
    seed: int
    loudness_lufs: float
    delays_ms: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def conditions(self) -> tuple[str, ...]:
        """Every condition of every trial: hidden reference, systems, anchors."""
        return (REFERENCE, *self.systems, ANCHOR_MID, ANCHOR_LOW)

    def stimulus(self, test_dir: Path, item: str, condition: str) -> Path:
        """Path of one stimulus inside the test folder."""
        return Path(test_dir, "stimuli", *item.split("/"), f"{condition}.wav")

    def fingerprint(self) -> str:
        """Short hash that ties a listener's results to this exact test."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def to_json(self) -> str:
        body = {"format": FORMAT, "version": VERSION, **asdict(self)}
        body["conditions"] = list(self.conditions)
        return json.dumps(body, indent=2) + "\n"

    def save(self, test_dir: Path) -> None:
        write_bytes_atomic(Path(test_dir, "test.json"), self.to_json().encode())


@dataclass(frozen=True)
class Trial:
    """One trial as a listener meets it: an item and its conditions in display order.

    Args:
        item: the item's name.
        conditions: `(opaque id, condition name)` pairs, shuffled for this listener.
    """

    item: str
    conditions: tuple[tuple[str, str], ...]

    def condition_of(self, cid: str) -> str | None:
        """The condition behind an opaque id, or None if the id is not in this trial."""
        return dict(self.conditions).get(cid)


def load_design(test_dir: Path) -> TestDesign:
    """Read `test_dir/test.json`; raises `MushraError` when it is missing or invalid."""
    path = Path(test_dir, "test.json")
    if not path.is_file():
        raise MushraError(f"{test_dir}: not a MUSHRA test (no test.json); run `mushra prepare`")
    try:
        body = json.loads(path.read_text())
        if body.get("format") != FORMAT or body.get("version") != VERSION:
            raise ValueError("unknown format or version")
        return TestDesign(
            items=tuple(body["items"]),
            systems=tuple(body["systems"]),
            sample_rate=int(body["sample_rate"]),
            seed=int(body["seed"]),
            loudness_lufs=float(body["loudness_lufs"]),
            delays_ms=body.get("delays_ms", {}),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise MushraError(f"{path}: not a valid MUSHRA test file ({e})") from e


def check_name(kind: str, name: str) -> str:
    """Return `name` if it is a valid system name; raise `MushraError` otherwise."""
    if not _NAME.fullmatch(name):
        raise MushraError(
            f"{kind} name {name!r} must be 1-40 letters, digits, '.', '-' or '_', "
            "starting with a letter or digit"
        )
    if name in RESERVED:
        raise MushraError(f"{kind} name {name!r} is reserved (reserved: {', '.join(RESERVED)})")
    return name


def check_listener(name: object) -> str:
    """Return `name` if it is a valid listener name (it becomes a file name)."""
    if not isinstance(name, str) or not _LISTENER.fullmatch(name):
        raise MushraError(
            "listener name must be 1-40 letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def listener_plan(design: TestDesign, listener: str) -> list[Trial]:
    """The trials of one listener: items and conditions shuffled, ids drawn at random.

    The order depends only on the test's seed and the listener's name, so the same
    listener always gets the same plan and two listeners (almost always) different ones.
    """
    digest = hashlib.sha256(f"{design.seed}\0{check_listener(listener)}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    items = list(design.items)
    rng.shuffle(items)
    trials = []
    for item in items:
        conditions = list(design.conditions)
        rng.shuffle(conditions)
        ids: list[str] = []
        while len(set(ids)) < len(conditions):
            ids = [f"{rng.getrandbits(40):010x}" for _ in conditions]
        trials.append(Trial(item, tuple(zip(ids, conditions, strict=True))))
    return trials
