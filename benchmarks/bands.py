"""Where a codec loses: how well it reproduces the magnitude spectrum, band by band.

Usage: `python benchmarks/bands.py --data DIR [--split valid] [--limit 60]
[--model speech16k [--model runs/x/export ...]] [--bitrate 6] [--baseline opus:6,12]
[--threads 2]`

For every file of the split: the model's output at `--bitrate`, and the decoder's output
from the unquantised latents (what the autoencoder does without its codebooks). Both are
compared with the input by STFT magnitudes (512-point Hann window, hop 256), and the
errors are pooled per frequency band over all files:

    SNR(band) = 10 log10( sum |X|^2 / sum (|Y| - |X|)^2 )

A band whose SNR is near 0 dB has its magnitudes wrong by as much as they are large:
its fine structure (the harmonics of voiced speech) is not reproduced, whatever its
envelope, which a mel loss measures, looks like. `--baseline` adds classical codecs
(the specs of `codec eval`) measured the same way. Also printed: each band's share of
the input's energy. Without `--data`, the bundled clips in `codec/data` are used.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch
from entropy import files  # benchmarks/, the folder of this script, is on sys.path

from codec import pretrained
from codec.audio import load_audio
from codec.eval.baselines import parse_baselines

EDGES = (0, 250, 500, 1000, 2000, 4000, 6000, 8000)
N_FFT, HOP = 512, 256


def magnitudes(wav: torch.Tensor) -> torch.Tensor:
    """`[T] -> [frames, N_FFT // 2 + 1]`."""
    spec = torch.stft(wav, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
    return spec.abs().T


def band_masks(sample_rate: int) -> list[torch.Tensor]:
    freqs = torch.fft.rfftfreq(N_FFT, 1 / sample_rate)
    return [(freqs >= lo) & (freqs < hi) for lo, hi in zip(EDGES, EDGES[1:], strict=False)]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", action="append", help="a model name or folder (repeatable)")
    ap.add_argument("--data", type=Path, default=None, help="a corpus folder with manifest.tsv")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--limit", type=int, default=60, help="at most this many files (0: all)")
    ap.add_argument("--bitrate", type=float, default=6.0)
    ap.add_argument("--baseline", action="append", default=[], help="e.g. opus:6,12")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    paths = files(args.data, args.split, args.limit)
    print(
        f"{platform.processor() or platform.machine()}, {args.threads} thread(s); "
        f"{len(paths)} files of {args.data or 'codec/data'} ({args.split}); SNR in dB"
    )
    names = [f"{lo}-{hi}" for lo, hi in zip(EDGES, EDGES[1:], strict=False)]
    print(f"{'':28s}" + "".join(f"{n:>11s}" for n in names))

    def row(label: str, energy: torch.Tensor, error: torch.Tensor) -> None:
        snr = 10 * torch.log10(energy / error)
        print(f"{label:28s}" + "".join(f"{v:11.1f}" for v in snr.tolist()))

    for name in args.model or [pretrained.DEFAULT_MODEL]:
        model = pretrained.load(name)
        masks = band_masks(model.sample_rate)
        energy = torch.zeros(len(masks), dtype=torch.float64)
        errors = torch.zeros(2, len(masks), dtype=torch.float64)
        n_q = model.n_codebooks_for(args.bitrate)
        with torch.inference_mode():
            for path in paths:
                x = torch.from_numpy(load_audio(path, model.sample_rate))
                padded = torch.nn.functional.pad(x, (0, -len(x) % model.hop_length))
                latents = model.encoder(padded[None, None])
                coded = model.decoder(model.quantizer.decode(model.quantizer.encode(latents, n_q)))
                unquantised = model.decoder(latents)
                ref = magnitudes(x)
                for i, out in enumerate((coded, unquantised)):
                    diff = (magnitudes(out[0, 0, : len(x)]) - ref).double() ** 2
                    errors[i] += torch.stack([diff[:, m].sum() for m in masks])
                energy += torch.stack([ref[:, m].double().pow(2).sum() for m in masks])
        row(f"{model.name} {args.bitrate:g} kbps", energy, errors[0])
        row(f"{model.name} unquantised", energy, errors[1])
    for baseline in parse_baselines(args.baseline):
        error = torch.zeros(len(masks), dtype=torch.float64)
        for path in paths:
            wav = load_audio(path, model.sample_rate)
            out = torch.from_numpy(baseline.run(wav, model.sample_rate).decoded)
            diff = (magnitudes(out) - magnitudes(torch.from_numpy(wav))).double() ** 2
            error += torch.stack([diff[:, m].sum() for m in masks])
        row(baseline.name, energy, error)
    share = (energy / energy.sum()).tolist()
    print(f"{'energy share of the input':28s}" + "".join(f"{100 * v:10.1f}%" for v in share))


if __name__ == "__main__":
    main()
