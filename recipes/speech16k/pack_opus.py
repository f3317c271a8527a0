"""Pack a speech corpus small enough to carry to a GPU machine (the shipped model's data).

The GPU machine of the shipped run took at most 64 MiB with the repository, and the
3-hour speech16k corpus is 239 MB of FLAC. This writes its train split as Ogg Opus
(libsndfile's compression level 0.93: about 20 kbps, PESQ-WB about 4.4 against the
FLAC) in files of about 60 s per speaker (utterances joined by 0.1 s of silence, so the
Ogg headers cost little), and copies `--valid N` valid files as FLAC for in-run
validation. Decode the Opus files to WAV on the GPU machine before training (random
crops of WAV are cheap; of Ogg Opus they are not) with `--unpack`.

    python recipes/speech16k/pack_opus.py /path/to/speech16k packed/ [--valid 24]
    python recipes/speech16k/pack_opus.py --unpack packed/ wav/      # on the GPU machine
"""

from __future__ import annotations

import argparse
import collections
import csv
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
GAP = np.zeros(SAMPLE_RATE // 10, np.float32)


def pack(src: Path, dst: Path, *, seconds: float = 60.0, valid: int = 24, seed: int = 0) -> int:
    """Write `dst/` (train/*.ogg, valid/*.flac, manifest.tsv); returns the file count."""
    (dst / "train").mkdir(parents=True, exist_ok=True)
    (dst / "valid").mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader(open(src / "manifest.tsv", encoding="utf-8"), delimiter="\t"))
    by_speaker = collections.defaultdict(list)
    for row in rows:
        if row["split"] == "train":
            by_speaker[row["speaker"]].append(row)
    manifest = [("path", "seconds", "sample_rate", "speaker", "split")]
    for speaker, speaker_rows in sorted(by_speaker.items()):
        parts: list[np.ndarray] = []
        for i, row in enumerate(speaker_rows):
            try:
                wav, rate = sf.read(src / row["path"], dtype="float32")
            except (sf.SoundFileError, RuntimeError) as e:
                print(f"skipped {row['path']}: {e}")
                wav, rate = None, SAMPLE_RATE
            if wav is not None:
                if rate != SAMPLE_RATE or wav.ndim != 1:
                    raise SystemExit(f"{row['path']}: expected 16 kHz mono")
                parts += [wav, GAP]
            full = sum(len(p) for p in parts) >= seconds * SAMPLE_RATE
            if parts and (full or i == len(speaker_rows) - 1):
                joined = np.concatenate(parts)
                name = f"train/{speaker}-{len(manifest):04d}.ogg"
                sf.write(
                    dst / name,
                    joined,
                    SAMPLE_RATE,
                    format="OGG",
                    subtype="OPUS",
                    compression_level=0.93,
                )
                manifest.append(
                    (name, repr(len(joined) / SAMPLE_RATE), SAMPLE_RATE, speaker, "train")
                )
                parts = []
    valid_rows = [row for row in rows if row["split"] == "valid"]
    chosen = np.random.default_rng(seed).choice(
        len(valid_rows), min(valid, len(valid_rows)), replace=False
    )
    for i in sorted(chosen):
        row = valid_rows[i]
        name = "valid/" + row["path"].replace("/", "_").split("_", 1)[1]
        shutil.copy(src / row["path"], dst / name)
        manifest.append((name, row["seconds"], SAMPLE_RATE, row["speaker"], "valid"))
    with open(dst / "manifest.tsv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter="\t", lineterminator="\n").writerows(manifest)
    return len(manifest) - 1


def _to_wav(paths: tuple[Path, Path]) -> str | None:
    """Decode one file to 16-bit WAV; returns why it could not, or None."""
    src, dst = paths
    try:
        wav, rate = sf.read(src, dtype="float32")
    except (sf.SoundFileError, RuntimeError) as e:
        return f"skipped {src}: {e}"
    sf.write(dst, wav, rate, subtype="PCM_16")
    return None


def unpack(src: Path, dst: Path, workers: int | None = None) -> int:
    """Write a packed copy's audio to `dst/` as 16-bit WAV (a process per core), with its
    manifest (written last, through a temporary file, so a manifest means a whole copy);
    unreadable files are reported and left out. Returns the file count."""
    with open(src / "manifest.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    jobs = []
    for row in rows:
        name = str(Path(row["path"]).with_suffix(".wav"))
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        jobs.append((src / row["path"], dst / name))
        row["path"] = name
    with ProcessPoolExecutor(workers or os.cpu_count()) as pool:
        problems = list(pool.map(_to_wav, jobs, chunksize=4))
    kept = [row for row, problem in zip(rows, problems, strict=True) if problem is None]
    for problem in filter(None, problems):
        print(problem)
    tmp = dst / "manifest.tsv.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
    os.replace(tmp, dst / "manifest.tsv")
    return len(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="corpus folder with manifest.tsv (speech16k)")
    parser.add_argument("dst", type=Path, help="folder to write")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each packed file")
    parser.add_argument("--valid", type=int, default=24, help="valid files to copy as FLAC")
    parser.add_argument(
        "--unpack", action="store_true", help="decode a packed copy (src) to WAV in dst"
    )
    args = parser.parse_args()
    if args.unpack:
        n = unpack(args.src, args.dst)
    else:
        n = pack(args.src, args.dst, seconds=args.seconds, valid=args.valid)
    print(f"{n} files in {args.dst}")


if __name__ == "__main__":
    main()
