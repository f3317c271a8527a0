"""Run codecs over audio files and score every decoded file against its input.

A system is the model at one bitrate (`codec:3`, coded through a real `.codes` file, as
`codec encode` and `codec decode` do) or a classical baseline (`opus:6`, `codec2:1600`,
`speex:wb4`). Every file is read at the model's sample rate, coded and decoded by each
system, and scored with PESQ (wide band at 16 kHz, narrow band at 8 kHz), STOI, SI-SDR
and mel distance; the coded size and the time taken are measured too.

Each system removes its own known delay (the model has none; see `baselines` for the
others). `max_lag_ms` adds a search by cross-correlation, which only helps codecs that
keep the waveform: for those that do not, it locks onto a wrong peak and lowers STOI.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from codec.audio import find_audio_files, load_audio
from codec.errors import CodecError
from codec.eval import metrics
from codec.eval.baselines import Baseline
from codec.inference import decode_file, encode_file
from codec.models.codec import CodecModel
from codec.train.manifest import read_manifest

LENGTH_TOLERANCE_S = 0.02  # decoded lengths may differ by this (plus 1%) before it is an error
MANIFEST = "manifest.tsv"


@dataclass(frozen=True)
class Coded:
    """What a system made of one file.

    Args:
        decoded: `[T']` float32 at the evaluation's sample rate, delay removed.
        payload_bytes: the codes or codec packets alone.
        file_bytes: the whole coded file (header, container).
    """

    decoded: np.ndarray
    payload_bytes: int
    file_bytes: int


Coder = Callable[[Path, np.ndarray, int], Coded]  # (path, wav [T], sample_rate) -> Coded


@dataclass(frozen=True)
class System:
    """One way of coding audio, one line of the report.

    Args:
        name: e.g. `codec:3`, `opus:6`, `speex:wb4`.
        family: the systems joined by one line in the rate-quality plot (`codec`, `opus`).
        code: codes and decodes one file.
        unavailable: why it cannot run here (a missing tool), or "".
    """

    name: str
    family: str
    code: Coder
    unavailable: str = ""


@dataclass(frozen=True)
class Row:
    """One file coded by one system; scores are NaN where not scored, `error` says why."""

    file: str
    system: str
    family: str
    seconds: float
    kbps_payload: float = math.nan
    kbps_file: float = math.nan
    pesq_wb: float = math.nan
    pesq_nb: float = math.nan
    stoi: float = math.nan
    si_sdr: float = math.nan
    mel_distance: float = math.nan
    speed: float = math.nan  # seconds of audio coded and decoded per second of work
    error: str = ""


@dataclass(frozen=True)
class Summary:
    """One system over all files: bitrates are total bits over total seconds, scores are
    means over the files scored (NaNs left out and counted), speed is total over total."""

    system: str
    family: str
    files: int
    failed: int
    kbps_payload: float
    kbps_file: float
    pesq_wb: float
    pesq_wb_nan: int
    pesq_nb: float
    pesq_nb_nan: int
    stoi: float
    stoi_nan: int
    si_sdr: float
    mel_distance: float
    speed: float
    status: str = ""


@dataclass(frozen=True)
class Clip:
    """A file kept for listening and spectrograms: reference and decoded `[T]` per system."""

    file: str
    reference: np.ndarray
    decoded: dict[str, np.ndarray]


@dataclass
class EvalResult:
    """Everything an evaluation found; `skipped` holds one line per file left out."""

    sample_rate: int
    rows: list[Row] = field(default_factory=list)
    summaries: list[Summary] = field(default_factory=list)
    clips: list[Clip] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    files: int = 0
    seconds: float = 0.0


def find_inputs(
    root: Path, split: str | None = None, limit: int | None = None
) -> tuple[list[Path], dict[Path, float]]:
    """The files of a folder to evaluate, and the durations its manifest claims.

    With `root/manifest.tsv` its entries are used (only those of `split`, if given);
    otherwise every audio file under `root`. Raises `CodecError` when nothing is found.
    """
    manifest = Path(root) / MANIFEST
    if not manifest.is_file():
        if split is not None:
            raise CodecError(f"{root}: no {MANIFEST} to choose the {split!r} split from")
        files, durations = find_audio_files(root), {}
    else:
        entries = read_manifest(manifest)
        chosen = [e for e in entries if split is None or e.split == split]
        if not chosen and entries:
            splits = ", ".join(sorted({e.split for e in entries}))
            raise CodecError(f"{manifest}: no files in split {split!r} (splits: {splits})")
        files, durations = [e.path for e in chosen], {e.path: e.seconds for e in chosen}
    if not files:
        raise CodecError(f"{root}: no audio files (WAV, FLAC or OGG) found")
    return files[:limit], durations


def build_systems(
    model: CodecModel | None,
    bitrates: Sequence[float],
    baselines: Sequence[Baseline],
    postfilter: bool = True,
) -> list[System]:
    """The model at each bitrate (lowest first), decoded as `codec decode` does: through
    its postfilter if it has one, unless `postfilter=False`; then the baselines in the
    order given."""
    systems = []
    if model is not None:
        for kbps in sorted(set(bitrates)):
            model.n_codebooks_for(kbps)  # fail before any work on a bitrate it lacks
            systems.append(
                System(f"codec:{kbps:g}", "codec", _model_coder(model, kbps, postfilter))
            )
    for b in baselines:
        systems.append(System(b.name, b.codec, _baseline_coder(b), b.missing_tool() or ""))
    return systems


def evaluate(
    files: Sequence[Path],
    model: CodecModel | None,
    bitrates: Sequence[float] = (),
    baselines: Sequence[Baseline] = (),
    *,
    root: Path | None = None,
    durations: Mapping[Path, float] | None = None,
    n_clips: int = 3,
    max_lag_ms: float = 0.0,
    progress: Callable[[int], None] | None = None,
    postfilter: bool = True,
) -> EvalResult:
    """Score the model at `bitrates` and the `baselines` on `files`, at the model's
    sample rate (16 kHz without a model); the options are those of `run_systems`."""
    return run_systems(
        files,
        build_systems(model, bitrates, baselines, postfilter),
        model.sample_rate if model is not None else 16000,
        root=root,
        durations=durations,
        n_clips=n_clips,
        max_lag_ms=max_lag_ms,
        progress=progress,
    )


def run_systems(
    files: Sequence[Path],
    systems: Sequence[System],
    sample_rate: int,
    *,
    root: Path | None = None,
    durations: Mapping[Path, float] | None = None,
    n_clips: int = 3,
    max_lag_ms: float = 0.0,
    progress: Callable[[int], None] | None = None,
) -> EvalResult:
    """Code every file with every system and score it.

    Args:
        files: audio files; unreadable ones, and those whose length differs from
            `durations[file]` (a manifest's claim), are skipped and listed.
        systems: what to run; unavailable ones give one row per file saying why.
        sample_rate: rate at which files are read, coded and scored.
        root: folder that file names in the report are relative to.
        n_clips: the first files kept as `Clip`s for listening.
        max_lag_ms: search this far for residual delay by cross-correlation (0: none).
        progress: called with the number of files done.
    Raises `CodecError` when no file could be read.
    """
    result = EvalResult(sample_rate=sample_rate)
    max_lag = round(max_lag_ms * sample_rate / 1000)
    for i, path in enumerate(files):
        name = _display_name(path, root)
        try:
            wav = load_audio(path, sample_rate)
            _check_duration(path, wav.size / sample_rate, (durations or {}).get(path))
        except CodecError as e:
            result.skipped.append(str(e))
        else:
            result.files += 1
            result.seconds += wav.size / sample_rate
            clip = Clip(name, wav, {}) if len(result.clips) < n_clips else None
            for system in systems:
                result.rows.append(_run_one(system, path, name, wav, sample_rate, max_lag, clip))
            if clip is not None:
                result.clips.append(clip)
        if progress:
            progress(i + 1)
    if result.files == 0:
        raise CodecError(f"none of the {len(files)} files could be read")
    result.summaries = [summarize(s, result.rows) for s in systems]
    return result


def summarize(system: System, rows: Sequence[Row]) -> Summary:
    """Means of one system's rows; `status` says why rows have no scores, if they do not."""
    own = [r for r in rows if r.system == system.name]
    ok = [r for r in own if not r.error]
    seconds = sum(r.seconds for r in ok)
    errors = [r.error for r in own if r.error]

    def mean(key: str) -> tuple[float, int]:
        values = [getattr(r, key) for r in ok]
        finite = [v for v in values if math.isfinite(v)]
        return (float(np.mean(finite)) if finite else math.nan), len(values) - len(finite)

    def total_kbps(key: str) -> float:
        bits = sum(getattr(r, key) * r.seconds for r in ok)
        return bits / seconds if seconds else math.nan

    work = sum(r.seconds / r.speed for r in ok)
    pesq_wb, pesq_nb, stoi = mean("pesq_wb"), mean("pesq_nb"), mean("stoi")
    status = system.unavailable and f"unavailable: {system.unavailable}"
    if errors and not status:
        status = f"{len(errors)} failed: {errors[0]}"
    return Summary(
        system=system.name,
        family=system.family,
        files=len(ok),
        failed=len(errors),
        kbps_payload=total_kbps("kbps_payload"),
        kbps_file=total_kbps("kbps_file"),
        pesq_wb=pesq_wb[0],
        pesq_wb_nan=pesq_wb[1],
        pesq_nb=pesq_nb[0],
        pesq_nb_nan=pesq_nb[1],
        stoi=stoi[0],
        stoi_nan=stoi[1],
        si_sdr=mean("si_sdr")[0],
        mel_distance=mean("mel_distance")[0],
        speed=seconds / work if work else math.nan,
        status=status,
    )


def _run_one(
    system: System,
    path: Path,
    name: str,
    wav: np.ndarray,
    sample_rate: int,
    max_lag: int,
    clip: Clip | None,
) -> Row:
    seconds = wav.size / sample_rate
    if system.unavailable:
        return Row(name, system.name, system.family, seconds, error=system.unavailable)
    try:
        start = time.perf_counter()
        coded = system.code(path, wav, sample_rate)
        elapsed = time.perf_counter() - start
        decoded = _same_length(coded.decoded, wav.size, sample_rate)
    except CodecError as e:
        return Row(name, system.name, system.family, seconds, error=str(e))
    if clip is not None:
        clip.decoded[system.name] = decoded
    reference = wav
    if max_lag:
        reference, decoded, _ = metrics.align(wav, decoded, max_lag)
    s = metrics.score(reference, decoded, sample_rate)
    return Row(
        file=name,
        system=system.name,
        family=system.family,
        seconds=seconds,
        kbps_payload=coded.payload_bytes * 8 / seconds / 1000,
        kbps_file=coded.file_bytes * 8 / seconds / 1000,
        pesq_wb=s.pesq_wb,
        pesq_nb=metrics.pesq_nb(reference, decoded, sample_rate),
        stoi=s.stoi,
        si_sdr=s.si_sdr,
        mel_distance=s.mel_distance,
        speed=seconds / max(elapsed, 1e-9),
    )


def _model_coder(model: CodecModel, kbps: float, postfilter: bool = True) -> Coder:
    def code(path: Path, wav: np.ndarray, sample_rate: int) -> Coded:
        with tempfile.TemporaryDirectory(prefix="codec-eval-") as tmp:
            codes, out = Path(tmp, "x.codes"), Path(tmp, "x.wav")
            h = encode_file(model, path, codes, kbps)
            decode_file(model, codes, out, postfilter=postfilter)
            decoded = load_audio(out, sample_rate)
            file_bytes = codes.stat().st_size
        payload = math.ceil(h.n_codebooks * h.n_frames * h.bits_per_code / 8)
        return Coded(decoded, payload, file_bytes)

    return code


def _baseline_coder(baseline: Baseline) -> Coder:
    def code(path: Path, wav: np.ndarray, sample_rate: int) -> Coded:
        r = baseline.run(wav, sample_rate)
        return Coded(r.decoded, r.packet_bytes, r.payload_bytes)

    return code


def _same_length(decoded: np.ndarray, length: int, sample_rate: int) -> np.ndarray:
    """Trim or zero-pad `[T']` to `[length]`; a gap beyond padding is a `CodecError`."""
    decoded = np.asarray(decoded, dtype=np.float32)
    if decoded.ndim != 1:
        raise CodecError(f"decoded signal has shape {decoded.shape}, expected [T]")
    if abs(decoded.size - length) > LENGTH_TOLERANCE_S * sample_rate + 0.01 * length:
        raise CodecError(
            f"decoded {decoded.size / sample_rate:.2f} s from {length / sample_rate:.2f} s of input"
        )
    out = np.zeros(length, dtype=np.float32)
    out[: min(length, decoded.size)] = decoded[:length]
    return out


def _check_duration(path: Path, seconds: float, claimed: float | None) -> None:
    if claimed is not None and abs(seconds - claimed) > LENGTH_TOLERANCE_S + 0.01 * claimed:
        raise CodecError(f"{path}: {seconds:.2f} s of audio, but the manifest says {claimed:.2f} s")


def _display_name(path: Path, root: Path | None) -> str:
    path = Path(path).resolve()
    if root is not None and path.is_relative_to(Path(root).resolve()):
        return path.relative_to(Path(root).resolve()).as_posix()
    return path.name
