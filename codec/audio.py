"""Read, write and resample audio files; the only module that knows about sound files.

Everything comes back as float32 mono NumPy arrays at the sample rate asked for:
channels are averaged, rates are converted with soxr. Every problem a user can cause
(missing, unreadable, empty or non-finite files) is an `AudioError` naming the file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
import soundfile as sf
import soxr

from codec.atomic import atomic_path
from codec.errors import AudioError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
RESAMPLE_QUALITY = "HQ"
# Output extension -> (soundfile format, subtype).
_WRITE_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16")}

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class AudioInfo:
    """What a sound file holds, read from its header."""

    sample_rate: int
    channels: int
    frames: int
    format: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def audio_info(path: PathLike) -> AudioInfo:
    """Read the header of a sound file; raises `AudioError` like `load_audio`."""
    _check_file(path)
    with _reading(path):
        info = sf.info(str(path))
    if info.frames == 0:
        raise AudioError(f"{path}: empty (no audio frames)")
    return AudioInfo(info.samplerate, info.channels, info.frames, info.format)


def load_audio(path: PathLike, sample_rate: int) -> np.ndarray:
    """Read a whole file as mono float32 at `sample_rate`.

    Returns:
        wav: [T] float32, channels averaged, resampled with soxr.
    """
    _check_rate(sample_rate)
    _check_file(path)
    with _reading(path):
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    if data.shape[0] == 0:
        raise AudioError(f"{path}: empty (no audio frames)")
    wav = _to_mono(path, data)
    if file_rate == sample_rate:
        return wav
    return soxr.resample(wav, file_rate, sample_rate, quality=RESAMPLE_QUALITY)


def iter_audio_blocks(
    path: PathLike, sample_rate: int, block_seconds: float = 10.0
) -> Iterator[np.ndarray]:
    """Stream a long file as mono float32 blocks at `sample_rate`, in bounded memory.

    The blocks concatenate to `load_audio(path, sample_rate)` (to resampler precision).
    Each holds exactly `round(block_seconds * sample_rate)` samples, except the last,
    which may be shorter. A missing, unreadable or empty file raises `AudioError` at
    the call; non-finite samples raise it when their block is reached.

    Yields:
        block: [N] float32.
    """
    _check_rate(sample_rate)
    if not block_seconds > 0:
        raise AudioError(f"block_seconds must be positive, got {block_seconds}")
    info = audio_info(path)
    file_block = max(1, round(block_seconds * info.sample_rate))
    out_block = max(1, round(block_seconds * sample_rate))
    return _rechunk(_stream_mono(path, sample_rate, file_block), out_block)


def _stream_mono(path: PathLike, sample_rate: int, blocksize: int) -> Iterator[np.ndarray]:
    """Soundfile blocks -> mono -> soxr stream: [N] float32 chunks of varying length."""
    with _reading(path), sf.SoundFile(str(path)) as f:
        blocks = (_to_mono(path, b) for b in f.blocks(blocksize, dtype="float32", always_2d=True))
        if f.samplerate == sample_rate:
            yield from blocks
            return
        stream = soxr.ResampleStream(
            f.samplerate, sample_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY
        )
        for block in blocks:
            yield stream.resample_chunk(block)
        yield stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


def _rechunk(chunks: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Regroup [N] chunks of any length into [size] blocks and a shorter last one."""
    pending: list[np.ndarray] = []
    count = 0
    for chunk in chunks:
        pending.append(chunk)
        count += len(chunk)
        if count >= size:
            joined = np.concatenate(pending)
            full = len(joined) - len(joined) % size
            yield from np.split(joined[:full], full // size)
            pending, count = [joined[full:]], len(joined) - full
    if count:
        yield np.concatenate(pending)


def save_audio(path: PathLike, wav: np.ndarray, sample_rate: int) -> None:
    """Write [T] or [1, T] samples as 16-bit .wav or .flac (from the extension).

    Samples are clipped to [-1, 1]; the write is atomic and creates parent folders.
    """
    with AudioWriter(path, sample_rate) as writer:
        writer.write(wav)


class AudioWriter:
    """Streaming, atomic writer of a mono 16-bit .wav or .flac file.

    Blocks go to a temporary file beside the target, renamed onto it on a clean exit
    of the `with` block; on an exception the temporary file is removed and any older
    target is left untouched.

    Args:
        path: output file; the extension (.wav or .flac) picks the format.
        sample_rate: sample rate of the blocks written, in Hz.
    """

    def __init__(self, path: PathLike, sample_rate: int) -> None:
        _check_rate(sample_rate)
        self.path = Path(path)
        self.sample_rate = sample_rate
        self._format = _write_format(path)
        self._file: sf.SoundFile | None = None
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> Self:
        # The idiom from the ExitStack docs: if opening fails, atomic_path sees the
        # exception and removes its temporary file instead of renaming it.
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_path(self.path))
            fmt, subtype = self._format
            self._file = stack.enter_context(
                sf.SoundFile(tmp, "w", self.sample_rate, 1, subtype=subtype, format=fmt)
            )
            self._stack = stack.pop_all()
        return self

    def write(self, block: np.ndarray) -> None:
        """Append [N] or [1, N] samples, clipped to [-1, 1]."""
        if self._file is None:
            raise RuntimeError("AudioWriter.write called outside its `with` block")
        self._file.write(_to_writable(self.path, block))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack, self._file = self._stack, None, None
        if stack is not None:
            stack.__exit__(exc_type, exc, tb)


def find_audio_files(root: PathLike) -> list[Path]:
    """Sorted list of files under `root` (recursive) whose extension is in AUDIO_EXTENSIONS.

    Hidden files and folders (names starting with ".") are skipped: they hold temporary
    files of interrupted writes, macOS "._" resource forks and version control.
    """
    root_path = Path(root)
    if not root_path.exists():
        raise AudioError(f"{root}: no such folder")
    if not root_path.is_dir():
        raise AudioError(f"{root}: not a folder")
    found = []
    for folder, dirs, files in os.walk(root_path):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [
            Path(folder, name)
            for name in files
            if not name.startswith(".") and Path(name).suffix.lower() in AUDIO_EXTENSIONS
        ]
    return sorted(found)


def _check_rate(sample_rate: int) -> None:
    if not sample_rate > 0:
        raise AudioError(f"sample rate must be positive, got {sample_rate}")


def _check_file(path: PathLike) -> None:
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{path}: no such file")
    if p.is_dir():
        raise AudioError(f"{path}: is a folder, expected an audio file")
    if not os.access(p, os.R_OK):
        raise AudioError(f"{path}: permission denied")
    if p.stat().st_size == 0:
        raise AudioError(f"{path}: empty (0 bytes)")


@contextlib.contextmanager
def _reading(path: PathLike) -> Iterator[None]:
    """Turn whatever soundfile raises on a bad file into a one-line `AudioError`."""
    try:
        yield
    except (sf.SoundFileError, RuntimeError) as e:
        reason = getattr(e, "error_string", None) or str(e) or type(e).__name__
        reason = reason.strip().splitlines()[0].rstrip(".")
        raise AudioError(f"{path}: cannot read audio ({reason})") from e


def _to_mono(path: PathLike, data: np.ndarray) -> np.ndarray:
    """[T, C] float32 -> [T] float32 average of the channels, checked to be finite."""
    wav = data[:, 0].copy() if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    if not np.isfinite(wav).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    return wav


def _write_format(path: PathLike) -> tuple[str, str]:
    suffix = Path(path).suffix.lower()
    if suffix not in _WRITE_FORMATS:
        kind = f"{suffix} files" if suffix else "files without an extension"
        raise AudioError(f"{path}: cannot write {kind} (use .wav or .flac)")
    return _WRITE_FORMATS[suffix]


def _to_writable(path: Path, wav: np.ndarray) -> np.ndarray:
    """[T] or [1, T] finite samples -> [T] float32 clipped to [-1, 1]."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 2 and wav.shape[0] == 1:
        wav = wav[0]
    if wav.ndim != 1:
        raise AudioError(f"{path}: expected samples of shape [T] or [1, T], got {wav.shape}")
    if not np.isfinite(wav).all():
        raise AudioError(f"{path}: refusing to write NaN or infinite samples")
    return np.clip(wav, -1.0, 1.0)
