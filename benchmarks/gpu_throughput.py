"""Batched encode/decode throughput on a GPU (times real time), eager and compiled.

Usage: `python benchmarks/gpu_throughput.py [--model speech16k] [--batch 1,16,64,256]
[--seconds 10] [--repeats 5] [--compile]`

Encodes a batch of `--seconds` clips of speech with `model.encode` (all codebooks) and
decodes the codes, timing with CUDA synchronisation after warm-up; prints seconds of
audio per second of compute. Without a CUDA device it says so and exits.
"""

from __future__ import annotations

import argparse
import time

import torch
from speed import speech  # benchmarks/, the folder of this script, is on sys.path

from codec import pretrained


def timed(fn, repeats: int) -> float:
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=pretrained.DEFAULT_MODEL)
    parser.add_argument("--batch", default="1,16,64,256")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: GPU throughput not measured")
        return
    model = pretrained.load(args.model).cuda()
    print(f"device {torch.cuda.get_device_name()}, model {model.name}, {args.seconds:g} s clips")
    clip = torch.from_numpy(speech(args.seconds, model.sample_rate)).cuda()
    variants = [("eager", model.encode, model.decode)]
    if args.compile:
        variants.append(("compiled", torch.compile(model.encode), torch.compile(model.decode)))
    for label, encode, decode in variants:
        for batch in [int(b) for b in args.batch.split(",")]:
            x = clip.expand(batch, -1).contiguous()
            with torch.inference_mode():
                codes = encode(x)
                t_enc = timed(lambda x=x, f=encode: f(x), args.repeats)
                t_dec = timed(lambda c=codes, f=decode: f(c), args.repeats)
            audio = batch * args.seconds
            print(
                f"{label}, batch {batch:4d}: encode {audio / t_enc:9.0f}x, "
                f"decode {audio / t_dec:9.0f}x real time",
                flush=True,
            )


if __name__ == "__main__":
    main()
