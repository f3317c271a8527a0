"""What a change of the shipped architecture would cost on a CPU: Snake, other ratios,
another width.

Usage: `python benchmarks/architecture.py [--model speech16k] [--variant
"activation=snake"] [--variant "ratios=[2,4,5,8] channels=16" ...] [--seconds 30]
[--threads 2] [--repeats 3]`

Builds the model's architecture and each `--variant` of it (space-separated `key=value`
changes of its config, values in YAML; default: `activation=snake`), random weights (a
k-means pass on the speech fills the codebooks), weight norm folded, and times streaming
encode and decode (the path `codec encode`/`decode` use) of the bundled speech repeated
to `--seconds`, best of `--repeats`, in this process. The models take turns, so a
machine that slows down or speeds up during the run favours none. Prints each one's
parameters, multiply-adds per second of audio, times real time and its speed as a
ratio to the shipped architecture's: a variant has to gain its quality at that speed.
"""

from __future__ import annotations

import argparse
import platform

import torch
import yaml
from speed import speech, streaming_times  # benchmarks/, the folder of this script, is on sys.path
from torch import nn

from codec import pretrained
from codec.config import CodecConfig, from_dict, to_dict
from codec.models.codec import CodecModel
from codec.nn.conv import fold_weight_norm


def variant(config: CodecConfig, spec: str) -> CodecConfig:
    """`config` with the space-separated `key=value` changes of `spec` applied."""
    data = to_dict(config)
    for item in spec.split():
        key, sep, value = item.partition("=")
        if not sep or key not in data:
            raise SystemExit(f"--variant {spec!r}: {item!r} is not KEY=VALUE of a config key")
        data[key] = yaml.safe_load(value)
    return from_dict(CodecConfig, data, where=f"--variant {spec!r}")


def built(config: CodecConfig, wav) -> CodecModel:
    torch.manual_seed(0)
    model = CodecModel(config).train()
    with torch.no_grad():
        model(torch.from_numpy(wav[: 10 * config.sample_rate])[None, None])
    return fold_weight_norm(model.eval())


def multiply_adds(module: nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    """Multiply-adds of the convolutions in `module(x)`, and `module(x)`."""
    total = 0

    def count(m: nn.Module, inputs: tuple[torch.Tensor], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv1d):
            total += out.shape[-1] * m.out_channels * m.in_channels * m.kernel_size[0]
        elif isinstance(m, nn.ConvTranspose1d):
            total += inputs[0].shape[-1] * m.out_channels * m.in_channels * m.kernel_size[0]

    hooks = [m.register_forward_hook(count) for m in module.modules()]
    try:
        out = module(x)
    finally:
        for hook in hooks:
            hook.remove()
    return total, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=pretrained.DEFAULT_MODEL)
    parser.add_argument("--variant", action="append", help="KEY=VALUE ... (repeatable)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = pretrained.load(args.model).config
    configs = {"as shipped": config}
    configs.update({spec: variant(config, spec) for spec in args.variant or ["activation=snake"]})
    wav = speech(args.seconds, config.sample_rate)
    print(
        f"{platform.processor() or platform.machine()}, {args.threads} thread(s), torch "
        f"{torch.__version__}; {args.model}'s architecture, {args.seconds:g} s of speech"
    )
    speeds: dict[str, tuple[float, float]] = {}
    with torch.inference_mode():
        models = {name: built(c, wav) for name, c in configs.items()}
        for _ in range(args.repeats):
            for name, model in models.items():
                t_enc, t_dec = streaming_times(model, wav, 100, 1)
                enc, dec = speeds.get(name, (0.0, 0.0))
                speeds[name] = (max(enc, args.seconds / t_enc), max(dec, args.seconds / t_dec))
        base_enc, base_dec = speeds["as shipped"]
        width = max(len(name) for name in models)
        second = torch.zeros(1, 1, config.sample_rate)
        for name, model in models.items():
            params = sum(p.numel() for p in CodecModel(configs[name]).parameters()) / 1e6
            macs_enc, latents = multiply_adds(model.encoder, second)
            macs_dec, _ = multiply_adds(model.decoder, latents)
            enc, dec = speeds[name]
            print(
                f"{name:{width}s}  {params:5.2f} M params  MMAC/s encode {macs_enc / 1e6:5.0f} "
                f"decode {macs_dec / 1e6:5.0f}  encode {enc:6.1f}x  decode {dec:6.1f}x real "
                f"time  ({enc / base_enc:.2f} / {dec / base_dec:.2f} of the shipped)"
            )


if __name__ == "__main__":
    main()
