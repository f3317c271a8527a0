"""Encode/decode speed on CPU, batch 1, 1 and 2 threads, against Opus in the same run.

Usage: `python benchmarks/speed.py [--model speech16k] [--seconds 60] [--threads 1,2]
[--repeats 3] [--chunk-frames 100] [--compile]`

Audio: the bundled speech clips, repeated to `--seconds`. Three ways through the model,
each best of `--repeats`, weight norm folded, inference mode:
- streaming (what `codec encode`/`decode` and pipes use): causal layers carry their
  history, the audio goes through in groups of `--chunk-frames` frames;
- whole: `model.encode`/`model.decode` on the whole signal at once;
- compiled (with `--compile`): the streaming path with torch.compile'd encoder and
  decoder, warm-up (compilation) excluded.
A model with a postfilter (`codec postfilter train`) adds a streaming row with the
postfilter's time on the decoded audio added to decoding: the path `codec decode` takes
by default (the streaming row is then `codec decode --no-postfilter`).
Opus: `opusenc --bitrate 6` and `opusdec` as whole processes on the same audio as WAV.
EnCodec (the neural peer), when the `encodec` package imports: its 24 kHz model with
random weights at 6 kbps on the same speech resampled to 24 kHz, whole signal. The
package needs torchaudio, which has no CPU wheel for this torch; it imports without it
(`pip install --no-deps encodec einops`) because torchaudio is only used by functions
not called here, so a stand-in module is put in its place when it is missing.
Prints times real time and the ratio to Opus.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

from codec import pretrained
from codec.audio import load_audio, save_audio
from codec.streaming import CHUNK_FRAMES, StreamingDecoder, StreamingEncoder, StreamingPostFilter

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


def postfilter_time(model, wav, chunk_frames, repeats) -> float | None:
    """Seconds the model's postfilter (if it has one) takes over decoded audio in
    streaming, in blocks of `chunk_frames` frames as `codec decode` feeds it."""
    pf = pretrained.load_postfilter(model)
    if pf is None:
        return None
    block = chunk_frames * model.hop_length
    blocks = [torch.from_numpy(wav[i : i + block]) for i in range(0, len(wav), block)]

    def run() -> None:
        stream = StreamingPostFilter(pf)
        for b in blocks:
            stream.push(b)
        stream.flush()

    run()  # first-call set-up
    return best_of(repeats, run)


def streaming_times(model, wav, chunk_frames, repeats, compiled=False) -> tuple[float, float]:
    def encoder():
        return StreamingEncoder(model, chunk_frames=chunk_frames, compile=compiled)

    def decoder():
        return StreamingDecoder(model, chunk_frames=chunk_frames, compile=compiled)

    encoders = [encoder() for _ in range(repeats)]
    decoders = [decoder() for _ in range(repeats)]
    warm = wav[: 3 * chunk_frames * model.hop_length]
    for enc, dec in zip(encoders, decoders, strict=True):  # compilation, first-call set-up
        dec.push(enc.push(warm))
    codes = StreamingEncoder(model, chunk_frames=chunk_frames).push(wav)
    t_enc = min(_timed(lambda e=e: e.push(wav)) for e in encoders)
    t_dec = min(_timed(lambda d=d: d.push(codes)) for d in decoders)
    return t_enc, t_dec


def encodec_times(wav: np.ndarray, sample_rate: int, repeats: int):
    """(encode, decode) seconds of EnCodec 24 kHz at 6 kbps, or None if not installed."""
    if "torchaudio" not in sys.modules:
        try:
            import torchaudio  # noqa: F401
        except ImportError:
            sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    try:
        from encodec.model import EncodecModel
    except ImportError:
        return None
    import soxr

    model = EncodecModel.encodec_model_24khz(pretrained=False).eval()
    model.set_target_bandwidth(6.0)
    x = torch.from_numpy(soxr.resample(wav, sample_rate, 24000))[None, None]
    with torch.inference_mode():
        frames = model.encode(x)
        t_enc = best_of(repeats, lambda: model.encode(x))
        t_dec = best_of(repeats, lambda: model.decode(frames))
    return t_enc, t_dec


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=pretrained.DEFAULT_MODEL)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-frames", type=int, default=CHUNK_FRAMES)
    parser.add_argument("--compile", action="store_true")
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

    def report(label: str, t_enc: float, t_dec: float) -> None:
        enc, dec = args.seconds / t_enc, args.seconds / t_dec
        line = f"{label}: encode {enc:.0f}x, decode {dec:.0f}x real time"
        if opus:
            line += (
                f" (ratio to opus: encode {enc * opus[0] / args.seconds:.2f}, "
                f"decode {dec * opus[1] / args.seconds:.2f})"
            )
        print(line, flush=True)

    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            codes = model.encode(x)
            t_enc = best_of(args.repeats, lambda: model.encode(x))
            t_dec = best_of(args.repeats, lambda c=codes: model.decode(c))
        report(f"whole signal, {threads} thread(s)", t_enc, t_dec)
        t_enc, t_dec = streaming_times(model, wav, args.chunk_frames, args.repeats)
        t_pf = postfilter_time(model, wav, args.chunk_frames, args.repeats)
        plain = " (--no-postfilter)" if t_pf is not None else ""
        report(f"streaming ({args.chunk_frames} frames){plain}, {threads} thread(s)", t_enc, t_dec)
        if t_pf is not None:
            label = f"streaming + postfilter (codec decode), {threads} thread(s)"
            report(label, t_enc, t_dec + t_pf)
        if args.compile:
            t_enc, t_dec = streaming_times(model, wav, args.chunk_frames, args.repeats, True)
            report(f"compiled streaming, {threads} thread(s)", t_enc, t_dec)
        peer = encodec_times(wav, sr, args.repeats)
        if peer:
            report(f"EnCodec 24 kHz 6 kbps (random weights), {threads} thread(s)", *peer)
        else:
            print("EnCodec: not installed (pip install --no-deps encodec einops)")


if __name__ == "__main__":
    main()
