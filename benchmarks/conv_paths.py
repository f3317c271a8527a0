"""Which CPU path each streaming convolution of a model should take, measured.

Usage: `python benchmarks/conv_paths.py [--model speech16k] [--threads 1]
[--chunk-frames 100] [--rounds 15]`

For every stride-1 convolution of the model's encoder and decoder with more than one
tap, one streaming call on a chunk of `--chunk-frames` frames (the input it sees in
`codec encode`/`decode`), two ways in the same process:
- default: the history concatenated to the input, then PyTorch's convolution (oneDNN);
- tapwise: one GEMM per tap, accumulated, reading the history and the input in place
  (`codec.nn.conv._tapwise_conv`), which streaming uses for layers of at most
  `TAPWISE_MAX_CHANNELS` output channels.
Then the whole streaming encoder and decoder with the tapwise path on and off,
alternated over `--rounds` rounds (medians: this machine's speed drifts from minute to
minute). Prints microseconds and the ratio default / tapwise (above 1: tapwise faster).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import codec.nn.conv as conv_paths
from codec import pretrained
from codec.nn.conv import Conv1d, set_streaming
from codec.streaming import CHUNK_FRAMES, StreamingDecoder, StreamingEncoder


def median_us(fn, rounds: int, calls: int = 10) -> float:
    fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(times)


def layer_inputs(model, chunk_frames: int) -> list[tuple[str, Conv1d, torch.Tensor]]:
    """Each stride-1, multi-tap `Conv1d` with a random input of the length it sees."""
    found = []
    for part in ("encoder", "decoder"):
        module = getattr(model, part)
        shapes: dict[str, tuple[int, ...]] = {}
        hooks = [
            m.register_forward_hook(lambda m, i, o, n=n, s=shapes: s.__setitem__(n, i[0].shape))
            for n, m in module.named_modules()
            if isinstance(m, Conv1d)
        ]
        with torch.inference_mode():
            if part == "encoder":
                model.encoder(torch.zeros(1, 1, chunk_frames * model.hop_length))
            else:
                model.decoder(torch.zeros(1, model.config.latent_dim, chunk_frames))
        for h in hooks:
            h.remove()
        for name, m in module.named_modules():
            if isinstance(m, Conv1d) and m.conv.stride[0] == 1 and m.conv.kernel_size[0] > 1:
                found.append((f"{part}.{name}", m, torch.randn(shapes[name])))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="speech16k")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--chunk-frames", type=int, default=CHUNK_FRAMES)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = pretrained.load(args.model)
    narrow = conv_paths.TAPWISE_MAX_CHANNELS
    print(f"model {args.model}, {args.threads} thread(s), chunks of {args.chunk_frames} frames")
    print(
        f"{'layer':32s} {'in':>4s} {'out':>4s} {'taps':>4s} {'dil':>4s} {'steps':>6s} "
        f"{'default us':>10s} {'tapwise us':>10s} {'ratio':>6s}"
    )
    with torch.inference_mode():
        for name, layer, x in layer_inputs(model, args.chunk_frames):
            timed = {}
            for rule in (0, 10**6):  # never tapwise, always tapwise
                conv_paths.TAPWISE_MAX_CHANNELS = rule
                set_streaming(layer)
                timed[rule] = median_us(lambda layer=layer, x=x: layer(x), args.rounds)
                set_streaming(layer, False)
            c = layer.conv
            print(
                f"{name:32s} {c.in_channels:4d} {c.out_channels:4d} {c.kernel_size[0]:4d} "
                f"{c.dilation[0]:4d} {x.shape[-1]:6d} {timed[0]:10.0f} {timed[10**6]:10.0f} "
                f"{timed[0] / timed[10**6]:6.2f}"
            )

    wav = np.random.default_rng(0).standard_normal(10 * model.sample_rate).astype(np.float32)
    wav *= 0.1
    codes = StreamingEncoder(model, chunk_frames=args.chunk_frames).push(wav)
    times = {rule: {"encode": [], "decode": []} for rule in (0, narrow)}
    for _ in range(args.rounds):
        for rule in times:
            conv_paths.TAPWISE_MAX_CHANNELS = rule
            enc = StreamingEncoder(model, chunk_frames=args.chunk_frames)
            dec = StreamingDecoder(model, chunk_frames=args.chunk_frames)
            t0 = time.perf_counter()
            enc.push(wav)
            t1 = time.perf_counter()
            dec.push(codes)
            t2 = time.perf_counter()
            times[rule]["encode"].append(t1 - t0)
            times[rule]["decode"].append(t2 - t1)
    conv_paths.TAPWISE_MAX_CHANNELS = narrow
    for what in ("encode", "decode"):
        off, on = (statistics.median(times[r][what]) for r in (0, narrow))
        print(
            f"streaming {what}, 10 s: default path {10 / off:.0f}x, tapwise up to "
            f"{narrow} channels {10 / on:.0f}x real time (ratio {off / on:.2f})"
        )


if __name__ == "__main__":
    main()
