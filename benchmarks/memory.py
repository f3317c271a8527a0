"""Peak memory (and time) of `codec encode` / `codec decode` on a 1-hour file, and Opus's.

Usage: `python benchmarks/memory.py [--minutes 60] [--model speech16k] [--keep DIR]
[--entropy]`

Writes a generated speech-like 16 kHz FLAC of `--minutes` (the bundled clips repeated
with small gain changes), then runs each command as its own process and reads its peak
resident set size from the kernel (`getrusage` of the waited child, in a fresh parent
per command, so each figure is that command's alone). Opus runs on the same FLAC file in the same
run. The target is a peak under 1 GB whatever the length.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from codec.audio import AudioWriter, load_audio

DATA = Path(__file__).resolve().parent.parent / "codec" / "data"
# A parent that runs one command and prints its child's peak RSS (kB) and wall time.
_MEASURE = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
elapsed = time.perf_counter() - t0
if proc.returncode:
    sys.exit(proc.stderr.decode()[-2000:])
print(json.dumps({"rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "seconds": elapsed}))
"""


def measure(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one command run to completion."""
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, *cmd], check=True, capture_output=True, text=True
    )
    result = json.loads(out.stdout)
    return result["rss_kb"] / 1024, result["seconds"]


def write_long_file(path: Path, minutes: float, sample_rate: int = 16000) -> float:
    """A FLAC of `minutes` of speech, written block by block (bounded memory here too)."""
    clips = np.concatenate([load_audio(p, sample_rate) for p in sorted(DATA.glob("*.flac"))])
    rng = np.random.default_rng(0)
    total = int(minutes * 60 * sample_rate)
    written = 0
    with AudioWriter(path, sample_rate) as writer:
        while written < total:
            block = clips[: total - written] * rng.uniform(0.5, 1.0)
            writer.write(block)
            written += len(block)
    return written / sample_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--model", default="speech16k")
    parser.add_argument("--keep", type=Path, help="keep the generated files in this folder")
    parser.add_argument(
        "--entropy", action="store_true", help="also encode and decode with --entropy (the prior)"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="codec-memory-"))
    try:
        long_flac = tmp / "long.flac"
        seconds = write_long_file(long_flac, args.minutes)
        codec = [sys.executable, "-m", "codec"]
        print(f"{seconds / 60:.0f} minutes of 16 kHz speech, model {args.model}")
        rows = [
            ("codec --help (start-up only)", [*codec, "--help"]),
            ("codec encode", [*codec, "encode", str(long_flac), str(tmp / "long.codes"),
                              "-m", args.model]),
            ("codec decode", [*codec, "decode", str(tmp / "long.codes"), str(tmp / "out.wav"),
                              "-m", args.model]),
        ]  # fmt: skip
        if args.entropy:
            rows += [
                ("codec encode --entropy", [*codec, "encode", str(long_flac),
                                            str(tmp / "long-e.codes"), "-m", args.model,
                                            "--entropy"]),
                ("codec decode (entropy-coded)", [*codec, "decode", str(tmp / "long-e.codes"),
                                                  str(tmp / "out-e.wav"), "-m", args.model]),
            ]  # fmt: skip
        if shutil.which("opusenc") and shutil.which("opusdec"):
            rows += [
                ("opusenc 6 kbps", ["opusenc", "--quiet", "--bitrate", "6", str(long_flac),
                                    str(tmp / "long.opus")]),
                ("opusdec", ["opusdec", "--quiet", "--rate", "16000", str(tmp / "long.opus"),
                             str(tmp / "opus.wav")]),
            ]  # fmt: skip
        for label, cmd in rows:
            rss, wall = measure(cmd)
            speed = f", {seconds / wall:.0f}x real time" if "help" not in label else ""
            print(f"{label:32s} peak RSS {rss:7.0f} MB, {wall:6.1f} s{speed}", flush=True)
    finally:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for f in tmp.iterdir():
                shutil.move(str(f), args.keep / f.name)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
