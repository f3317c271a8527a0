"""Streaming latency: algorithmic (frame + lookahead) and compute per frame, batch 1.

Usage: `python benchmarks/latency.py [--model speech16k] [--threads 1] [--frames 500]
[--no-postfilter]`

Pushes speech one frame (`hop_length` samples) at a time through a `StreamingEncoder`
and the codes through a `StreamingDecoder` (`chunk_frames=1`), then, as `codec decode`
does, through the model's postfilter if it has one (`StreamingPostFilter`), as a live
call would, and reports the time from the arrival of a frame's last sample to its
decoded audio: first packet (cold caches) and the median and 99th percentile of the
rest. Algorithmic latency is one frame for the causal model (no lookahead), plus the
postfilter's `N - H` samples. Opus's figure, for reference, is its 20 ms frame plus 6.5
ms of encoder lookahead (RFC 6716).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from speed import speech  # benchmarks/, the folder of this script, is on sys.path

from codec import pretrained
from codec.streaming import StreamingDecoder, StreamingEncoder, StreamingPostFilter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=pretrained.DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--no-postfilter", action="store_true", help="the codec's own output")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = pretrained.load(args.model)
    hop, sr = model.hop_length, model.sample_rate
    wav = speech(args.frames * hop / sr + 1, sr)
    enc = StreamingEncoder(model, chunk_frames=1)
    dec = StreamingDecoder(model, chunk_frames=1)
    pf = None if args.no_postfilter else pretrained.load_postfilter(model)
    post = StreamingPostFilter(pf) if pf is not None else None
    times = []
    for i in range(args.frames):
        frame = wav[i * hop : (i + 1) * hop]
        t0 = time.perf_counter()
        audio = dec.push(enc.push(frame))
        if post is not None:
            audio = post.push(audio)  # a hop of the postfilter at a time, lag samples behind
        times.append(time.perf_counter() - t0)
        assert post is not None or audio.shape == (hop,)
    ms = np.array(times) * 1000
    frame_ms = hop / sr * 1000
    pf_ms = pf.config.latency / sr * 1000 if pf is not None else 0.0
    print(
        f"model {model.name}, {args.threads} thread(s), {args.frames} frames of {frame_ms:g} ms, "
        + ("through its postfilter" if pf is not None else "no postfilter")
    )
    print(
        f"algorithmic latency: {frame_ms + pf_ms:g} ms (one frame, no lookahead"
        + (f", {pf_ms:g} ms of postfilter" if pf is not None else "")
        + "); Opus: 26.5 ms"
    )
    print(
        f"compute per frame: first {ms[0]:.2f} ms, median {np.median(ms[1:]):.2f} ms, "
        f"p99 {np.percentile(ms[1:], 99):.2f} ms"
    )
    print(
        f"first packet out after its last sample arrived: {frame_ms + pf_ms + ms[0]:.1f} ms "
        f"(steady state {frame_ms + pf_ms + np.median(ms[1:]):.1f} ms); frame by frame runs at "
        f"{frame_ms / np.median(ms[1:]):.1f}x real time"
    )


if __name__ == "__main__":
    main()
