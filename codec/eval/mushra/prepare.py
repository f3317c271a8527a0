"""Build a MUSHRA test (ITU-R BS.1534-3) from reference clips and systems' decoded clips.

Every item gets the hidden reference, the 3.5 kHz and 7 kHz low-pass anchors and one
clip per system, all at one sample rate, aligned to the reference (delay removed, then
trimmed or zero-padded to its length) and matched to one integrated loudness (BS.1770).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import scipy.signal

from codec.audio import audio_info, find_audio_files, load_audio, save_audio
from codec.eval.mushra.design import (
    ANCHORS,
    REFERENCE,
    MushraError,
    TestDesign,
    check_name,
)
from codec.eval.mushra.loudness import integrated_loudness

MIN_SAMPLE_RATE = 16000  # the 7 kHz anchor needs a Nyquist frequency above 7 kHz
_PEAK_LIMIT = 10 ** (-1 / 20)  # -1 dBFS: loudness matching never pushes a sample past it
_STOPBAND_DB = 80.0
_TRANSITION_HZ = 250.0


def prepare(
    references: Path,
    systems: Mapping[str, Path],
    out_dir: Path,
    seed: int = 0,
    sample_rate: int | None = None,
    loudness_lufs: float = -23.0,
    max_length_difference: float = 0.5,
    max_delay: float = 0.1,
) -> TestDesign:
    """Write `out_dir/stimuli/<item>/<condition>.wav` and `out_dir/test.json`.

    Args:
        references: folder of reference clips; their relative paths name the items.
        systems: system name -> folder holding a clip of the same relative name (any
            audio extension) for every reference clip.
        out_dir: the test folder; refused if it already holds listeners' results.
        seed: base of every listener's random order of trials and conditions.
        sample_rate: rate of the stimuli; default: the highest rate of the references.
        loudness_lufs: target loudness; lowered for the whole test if some stimulus
            would otherwise peak above -1 dBFS.
        max_length_difference: largest length difference to a reference, in seconds.
        max_delay: largest delay of a system's clip that is found and removed, in seconds.
    """
    out_dir = Path(out_dir)
    if any(Path(out_dir, "results").glob("*.json")):
        raise MushraError(f"{out_dir}: already holds listeners' results; choose another folder")
    items = _items(Path(references))
    if not systems:
        raise MushraError("a MUSHRA test needs at least one system (--system NAME=DIR)")
    clips = {
        check_name("system", name): _system_clips(name, Path(d), items)
        for name, d in systems.items()
    }
    rate = sample_rate or max(audio_info(p).sample_rate for p in items.values())
    if rate < MIN_SAMPLE_RATE:
        raise MushraError(f"sample rate {rate} Hz is too low for the 7 kHz anchor (use >= 16000)")

    stimuli: dict[str, dict[str, np.ndarray]] = {}
    delays: dict[str, dict[str, float]] = {name: {} for name in clips}
    for item, ref_path in items.items():
        ref = load_audio(ref_path, rate)
        stimuli[item] = {REFERENCE: ref}
        stimuli[item] |= {name: lowpass(ref, rate, hz) for name, hz in ANCHORS.items()}
        for name, paths in clips.items():
            wav = load_audio(paths[item], rate)
            label = f"system {name!r}, item {item!r}"
            stimuli[item][name], lag = _aligned(
                label, wav, ref, rate, max_length_difference, max_delay
            )
            delays[name][item] = round(1000 * lag / rate, 3)

    levels = _levels(stimuli, rate)
    target = min(
        loudness_lufs, *(_headroom(stimuli[i][c], lufs) for (i, c), lufs in levels.items())
    )
    design = TestDesign(tuple(items), tuple(clips), rate, seed, target, delays)
    for (item, condition), lufs in levels.items():
        gain = 10 ** ((target - lufs) / 20)
        save_audio(design.stimulus(out_dir, item, condition), stimuli[item][condition] * gain, rate)
    design.save(out_dir)
    return design


def lowpass(wav: np.ndarray, sample_rate: int, cutoff_hz: float) -> np.ndarray:
    """Zero-phase low pass of `[T]` samples: a Kaiser windowed-sinc FIR, 80 dB stop band.

    The stop band starts at `cutoff_hz` (the pass band ends 250 Hz below it), so the
    anchors hold no audible energy above their nominal cut-off.
    """
    numtaps, beta = scipy.signal.kaiserord(_STOPBAND_DB, _TRANSITION_HZ / (sample_rate / 2))
    numtaps |= 1  # odd length: a whole-sample delay that mode="same" removes exactly
    taps = scipy.signal.firwin(
        numtaps, cutoff_hz - _TRANSITION_HZ / 2, window=("kaiser", beta), fs=sample_rate
    )
    return scipy.signal.fftconvolve(wav, taps, mode="same").astype(np.float32)


def _items(references: Path) -> dict[str, Path]:
    """Item name (relative path without extension) -> reference clip."""
    items: dict[str, Path] = {}
    for path in find_audio_files(references):
        name = path.relative_to(references).with_suffix("").as_posix()
        if name in items:
            raise MushraError(f"{path}: two reference clips for item {name!r} ({items[name].name})")
        items[name] = path
    if not items:
        raise MushraError(f"{references}: no reference clips (.wav, .flac or .ogg) found")
    return items


def _system_clips(name: str, folder: Path, items: dict[str, Path]) -> dict[str, Path]:
    """Item -> the system's clip; raises naming the first item the system lacks."""
    if not folder.is_dir():
        raise MushraError(f"system {name!r}: {folder}: no such folder")
    found = {p.relative_to(folder).with_suffix("").as_posix(): p for p in find_audio_files(folder)}
    for item in items:
        if item not in found:
            expected = folder / Path(item).with_suffix(items[item].suffix)
            raise MushraError(
                f"system {name!r} lacks item {item!r}: no {expected} (any audio extension)"
            )
    return {item: found[item] for item in items}


def _aligned(
    label: str,
    wav: np.ndarray,
    ref: np.ndarray,
    rate: int,
    max_length_difference: float,
    max_delay: float,
) -> tuple[np.ndarray, int]:
    """`wav` without its delay, trimmed or zero-padded to `ref`'s length; and the delay.

    Raises `MushraError` (starting with `label`) when the lengths differ too much.
    """
    if abs(wav.size - ref.size) > max_length_difference * rate:
        raise MushraError(
            f"{label}: {wav.size / rate:.2f} s long but the reference is {ref.size / rate:.2f} s "
            f"(over {max_length_difference} s apart)"
        )
    # The delay maximises the cross-correlation; positive means `wav` is late.
    corr = scipy.signal.correlate(wav, ref, mode="full", method="fft")
    lags = scipy.signal.correlation_lags(wav.size, ref.size, mode="full")
    window = np.abs(lags) <= round(max_delay * rate)
    lag = int(lags[window][np.argmax(corr[window])])
    wav = wav[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag, wav.dtype), wav])
    return np.pad(wav[: ref.size], (0, max(0, ref.size - wav.size))), lag


def _levels(stimuli: dict[str, dict[str, np.ndarray]], rate: int) -> dict[tuple[str, str], float]:
    """(item, condition) -> integrated loudness in LUFS; raises on a silent stimulus."""
    levels = {}
    for item, by_condition in stimuli.items():
        for condition, wav in by_condition.items():
            levels[item, condition] = integrated_loudness(wav, rate)
            if not np.isfinite(levels[item, condition]):
                raise MushraError(
                    f"item {item!r}, condition {condition!r}: silent (below -70 LUFS)"
                )
    return levels


def _headroom(wav: np.ndarray, lufs: float) -> float:
    """The highest loudness `wav` can be set to without a peak above -1 dBFS."""
    return lufs + 20 * float(np.log10(_PEAK_LIMIT / np.max(np.abs(wav))))
