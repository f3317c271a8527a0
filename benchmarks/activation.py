"""What Snake (DAC's activation) would cost the shipped architecture on a CPU.

Usage: `python benchmarks/activation.py [--model speech16k] [--seconds 30] [--threads 2]
[--repeats 3]`

Builds the model's architecture twice, with ELU (as shipped) and with Snake, random
weights (a k-means pass on the speech fills the codebooks), weight norm folded, and times
streaming encode and decode (the path `codec encode`/`decode` use) of the bundled speech
repeated to `--seconds`, best of `--repeats`, in this process. The two models take turns,
so a machine that slows down or speeds up during the run favours neither. Prints times
real time and Snake's ratio to ELU: a Snake model has to gain its quality at that speed.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform

import torch
from speed import speech, streaming_times  # benchmarks/, the folder of this script, is on sys.path

from codec import pretrained
from codec.models.codec import CodecModel
from codec.nn.conv import fold_weight_norm


def built(config, wav) -> CodecModel:
    torch.manual_seed(0)
    model = CodecModel(config).train()
    with torch.no_grad():
        model(torch.from_numpy(wav[: 10 * config.sample_rate])[None, None])
    return fold_weight_norm(model.eval())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=pretrained.DEFAULT_MODEL)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = pretrained.load(args.model).config
    wav = speech(args.seconds, config.sample_rate)
    print(
        f"{platform.processor() or platform.machine()}, {args.threads} thread(s), torch "
        f"{torch.__version__}; {args.model}'s architecture, {args.seconds:g} s of speech"
    )
    speeds = {}
    with torch.inference_mode():
        models = {
            n: built(dataclasses.replace(config, activation=n), wav) for n in ("elu", "snake")
        }
        for _ in range(args.repeats):
            for name, model in models.items():
                t_enc, t_dec = streaming_times(model, wav, 100, 1)
                enc, dec = speeds.get(name, (0.0, 0.0))
                speeds[name] = (max(enc, args.seconds / t_enc), max(dec, args.seconds / t_dec))
        for name, (enc, dec) in speeds.items():
            print(f"{name:6s} encode {enc:6.1f}x  decode {dec:6.1f}x real time")
    enc, dec = (s / e for s, e in zip(speeds["snake"], speeds["elu"], strict=True))
    print(f"snake / elu speed: encode {enc:.2f}, decode {dec:.2f}")


if __name__ == "__main__":
    main()
