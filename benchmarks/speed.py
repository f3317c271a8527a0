"""Encode/decode speed of a model on CPU, batch 1, against Opus in the same process.

Usage: `python benchmarks/speed.py [--model speech16k] [--seconds 60] [--threads 1,2]`

Audio: the bundled speech clips, repeated to `--seconds`. Our figures are the model's
`encode`/`decode` on the whole signal (inference mode, weight norm folded), best of
`--repeats`. Opus: `opusenc --bitrate 6` and `opusdec` as whole processes on the same
audio written as WAV, best of `--repeats`. Prints times real time and the ratio to Opus.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from codec import pretrained
from codec.audio import load_audio, save_audio

DATA = Path(__file__).resolve().parent.parent / "codec" / "data"


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def speech(seconds: float, sample_rate: int) -> np.ndarray:
    clips = [load_audio(p, sample_rate) for p in sorted(DATA.glob("*.flac"))]
    one = np.concatenate(clips)
    reps = int(np.ceil(seconds * sample_rate / len(one)))
    return np.tile(one, reps)[: int(seconds * sample_rate)]


def opus_times(wav: np.ndarray, sample_rate: int, repeats: int) -> tuple[float, float] | None:
    if not (shutil.which("opusenc") and shutil.which("opusdec")):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, enc, dec = Path(tmp) / "in.wav", Path(tmp) / "x.opus", Path(tmp) / "out.wav"
        save_audio(src, wav, sample_rate)
        quiet = {"check": True, "capture_output": True}
        t_enc = best_of(
            repeats,
            lambda: subprocess.run(
                ["opusenc", "--quiet", "--bitrate", "6", str(src), str(enc)], **quiet
            ),
        )
        t_dec = best_of(
            repeats,
            lambda: subprocess.run(
                ["opusdec", "--quiet", "--rate", str(sample_rate), str(enc), str(dec)], **quiet
            ),
        )
    return t_enc, t_dec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=pretrained.DEFAULT_MODEL)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    model = pretrained.load(args.model)
    sr = model.sample_rate
    wav = speech(args.seconds, sr)
    x = torch.from_numpy(wav)
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads available, torch {torch.__version__}"
    )
    print(f"model {model.name}, {args.seconds:g} s of speech, batch 1")
    opus = opus_times(wav, sr, args.repeats)
    if opus:
        print(
            f"opus 6 kbps (whole process): encode {args.seconds / opus[0]:.0f}x, "
            f"decode {args.seconds / opus[1]:.0f}x real time"
        )
    else:
        print("opus: opusenc/opusdec not found (apt-get install opus-tools)")
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            codes = model.encode(x, 6.0)
            t_enc = best_of(args.repeats, lambda: model.encode(x, 6.0))
            t_dec = best_of(args.repeats, lambda c=codes: model.decode(c))
        enc, dec = args.seconds / t_enc, args.seconds / t_dec
        line = f"codec, {threads} thread(s): encode {enc:.0f}x, decode {dec:.0f}x real time"
        if opus:
            line += (
                f" (ratio to opus: encode {enc / (args.seconds / opus[0]):.2f}, "
                f"decode {dec / (args.seconds / opus[1]):.2f})"
            )
        print(line)


if __name__ == "__main__":
    main()
