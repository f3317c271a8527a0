"""Training data: random fixed-length crops from a list of audio files held in memory.

A small corpus (under an hour or two of 16 kHz speech, a few hundred MB as float32) fits
in RAM, which keeps the first recipe simple and the crops cheap.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from codec.audio import find_audio_files, load_audio
from codec.errors import AudioError, CodecError


def list_files(root: str | Path, split: str | None = None) -> list[Path]:
    """Audio files of a corpus: from `root/manifest.tsv` (columns `path`, `split`) when
    present, filtered by `split`; otherwise every audio file under `root`."""
    root = Path(root)
    manifest = root / "manifest.tsv"
    if not manifest.is_file():
        return find_audio_files(root)
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [root / r["path"] for r in rows if split is None or r.get("split") == split]


class RandomCrops:
    """An endless stream of `[B, 1, segment]` batches of random crops.

    Files are drawn in proportion to their length; files shorter than a segment are
    zero-padded at a random offset. Each crop gets a random gain in `gain_db` so the
    model sees speech at many levels. Unreadable files are skipped and listed in
    `skipped`. Deterministic for a given `seed`.
    """

    def __init__(
        self,
        files: list[Path],
        sample_rate: int,
        segment: int,
        batch_size: int,
        *,
        gain_db: tuple[float, float] = (-12.0, 3.0),
        seed: int = 0,
    ) -> None:
        self.waves, self.skipped = [], []
        for path in files:
            try:
                self.waves.append(load_audio(path, sample_rate))
            except AudioError as e:  # one bad file must not stop a long run
                self.skipped.append(str(e))
        if not self.waves:
            raise CodecError("no readable training audio files found")
        lengths = np.array([len(w) for w in self.waves], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        self.segment = segment
        self.batch_size = batch_size
        self.gain_db = gain_db
        self.rng = np.random.default_rng(seed)

    @property
    def seconds(self) -> float:
        return sum(len(w) for w in self.waves)

    def crop(self) -> np.ndarray:
        wave = self.waves[self.rng.choice(len(self.waves), p=self.weights)]
        out = np.zeros(self.segment, dtype=np.float32)
        if len(wave) >= self.segment:
            start = self.rng.integers(0, len(wave) - self.segment + 1)
            out[:] = wave[start : start + self.segment]
        else:
            start = self.rng.integers(0, self.segment - len(wave) + 1)
            out[start : start + len(wave)] = wave
        peak = max(float(np.abs(out).max()), 1e-4)
        gain = 10 ** (self.rng.uniform(*self.gain_db) / 20)
        return out * min(gain, 0.99 / peak)

    def __iter__(self) -> Iterator[torch.Tensor]:
        while True:
            batch = np.stack([self.crop() for _ in range(self.batch_size)])
            yield torch.from_numpy(batch)[:, None, :]
