"""recipes/speech16k/pack_opus.py: a corpus packed into ~60 s Ogg Opus files per speaker
that the trainer reads like any other, with the valid files kept as FLAC."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from codec.eval.metrics import stoi
from codec.train.manifest import read_manifest
from tests.conftest import tone
from tests.recipes.corpus import speaker_corpus

SCRIPT = Path(__file__).parents[2] / "recipes" / "speech16k" / "pack_opus.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("pack_opus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its worker processes find their function by name
    spec.loader.exec_module(module)
    return module


def _corpus(tmp_path: Path) -> Path:
    """Two speakers, four 2 s train utterances and one valid utterance each."""
    return speaker_corpus(tmp_path / "corpus")


def test_a_corpus_packs_into_opus_files_per_speaker_with_flac_valid_files(tmp_path):
    n = _load_script().pack(_corpus(tmp_path), tmp_path / "packed", seconds=5.0, valid=1)

    entries = read_manifest(tmp_path / "packed" / "manifest.tsv")
    assert n == len(entries)
    train = [e for e in entries if e.split == "train"]
    # 4 utterances of 2 s (+0.1 s gaps) per speaker: one file past 5 s, then the rest
    assert sorted(e.path.suffix for e in train) == [".ogg"] * 4
    assert sum(e.seconds for e in train) == np.float64(2 * 4 * 2.1)
    assert {e.speaker for e in train} == {"a", "b"}
    valid = [e for e in entries if e.split == "valid"]
    assert len(valid) == 1 and valid[0].path.suffix == ".flac"

    # The Opus copy is the same speech, sample-aligned.
    first = next(e for e in train if e.speaker == "a")
    decoded, rate = sf.read(first.path, dtype="float32")
    assert rate == 16000
    original = tone(2.0, seed=0)
    assert stoi(original, decoded[: len(original)], 16000) > 0.8


def test_unpack_writes_the_packed_copy_as_wav_the_trainer_reads(tmp_path):
    script = _load_script()
    script.pack(_corpus(tmp_path), tmp_path / "packed", seconds=5.0, valid=1)

    n = script.unpack(tmp_path / "packed", tmp_path / "wav", workers=2)

    packed = read_manifest(tmp_path / "packed" / "manifest.tsv")
    entries = read_manifest(tmp_path / "wav" / "manifest.tsv")
    assert n == len(entries) == len(packed)
    assert {e.path.suffix for e in entries} == {".wav"}
    assert [(e.split, e.speaker) for e in entries] == [(e.split, e.speaker) for e in packed]
    for before, after in zip(packed, entries, strict=True):
        a, _ = sf.read(before.path, dtype="float32")
        b, rate = sf.read(after.path, dtype="float32")
        assert rate == 16000 and len(a) == len(b)
        assert np.abs(a - b).max() < 1e-3  # 16-bit PCM of the same samples


def test_unpack_leaves_out_a_file_it_cannot_read(tmp_path, capsys):
    script = _load_script()
    script.pack(_corpus(tmp_path), tmp_path / "packed", seconds=5.0, valid=1)
    first = read_manifest(tmp_path / "packed" / "manifest.tsv")[0].path
    first.write_bytes(b"OggS" + bytes(100))  # a truncated, corrupt Ogg file

    n = script.unpack(tmp_path / "packed", tmp_path / "wav", workers=1)

    entries = read_manifest(tmp_path / "wav" / "manifest.tsv")
    assert n == len(entries) == len(read_manifest(tmp_path / "packed" / "manifest.tsv")) - 1
    assert first.stem not in {e.path.stem for e in entries}
    assert f"skipped {first}" in capsys.readouterr().out
