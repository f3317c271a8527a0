"""A tiny speech16k-layout corpus for the recipe scripts' tests."""

from __future__ import annotations

import csv
from pathlib import Path

import soundfile as sf

from tests.conftest import tone


def speaker_corpus(root: Path, train_per_speaker: int = 4) -> Path:
    """`root/` with a `manifest.tsv`: speakers a and b, `train_per_speaker` train
    utterances of 2 s each and one valid utterance (16 kHz FLAC)."""
    rows = [("path", "split", "speaker", "seconds")]
    for speaker in ("a", "b"):
        for i in range(train_per_speaker + 1):
            split = "valid" if i == train_per_speaker else "train"
            path = f"{split}/{speaker}/u{i}.flac"
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / path, tone(2.0, seed=i), 16000)
            rows.append((path, split, speaker, "2.0"))
    with open(root / "manifest.tsv", "w", newline="") as f:
        csv.writer(f, delimiter="\t", lineterminator="\n").writerows(rows)
    return root
