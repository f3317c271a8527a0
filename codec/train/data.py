"""Training data: random fixed-length crops streamed from the audio files of a manifest.

Nothing is held in memory but the file list: each item reads only the few samples of its
crop. Every item depends only on `(seed, index)`, so batches are the same with any number
of DataLoader workers and after a resume (`loader(..., start=samples_consumed)`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from itertools import count, islice

import numpy as np
import soundfile as sf
import soxr
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from codec.audio import RESAMPLE_QUALITY, iter_audio_blocks
from codec.errors import AudioError, CodecError
from codec.train.manifest import Entry, list_files

__all__ = ["ResumableSampler", "SegmentDataset", "list_files", "loader", "valid_clips"]

# Errors a damaged file can raise while being decoded.
_READ_ERRORS = (AudioError, sf.SoundFileError, RuntimeError, OSError)
# An unreadable item is replaced by the same position of the next epochs, this many times.
_SUBSTITUTE_TRIES = 8
# Samples read on each side of a crop so resampling has no edge transients in the crop.
_RESAMPLE_MARGIN_S = 0.01


class SegmentDataset(Dataset):
    """Random `[1, segment]` crops of a corpus, in a seeded order, for any global index.

    Files are cut into equal chunks of about `chunk_seconds` (each at least a segment
    long where possible); an epoch visits every chunk once in a seeded random order, so
    long files are sampled in proportion to their length. Item `index` is a crop of chunk
    `permutation(epoch)[index % len]` with `epoch = index // len`; crop offset and gain
    come from a generator seeded by `(seed, index)` alone.

    Args:
        entries: the files (see `codec.train.manifest`).
        sample_rate: rate of the crops, in Hz; files at other rates are resampled (soxr).
        segment: crop length in samples at `sample_rate`.
        chunk_seconds: length of the chunks long files are cut into.
        silence_db: a crop must be louder than this RMS level (dBFS) to be taken; of up
            to `silence_tries` random crops the first loud one is kept, else the loudest.
        silence_tries: number of crops tried per item (1 turns silence checks off).
        gain_db: range of the uniform random gain, limited so the peak stays <= 0.99.
        seed: seed of the order and of every crop.
    """

    def __init__(
        self,
        entries: list[Entry],
        sample_rate: int,
        segment: int,
        *,
        chunk_seconds: float = 30.0,
        silence_db: float = -50.0,
        silence_tries: int = 4,
        gain_db: tuple[float, float] = (-12.0, 3.0),
        seed: int = 0,
    ) -> None:
        if not entries:
            raise CodecError("no training audio files")
        if sample_rate <= 0 or segment <= 0 or chunk_seconds <= 0 or silence_tries < 1:
            raise CodecError(
                "sample_rate, segment, chunk_seconds and silence_tries must be positive"
            )
        self.entries = list(entries)
        self.sample_rate = sample_rate
        self.segment = segment
        self.silence_db = silence_db
        self.silence_tries = silence_tries
        self.gain_db = gain_db
        self.seed = seed
        self.chunks = _chunk_table(self.entries, sample_rate, segment, chunk_seconds)
        self.unreadable: set[str] = set()  # files that failed in this process
        self._order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        """Items per epoch: the number of chunks."""
        return len(self.chunks)

    @property
    def seconds(self) -> float:
        """Total duration of the corpus."""
        return sum(e.seconds for e in self.entries)

    def chunk_of(self, index: int) -> int:
        """Which chunk (row of `chunks`) item `index` is cropped from."""
        epoch, position = divmod(index, len(self))
        if self._order is None or self._order[0] != epoch:
            self._order = epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self))
        return int(self._order[1][position])

    def __getitem__(self, index: int) -> torch.Tensor:
        """Crop `index` (any non-negative integer) as a `[1, segment]` float32 tensor.

        A file that cannot be read is reported once (`warnings`, `unreadable`) and the
        item is replaced by the item one epoch later, up to a few times, then silence.
        """
        if index < 0:
            raise IndexError(f"index must be non-negative, got {index}")
        for substitute in range(index, index + _SUBSTITUTE_TRIES * len(self), len(self)):
            entry = self.entries[self.chunks[self.chunk_of(substitute), 0]]
            if str(entry.path) in self.unreadable:
                continue
            try:
                crop = self._crop(substitute)
            except _READ_ERRORS as e:
                self.unreadable.add(str(entry.path))
                warnings.warn(f"{entry.path}: unreadable, using other crops ({e})", stacklevel=2)
                continue
            return torch.from_numpy(crop)[None]
        return torch.zeros(1, self.segment)

    def _crop(self, index: int) -> np.ndarray:
        """[segment] float32: a loud-enough random crop of the item's chunk, with gain."""
        file_index, start, stop = self.chunks[self.chunk_of(index)]
        entry = self.entries[file_index]
        rng = np.random.default_rng([self.seed, 1, index])
        width = math.ceil(self.segment * entry.sample_rate / self.sample_rate)
        offsets = start + rng.integers(0, max(stop - start - width, 0) + 1, self.silence_tries)
        pad_at = int(rng.integers(0, self.segment + 1))
        gain = 10 ** (rng.uniform(*self.gain_db) / 20)
        best, best_db = None, -math.inf
        for offset in dict.fromkeys(offsets.tolist()):  # a short chunk has one offset
            crop = self._read(entry, offset, min(offset + width, int(stop)))
            level = _level_db(crop)
            if best is None or level > best_db:
                best, best_db = crop, level
            if level > self.silence_db:
                break
        if len(best) < self.segment:  # a file shorter than a segment: pad at random
            at = pad_at % (self.segment - len(best) + 1)
            best = np.pad(best, (at, self.segment - len(best) - at))
        peak = max(float(np.abs(best).max()), 1e-4)
        return (best * min(gain, 0.99 / peak)).astype(np.float32)

    def _read(self, entry: Entry, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) of a file (file-rate frames), mono at `sample_rate`."""
        rate = entry.sample_rate
        margin = 0 if rate == self.sample_rate else math.ceil(_RESAMPLE_MARGIN_S * rate)
        first = max(start - margin, 0)
        data, file_rate = sf.read(
            str(entry.path), start=first, stop=stop + margin, dtype="float32", always_2d=True
        )
        if file_rate != rate:
            raise AudioError(f"{entry.path}: sample rate {file_rate}, not the listed {rate}")
        wav = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
        if not np.isfinite(wav).all():
            raise AudioError(f"{entry.path}: contains NaN or infinite samples")
        if rate != self.sample_rate:
            wav = soxr.resample(wav, rate, self.sample_rate, quality=RESAMPLE_QUALITY)
            skip = round((start - first) * self.sample_rate / rate)
            want = round((stop - start) * self.sample_rate / rate)
            wav = wav[skip : skip + want]
        return np.ascontiguousarray(wav[: self.segment], dtype=np.float32)


def _chunk_table(
    entries: list[Entry], sample_rate: int, segment: int, chunk_seconds: float
) -> np.ndarray:
    """[N, 3] int64 rows (file index, start frame, stop frame), in file-rate frames."""
    rows = []
    for i, e in enumerate(entries):
        frames = max(round(e.seconds * e.sample_rate), 1)
        width = math.ceil(segment * e.sample_rate / sample_rate)
        n = max(round(e.seconds / chunk_seconds), 1)
        n = max(min(n, frames // width), 1)  # chunks at least a segment long
        bounds = np.linspace(0, frames, n + 1).round().astype(np.int64)
        rows += [(i, a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def _level_db(wav: np.ndarray) -> float:
    """RMS level in dBFS (-inf for an empty or all-zero crop)."""
    power = float(np.mean(np.square(wav, dtype=np.float64))) if len(wav) else 0.0
    return 10 * math.log10(power) if power > 0 else -math.inf


class ResumableSampler(Sampler[int]):
    """An endless stream of global item indices, split between ranks, resumable.

    Step k (from 0) of rank r gets `start + (k * world_size + r) * batch_size + j`,
    j < batch_size: ranks see disjoint items, and a run resumed with `start` = samples
    already consumed (by all ranks) continues exactly where it stopped.
    """

    def __init__(self, start: int, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        if start < 0 or batch_size < 1 or not 0 <= rank < world_size:
            raise CodecError(
                f"bad sampler settings: start={start}, batch_size={batch_size}, "
                f"rank={rank}, world_size={world_size}"
            )
        self.start, self.batch_size = start, batch_size
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[int]:
        for step in count():
            first = self.start + (step * self.world_size + self.rank) * self.batch_size
            yield from range(first, first + self.batch_size)


def loader(
    dataset: SegmentDataset,
    batch_size: int,
    *,
    start: int = 0,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
) -> Iterator[torch.Tensor]:
    """Endless `[B, 1, segment]` batches of `dataset` for one rank.

    The trainer resumes by passing `start` = samples already consumed by all ranks
    (`steps * batch_size * world_size`). Workers are persistent and prefetch a few
    batches; batches do not depend on `num_workers`.
    """
    sampler = ResumableSampler(start, batch_size, rank, world_size)
    return iter(
        DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            prefetch_factor=4 if num_workers > 0 else None,
            # Its own generator: creating the iterator must not draw from the global
            # RNG, or a resumed run would continue with different random numbers.
            generator=torch.Generator(),
        )
    )


def valid_clips(
    entries: list[Entry], sample_rate: int, n_clips: int, seconds: float
) -> list[np.ndarray]:
    """A fixed set of up to `n_clips` validation clips of up to `seconds` each.

    Files are taken in path order, one speaker after another (round robin over the
    speakers); each clip is the loudest of the first few `seconds`-long windows of its
    file (a shorter file is taken whole). Unreadable files are skipped.

    Returns:
        clips: list of [T] float32 arrays at `sample_rate`.
    """
    by_speaker: dict[str, list[Entry]] = {}
    for e in sorted(entries, key=lambda e: e.path):
        by_speaker.setdefault(e.speaker, []).append(e)
    queues = [by_speaker[s] for s in sorted(by_speaker)]
    ordered = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]
    clips = []
    for entry in ordered:
        if len(clips) == n_clips:
            break
        try:
            clips.append(_loudest_window(entry, sample_rate, seconds))
        except AudioError:
            continue
    return clips


def _loudest_window(entry: Entry, sample_rate: int, seconds: float, windows: int = 4) -> np.ndarray:
    """[T] float32: the loudest of the first `windows` windows of `seconds` of a file."""
    blocks = list(islice(iter_audio_blocks(entry.path, sample_rate, seconds), windows))
    full = [b for b in blocks if len(b) == len(blocks[0])] if blocks else []
    if not full:
        raise AudioError(f"{entry.path}: empty (no audio frames)")
    return max(full, key=_level_db)
