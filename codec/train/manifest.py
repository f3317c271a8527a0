"""Corpus manifests: which audio files make up a corpus, how long they are, who speaks.

A manifest is a UTF-8 TSV file with a header row and the columns `path, seconds,
sample_rate, speaker, split` (and `text` when transcripts are known); `path` is relative
to the manifest's folder. Manifests come from `scan_folder` (any folder of audio files)
or `scan_librispeech` (an extracted LibriSpeech tree), and are read back by
`read_manifest`, which also accepts manifests with other columns (only `path` is needed).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from codec.atomic import write_bytes_atomic
from codec.audio import audio_info, find_audio_files
from codec.config import DataConfig
from codec.errors import AudioError, CodecError

COLUMNS = ("path", "seconds", "sample_rate", "speaker", "split")
# A header can claim anything: a corrupt FLAC may announce 2e11 frames.
MAX_SECONDS = 24 * 3600.0
# LibriSpeech subset prefix -> split.
LIBRISPEECH_SPLITS = {"train-": "train", "dev-": "valid", "test-": "test"}

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Entry:
    """One audio file of a corpus.

    Args:
        path: absolute path of the file.
        seconds: duration.
        sample_rate: the file's own sample rate, in Hz.
        speaker: speaker id ("" when unknown).
        split: "train", "valid" or "test".
        text: transcript ("" when unknown).
    """

    path: Path
    seconds: float
    sample_rate: int
    speaker: str = ""
    split: str = "train"
    text: str = ""


@dataclass
class ScanResult:
    """Files found by a scan: readable ones as entries, the others as one-line reasons."""

    entries: list[Entry] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def read_manifest(path: PathLike) -> list[Entry]:
    """Read a manifest TSV; paths in it are relative to its folder (or absolute).

    Only the `path` column is required; extra columns are ignored, missing `seconds` and
    `sample_rate` are read from the audio file's header, a missing speaker is "" and a
    missing split "train". Any malformed row raises `CodecError` naming file and line.
    """
    manifest = Path(path)
    try:
        text = manifest.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CodecError(f"{manifest}: cannot read manifest ({e.__class__.__name__})") from e
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t")
    if "path" not in (reader.fieldnames or []):
        raise CodecError(f"{manifest}: no 'path' column in the header row")
    folder = manifest.resolve().parent
    return [_parse_row(row, folder, f"{manifest}:{reader.line_num}") for row in reader]


def _parse_row(row: dict[str, str | None], folder: Path, where: str) -> Entry:
    if not row.get("path"):
        raise CodecError(f"{where}: empty path")
    audio = folder / row["path"]  # an absolute path in the row replaces the folder
    if not audio.is_file():
        raise CodecError(f"{where}: {audio}: no such file")
    seconds, sample_rate = row.get("seconds"), row.get("sample_rate")
    if not seconds or not sample_rate:
        try:
            info = audio_info(audio)
        except AudioError as e:
            raise CodecError(f"{where}: {e}") from e
        seconds = seconds or str(info.duration)
        sample_rate = sample_rate or str(info.sample_rate)
    return Entry(
        path=audio,
        seconds=_number(seconds, float, "seconds", where),
        sample_rate=_number(sample_rate, int, "sample_rate", where),
        speaker=row.get("speaker") or "",
        split=row.get("split") or "train",
        text=row.get("text") or "",
    )


def _number(value: str, kind: type[float] | type[int], name: str, where: str) -> float | int:
    try:
        number = kind(value)
    except ValueError:
        raise CodecError(f"{where}: {name} is not a number: {value!r}") from None
    if not math.isfinite(number) or number < 0 or (kind is int and number == 0):
        raise CodecError(f"{where}: {name} out of range: {value!r}")
    return number


def write_manifest(path: PathLike, entries: Iterable[Entry]) -> None:
    """Write entries as a manifest TSV, atomically.

    Paths inside the manifest's folder are written relative to it, others absolute; the
    `text` column is written only when some entry has a transcript.
    """
    manifest = Path(path)
    folder = manifest.resolve().parent
    entries = list(entries)
    columns = COLUMNS + (("text",) if any(e.text for e in entries) else ())
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(columns)
    for e in entries:
        row = [_relative(e.path, folder), repr(e.seconds), e.sample_rate, e.speaker, e.split]
        writer.writerow(row + ([e.text] if "text" in columns else []))
    write_bytes_atomic(manifest, buffer.getvalue().encode("utf-8"))


def _relative(path: Path, folder: Path) -> str:
    path = Path(os.path.abspath(path))  # not resolve(): a symlinked file stays in place
    return path.relative_to(folder).as_posix() if path.is_relative_to(folder) else str(path)


def list_files(root: PathLike, split: str | None = None) -> list[Path]:
    """Audio files of a corpus: those of `root/manifest.tsv` when present (of `split`
    only, unless None), otherwise every audio file under `root`."""
    manifest = Path(root) / "manifest.tsv"
    if not manifest.is_file():
        return find_audio_files(root)
    return [e.path for e in read_manifest(manifest) if split is None or e.split == split]


def scan_folder(
    root: PathLike, *, valid_fraction: float = 0.05, speaker_depth: int = 1
) -> ScanResult:
    """Every audio file under `root`, with duration, speaker and a stable split.

    The speaker is the first `speaker_depth` folders below `root` ("" for files directly
    in it). About `valid_fraction` of the files go to the "valid" split, chosen by a hash
    of their relative path, so adding files never moves existing ones between splits.
    Unreadable, empty or implausibly long files are listed in `skipped`, never raised.
    """
    _check_fraction(valid_fraction)
    root_path = Path(root).resolve()
    result = ScanResult()
    for path in find_audio_files(root_path):
        rel = path.relative_to(root_path)
        folders = rel.parts[:-1][:speaker_depth]
        split = "valid" if _hash_fraction(rel.as_posix()) < valid_fraction else "train"
        _add(result, path, speaker="/".join(folders), split=split)
    result.entries.sort(key=lambda e: e.path)
    return result


def split_entries(
    entries: list[Entry],
    train_split: str = "train",
    valid_split: str = "valid",
    valid_fraction: float = 0.05,
) -> tuple[list[Entry], list[Entry]]:
    """(train, valid) entries of a corpus.

    When no entry is in `valid_split`, about `valid_fraction` of the train entries are
    held out instead (at least one when there are two or more), chosen by a hash of
    their last two path components so the choice survives moving the corpus.
    """
    _check_fraction(valid_fraction)
    train = [e for e in entries if e.split == train_split]
    valid = [e for e in entries if e.split == valid_split]
    if valid or valid_fraction == 0 or len(train) < 2:
        return train, valid
    scores = {e.path: _hash_fraction("/".join(e.path.parts[-2:])) for e in train}
    held = sum(score < valid_fraction for score in scores.values())
    cut = sorted(scores.values())[min(max(held, 1), len(train) - 1) - 1]
    return [e for e in train if scores[e.path] > cut], [e for e in train if scores[e.path] <= cut]


def scan_librispeech(root: PathLike, subsets: Iterable[str] | None = None) -> ScanResult:
    """The utterances of an extracted LibriSpeech tree, with speakers and transcripts.

    Args:
        root: the folder holding `LibriSpeech/`, or the `LibriSpeech` folder itself.
        subsets: e.g. ["train-clean-100", "dev-clean"]; default every subset present.
            Splits: "train" for train-*, "valid" for dev-*, "test" for test-*.
    """
    base = _librispeech_folder(Path(root))
    if subsets is None:
        names = sorted(d.name for d in base.iterdir() if d.is_dir() and _split_of(d.name))
        if not names:
            raise CodecError(f"{base}: no LibriSpeech subsets (train-*, dev-*, test-*) in it")
    else:
        names = list(subsets)
    result = ScanResult()
    for name in names:
        split = _split_of(name)
        if split is None:
            raise CodecError(f"{name}: not a LibriSpeech subset (train-*, dev-*, test-*)")
        if not (base / name).is_dir():
            raise CodecError(f"{base / name}: no such subset folder")
        _scan_subset(result, base / name, split)
    result.entries.sort(key=lambda e: e.path)
    return result


def _librispeech_folder(root: Path) -> Path:
    if root.name == "LibriSpeech" and root.is_dir():
        return root.resolve()
    if (root / "LibriSpeech").is_dir():
        return (root / "LibriSpeech").resolve()
    raise CodecError(f"{root}: no LibriSpeech folder (expected {root / 'LibriSpeech'})")


def _split_of(subset: str) -> str | None:
    return next((s for p, s in LIBRISPEECH_SPLITS.items() if subset.startswith(p)), None)


def _scan_subset(result: ScanResult, folder: Path, split: str) -> None:
    """Add `<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac` files of one subset."""
    transcripts: dict[Path, dict[str, str]] = {}
    for path in find_audio_files(folder):
        parts = path.relative_to(folder).parts
        if path.parent not in transcripts:
            transcripts[path.parent] = _read_transcripts(path.parent)
        text = transcripts[path.parent].get(path.stem, "")
        _add(result, path, speaker=parts[0] if len(parts) > 1 else "", split=split, text=text)


def _read_transcripts(chapter: Path) -> dict[str, str]:
    """Utterance id -> text from the chapter's `*.trans.txt` (lines `ID TEXT`)."""
    texts = {}
    for trans in sorted(chapter.glob("*.trans.txt")):
        for line in trans.read_text(encoding="utf-8").splitlines():
            utt, _, text = line.strip().partition(" ")
            if utt:
                texts[utt] = text.strip()
    return texts


def _add(result: ScanResult, path: Path, **fields: str) -> None:
    """Append `path` to the entries, or its one-line reason to `skipped`."""
    try:
        info = audio_info(path)
    except AudioError as e:
        result.skipped.append(str(e))
        return
    if info.duration > MAX_SECONDS:
        result.skipped.append(f"{path}: implausible duration {info.duration:.3g} s (corrupt?)")
        return
    result.entries.append(Entry(path, info.duration, info.sample_rate, **fields))


def _hash_fraction(key: str) -> float:
    """A stable pseudo-random number in [0, 1) from a string (sha1, not Python's hash)."""
    digest = hashlib.sha1(key.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _check_fraction(valid_fraction: float) -> None:
    if not 0 <= valid_fraction < 1:
        raise CodecError(f"valid_fraction must be in [0, 1), got {valid_fraction}")


def recipe_entries(
    d: DataConfig, note: Callable[[str], None] = print
) -> tuple[list[Entry], list[Entry]]:
    """The training and validation files of a recipe's `data` section: its manifest,
    the root's `manifest.tsv`, or a scan of the root (skipped files go to `note`)."""
    if not d.root and not d.manifest:
        raise CodecError("the recipe names no data: set data.root=DIR (a folder of audio)")
    manifest = Path(d.manifest) if d.manifest else Path(d.root) / "manifest.tsv"
    if d.manifest or manifest.is_file():
        entries = read_manifest(manifest)
    else:
        if not Path(d.root).is_dir():
            raise CodecError(f"{d.root}: no such folder of training audio")
        scan = scan_folder(d.root, valid_fraction=d.valid_fraction)
        for reason in scan.skipped:
            note(f"skipped {reason}")
        entries = scan.entries
    train_entries, valid_entries = split_entries(
        entries, d.train_split, d.valid_split, d.valid_fraction
    )
    if not train_entries:
        raise CodecError(f"{d.manifest or d.root}: no training audio (split '{d.train_split}')")
    return train_entries, valid_entries
