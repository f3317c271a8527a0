"""Manifests: scanning a folder or LibriSpeech, stable splits, reading and writing TSV."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codec.errors import CodecError
from codec.train.manifest import (
    Entry,
    read_manifest,
    scan_folder,
    scan_librispeech,
    split_entries,
    write_manifest,
)
from tests.recipes.test_librispeech_prepare import make_librispeech


def write_wav(path: Path, seconds: float, sample_rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.full(round(seconds * sample_rate), 0.1, np.float32), sample_rate)
    return path


def write_flac_claiming_days(path: Path) -> Path:
    """A FLAC whose header claims 2**36 frames (as a corrupt file can)."""
    write_wav(path, 0.1)
    data = bytearray(path.read_bytes())
    data[21] |= 0x0F  # STREAMINFO total-samples field: 36 bits from byte 21's low nibble
    data[22:26] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    write_wav(root / "loose.wav", 0.25)
    write_wav(root / "alice" / "a1.wav", 0.5)
    write_wav(root / "alice" / "book" / "a2.flac", 0.75)
    write_wav(root / "bob" / "b1.wav", 1.0, sample_rate=8000)
    (root / "bob" / "corrupt.flac").write_bytes(b"fLaC" + bytes(range(256)) * 2)
    (root / "bob" / "empty.wav").write_bytes(b"")
    (root / "bob" / "notes.txt").write_text("not audio")
    write_flac_claiming_days(root / "bob" / "huge.flac")
    return root


def test_scan_folder_lists_audio_with_durations_speakers_and_skips_bad_files(corpus):
    result = scan_folder(corpus)
    rel = [e.path.relative_to(corpus).as_posix() for e in result.entries]
    assert rel == ["alice/a1.wav", "alice/book/a2.flac", "bob/b1.wav", "loose.wav"]
    assert [e.speaker for e in result.entries] == ["alice", "alice", "bob", ""]
    assert [e.seconds for e in result.entries] == [0.5, 0.75, 1.0, 0.25]
    assert [e.sample_rate for e in result.entries] == [16000, 16000, 8000, 16000]
    assert all(e.path.is_absolute() for e in result.entries)
    skipped = sorted(result.skipped)
    assert len(skipped) == 3 and all("\n" not in s for s in skipped)
    assert "corrupt.flac: cannot read audio" in skipped[0]
    assert "empty.wav: empty" in skipped[1]
    assert "huge.flac: implausible duration" in skipped[2]


def test_speaker_depth_picks_how_many_folders_name_the_speaker(corpus):
    deep = {e.path.name: e.speaker for e in scan_folder(corpus, speaker_depth=2).entries}
    assert deep == {"a1.wav": "alice", "a2.flac": "alice/book", "b1.wav": "bob", "loose.wav": ""}
    flat = scan_folder(corpus, speaker_depth=0).entries
    assert {e.speaker for e in flat} == {""}


def test_valid_split_is_stable_when_files_are_added_or_the_corpus_moves(tmp_path):
    root = tmp_path / "a"
    for i in range(60):
        write_wav(root / f"spk{i % 3}" / f"{i}.wav", 0.01)
    before = {
        e.path.relative_to(root): e.split for e in scan_folder(root, valid_fraction=0.2).entries
    }
    assert 4 <= list(before.values()).count("valid") <= 24
    for i in range(60, 90):
        write_wav(root / f"spk{i % 3}" / f"{i}.wav", 0.01)
    moved = tmp_path / "b"
    shutil.move(root, moved)
    after = {
        e.path.relative_to(moved): e.split for e in scan_folder(moved, valid_fraction=0.2).entries
    }
    assert len(after) == 90
    assert {k: after[k] for k in before} == before


def test_split_entries_keeps_a_valid_split_or_holds_out_a_stable_few(tmp_path):
    train = [Entry(tmp_path / f"s/{i}.wav", 1.0, 16000) for i in range(100)]
    given = [Entry(tmp_path / "s/v.wav", 1.0, 16000, split="valid")]
    assert split_entries(train + given) == (train, given)

    kept, held = split_entries(train, valid_fraction=0.1)
    assert 3 <= len(held) <= 20
    assert sorted(kept + held, key=lambda e: e.path) == sorted(train, key=lambda e: e.path)
    assert split_entries(list(reversed(train)), valid_fraction=0.1)[1] == held[::-1]
    assert len(split_entries(train[:2], valid_fraction=0.01)[1]) == 1
    assert split_entries(train[:1])[1] == []


def test_write_then_read_round_trips_with_relative_paths(tmp_path, corpus):
    entries = scan_folder(corpus).entries
    outside = write_wav(tmp_path / "elsewhere" / "x.wav", 0.5)
    entries = [
        Entry(entries[0].path, entries[0].seconds, 16000, "alice", "train", 'say "hi"\tthere'),
        *entries[1:],
        Entry(outside, 0.5, 16000, "carol", "test", "it's"),
    ]
    manifest = corpus / "manifest.tsv"
    write_manifest(manifest, entries)
    lines = manifest.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "path\tseconds\tsample_rate\tspeaker\tsplit\ttext"
    assert lines[1].startswith("alice/a1.wav\t0.5\t16000\talice\ttrain\t")
    assert lines[-1].startswith(f"{outside}\t")
    assert read_manifest(manifest) == entries


def test_text_column_is_written_only_when_there_are_transcripts(tmp_path, corpus):
    write_manifest(tmp_path / "m.tsv", scan_folder(corpus).entries)
    header = (tmp_path / "m.tsv").read_text().splitlines()[0]
    assert header == "path\tseconds\tsample_rate\tspeaker\tsplit"


def test_reads_manifests_with_other_columns(tmp_path):
    root = tmp_path / "speech16k-mini"
    write_wav(root / "train" / "spk" / "one.flac", 0.5)
    write_wav(root / "valid" / "spk" / "two.flac", 0.25, sample_rate=8000)
    (root / "manifest.tsv").write_text(
        "path\tsplit\tspeaker\tlanguage\tseconds\tsource\tlicense\n"
        "train/spk/one.flac\ttrain\tspk\ten\t0.500000\tDebian\tCC-BY-SA-3.0\n"
        "valid/spk/two.flac\tvalid\tspk\ten\t0.250000\tDebian\tCC-BY-SA-3.0\n"
    )
    entries = read_manifest(root / "manifest.tsv")
    assert entries == [
        Entry(root / "train/spk/one.flac", 0.5, 16000, "spk", "train"),
        Entry(root / "valid/spk/two.flac", 0.25, 8000, "spk", "valid"),
    ]


def test_a_path_column_is_enough(tmp_path):
    write_wav(tmp_path / "a.wav", 0.5, sample_rate=22050)
    (tmp_path / "m.tsv").write_text("path\na.wav\n")
    assert read_manifest(tmp_path / "m.tsv") == [Entry(tmp_path / "a.wav", 0.5, 22050)]


@pytest.mark.parametrize(
    "text, message",
    [
        ("file\tseconds\na.wav\t1\n", "m.tsv: no 'path' column"),
        ("", "m.tsv: no 'path' column"),
        ("path\tseconds\na.wav\t1\na.wav\tlong\n", "m.tsv:3: seconds is not a number: 'long'"),
        ("path\tsample_rate\na.wav\t0\n", "m.tsv:2: sample_rate out of range: '0'"),
        ("path\tseconds\na.wav\tnan\n", "m.tsv:2: seconds out of range"),
        ("path\na.wav\ngone.wav\n", "m.tsv:3: "),
        ("path\tspeaker\n\tx\n", "m.tsv:2: empty path"),
    ],
)
def test_malformed_manifests_raise_one_line_errors(tmp_path, text, message):
    write_wav(tmp_path / "a.wav", 0.1)
    (tmp_path / "m.tsv").write_text(text)
    with pytest.raises(CodecError) as error:
        read_manifest(tmp_path / "m.tsv")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_missing_audio_is_named(tmp_path):
    (tmp_path / "m.tsv").write_text("path\ngone.wav\n")
    with pytest.raises(CodecError, match=r"m\.tsv:2: .*gone\.wav: no such file"):
        read_manifest(tmp_path / "m.tsv")


def test_scan_librispeech_reads_speakers_transcripts_and_splits(tmp_path):
    make_librispeech(tmp_path)
    result = scan_librispeech(tmp_path)
    assert result.skipped == []
    assert len(result.entries) == 16
    first = result.entries[0]
    assert first.path == (tmp_path / "LibriSpeech/dev-clean/19/198/19-198-0000.flac").resolve()
    assert (first.speaker, first.split, first.text) == ("19", "valid", "DEV 19 198 0")
    assert {e.split for e in result.entries} == {"train", "valid"}
    only_dev = scan_librispeech(tmp_path / "LibriSpeech", subsets=["dev-clean"]).entries
    assert only_dev == [e for e in result.entries if e.split == "valid"]


def test_scan_librispeech_errors_name_what_is_missing(tmp_path):
    with pytest.raises(CodecError, match="no LibriSpeech folder"):
        scan_librispeech(tmp_path)
    make_librispeech(tmp_path)
    with pytest.raises(CodecError, match="test-clean: no such subset folder"):
        scan_librispeech(tmp_path, subsets=["test-clean"])
    with pytest.raises(CodecError, match="not a LibriSpeech subset"):
        scan_librispeech(tmp_path, subsets=["clean"])
