"""Training crops: deterministic per (seed, index), chunked, silence-aware, resumable."""

from __future__ import annotations

import pickle
import warnings
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.train.data import ResumableSampler, SegmentDataset, loader, valid_clips
from codec.train.manifest import Entry

SR = 16000


def write(path: Path, wav: np.ndarray, sample_rate: int = SR, speaker: str = "") -> Entry:
    """Write float samples exactly (32-bit float WAV) and return their entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wav.astype(np.float32), sample_rate, subtype="FLOAT")
    return Entry(path, len(wav) / sample_rate, sample_rate, speaker)


def noise(seconds: float, seed: int, amplitude: float = 0.1, sample_rate: int = SR) -> np.ndarray:
    return amplitude * np.random.default_rng(seed).standard_normal(round(seconds * sample_rate))


def sine(freq: float, seconds: float, amplitude: float = 0.3, sample_rate: int = SR) -> np.ndarray:
    return amplitude * np.sin(
        2 * np.pi * freq * np.arange(round(seconds * sample_rate)) / sample_rate
    )


@pytest.fixture
def entries(tmp_path: Path) -> list[Entry]:
    return [
        write(tmp_path / f"s{i}.wav", noise(0.3 + 0.2 * i, seed=i), speaker=f"s{i}")
        for i in range(4)
    ]


def test_items_are_float_crops_that_depend_only_on_seed_and_index(entries):
    dataset = SegmentDataset(entries, SR, 1600, seed=3)
    crop = dataset[5]
    assert crop.shape == (1, 1600) and crop.dtype == torch.float32
    assert crop.abs().max() <= 0.99
    again = SegmentDataset(entries, SR, 1600, seed=3)
    far = 1000 * len(dataset) + 7  # the trainer's ever-growing sample counter
    assert torch.equal(again[far], dataset[far])
    assert torch.equal(again[5], crop)  # also after visiting another epoch
    assert not torch.equal(SegmentDataset(entries, SR, 1600, seed=4)[5], crop)
    assert not torch.equal(dataset[6], crop)


def test_each_epoch_visits_every_chunk_once_in_a_new_order(entries):
    dataset = SegmentDataset(entries, SR, 1600, chunk_seconds=0.25)
    n = len(dataset)
    orders = [[dataset.chunk_of(e * n + i) for i in range(n)] for e in range(3)]
    assert all(sorted(order) == list(range(n)) for order in orders)
    assert orders[0] != orders[1] != orders[2]


def test_long_files_are_cut_into_equal_chunks_of_about_chunk_seconds(tmp_path):
    long = Entry(tmp_path / "book.flac", 100.0, 16000)
    short = Entry(tmp_path / "word.flac", 0.01, 44100)
    dataset = SegmentDataset([long, short], SR, 16000, chunk_seconds=30.0)
    assert len(dataset) == 4  # sampled in proportion: 3 items of the book per epoch
    assert dataset.chunks.tolist() == [
        [0, 0, 533333],
        [0, 533333, 1066667],
        [0, 1066667, 1600000],
        [1, 0, 441],
    ]
    assert dataset.seconds == pytest.approx(100.01)
    tiny_chunks = SegmentDataset([long], SR, 16000 * 40, chunk_seconds=30.0)
    assert len(tiny_chunks) == 2  # chunks stay at least a segment long


def test_crops_come_from_within_their_chunk(tmp_path):
    ramp = np.arange(4 * SR) / (8 * SR)  # the sample value tells the position
    dataset = SegmentDataset(
        [write(tmp_path / "ramp.wav", ramp)], SR, 800, chunk_seconds=1.0, gain_db=(0, 0)
    )
    assert len(dataset) == 4
    for index in range(12):
        _, start, stop = dataset.chunks[dataset.chunk_of(index)]
        position = round(float(dataset[index][0, 0]) * 8 * SR)
        assert start <= position <= stop - 800


def test_silence_aware_cropping_prefers_speech(tmp_path):
    wav = np.concatenate([np.zeros(3 * SR), sine(300, 1.0)])
    entry = write(tmp_path / "mostly-silent.wav", wav)

    def loud_share(tries: int) -> float:
        dataset = SegmentDataset([entry], SR, SR // 4, silence_tries=tries)
        crops = torch.stack([dataset[i] for i in range(100)])
        return float((crops.square().mean(dim=(1, 2)) > 1e-5).float().mean())

    assert loud_share(tries=12) >= 0.9
    assert loud_share(tries=1) <= 0.5  # uniform crops: about 3 in 4 silent


def test_short_files_are_zero_padded_at_a_random_offset(tmp_path):
    entry = write(tmp_path / "short.wav", 0.5 + noise(0.05, seed=0, amplitude=0.01))
    dataset = SegmentDataset([entry], SR, 1600, gain_db=(0, 0))
    starts = set()
    for index in range(8):
        crop = dataset[index][0].numpy()
        nonzero = np.flatnonzero(crop)
        assert len(nonzero) == 800 and nonzero[-1] - nonzero[0] == 799
        starts.add(int(nonzero[0]))
    assert len(starts) > 1


def test_files_at_other_rates_are_resampled(tmp_path):
    entry = write(tmp_path / "8k.wav", sine(440, 1.0, sample_rate=8000), sample_rate=8000)
    crop = SegmentDataset([entry], SR, 4000)[0][0].numpy()
    spectrum = np.abs(np.fft.rfft(crop * np.hanning(len(crop))))
    assert np.fft.rfftfreq(len(crop), 1 / SR)[spectrum.argmax()] == pytest.approx(440, abs=5)


@pytest.mark.parametrize("damage", ["deleted", "overwritten"])
def test_an_unreadable_file_is_reported_once_and_replaced(entries, damage):
    dataset = SegmentDataset(entries, SR, 1600)
    n, bad = len(dataset), entries[0].path

    def file_of(index: int) -> int:
        return int(dataset.chunks[dataset.chunk_of(index), 0])

    index = next(i for i in range(n) if file_of(i) == 0)
    substitute = next(j for j in range(index, index + 9 * n, n) if file_of(j) != 0)
    expected = dataset[substitute]  # the same position in the next epoch that can be read
    if damage == "deleted":
        bad.unlink()
    else:
        bad.write_bytes(b"RIFF" + bytes(100))
    with pytest.warns(UserWarning, match="s0.wav: unreadable"):
        assert torch.equal(dataset[index], expected)
    assert dataset.unreadable == {str(bad)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(dataset[index], expected)  # reported once only
    pickle.loads(pickle.dumps(dataset))  # workers get a copy


def test_batches_do_not_depend_on_workers_and_resume_exactly(entries):
    dataset = SegmentDataset(entries, SR, 800)
    plain = list(islice(loader(dataset, 4), 3))
    assert plain[0].shape == (4, 1, 800)
    assert torch.equal(plain[1][2], dataset[6])
    workers = list(islice(loader(dataset, 4, num_workers=2), 3))
    assert all(torch.equal(a, b) for a, b in zip(plain, workers, strict=True))
    resumed = list(islice(loader(dataset, 4, start=4), 2))
    assert all(torch.equal(a, b) for a, b in zip(plain[1:], resumed, strict=True))


def test_ranks_get_disjoint_indices_that_cover_every_sample(entries):
    per_rank = [list(islice(ResumableSampler(8, 4, rank, 3), 12)) for rank in range(3)]
    assert sorted(sum(per_rank, [])) == list(range(8, 8 + 36))
    assert per_rank[1][:4] == [12, 13, 14, 15]
    dataset = SegmentDataset(entries, SR, 800)
    batch = next(loader(dataset, 2, rank=1, world_size=2))
    assert torch.equal(batch[0], dataset[2]) and torch.equal(batch[1], dataset[3])


def test_valid_clips_are_fixed_spread_over_speakers_and_loud(tmp_path):
    amplitude = {"ann": 0.1, "bob": 0.2, "cy": 0.4}
    entries = [
        write(tmp_path / f"{s}/{i}.wav", sine(200, 0.5, a), speaker=s)
        for s, a in amplitude.items()
        for i in range(2)
    ]
    late = np.concatenate([np.zeros(SR), sine(200, 2.0, 0.3)])
    entries.append(write(tmp_path / "dan/late.wav", late, speaker="dan"))
    entries.append(Entry(tmp_path / "eve/gone.wav", 1.0, SR, "eve"))
    clips = valid_clips(list(reversed(entries)), SR, n_clips=5, seconds=1.0)
    assert [len(c) for c in clips] == [8000, 8000, 8000, SR, 8000]
    peaks = [round(float(np.abs(c).max()), 1) for c in clips]
    assert peaks == [0.1, 0.2, 0.4, 0.3, 0.1]  # ann, bob, cy, dan's loud second, ann again
    again = valid_clips(entries, SR, n_clips=5, seconds=1.0)
    assert all(np.array_equal(a, b) for a, b in zip(clips, again, strict=True))
