"""Where a codec loses: how well it reproduces the magnitude spectrum, band by band.

Usage: `python benchmarks/bands.py --data DIR [--split valid] [--limit 60]
[--model speech16k [--model runs/x/export ...]] [--bitrate 6] [--baseline opus:6,12]
[--oracle 1000-4000 ...] [--threads 2]`

For every file of the split: the model's output at `--bitrate` (and, for a model with a
postfilter, that output postfiltered), and the decoder's output from the unquantised
latents (what the autoencoder does without its codebooks). Both are
compared with the input by STFT magnitudes (512-point Hann window, hop 256), and the
errors are pooled per frequency band over all files:

    SNR(band) = 10 log10( sum |X|^2 / sum (|Y| - |X|)^2 )

A band whose SNR is near 0 dB has its magnitudes wrong by as much as they are large.
The second table, each band's level, `10 log10( sum |Y|^2 / sum |X|^2 )`, tells the two
ways that happens apart: a band near 0 dB there has the input's energy but not its fine
structure (the harmonics of voiced speech smeared into noise); a band far below 0 dB is
missing (a muffled codec). `--baseline` adds classical codecs (the specs of `codec eval`)
measured the same way. Also printed: each band's share of the input's energy. Without
`--data`, the bundled clips in `codec/data` are used.

The level is weighted by energy, so the loudest bins (harmonic peaks of loud vowels)
decide it. The third table weighs every time-frequency bin alike, as a log-spectral loss
does: per band, the mean of `20 log10(|Y| / |X|)` over the bins where the input is within
`FLOOR_DB` of the file's loudest bin (both magnitudes floored there), and its mean
absolute value. A codec with a small log bias but a low level keeps the average
magnitude and flattens the peaks; the mean absolute difference is what is left to learn.

`--oracle LO-HI` (repeatable) says what a band is worth to the metrics: it gives each
system's mean PESQ-WB and STOI as it is, and with the magnitudes of that band (in Hz)
taken from the input while the system's own phase is kept (512-point Hann window, hop
128, resynthesised by overlap-add). A band whose oracle lifts PESQ-WB most is where
better modelling pays most.
"""

from __future__ import annotations

import argparse
import platform
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from entropy import files  # benchmarks/, the folder of this script, is on sys.path

from codec import pretrained
from codec.audio import load_audio
from codec.eval.baselines import parse_baselines
from codec.eval.metrics import pesq_wb, stoi
from codec.train.losses import float32_stft

EDGES = (0, 250, 500, 1000, 2000, 4000, 6000, 8000)
N_FFT, HOP = 512, 256
WINDOW = torch.hann_window(N_FFT)
FLOOR_DB = 60.0  # the log table's floor, below the file's loudest bin
ORACLE_HOP = 128  # 75% overlap: the Hann window sums to a constant, for resynthesis
ORACLE_WINDOW = WINDOW.double()


def magnitudes(wav: torch.Tensor) -> torch.Tensor:
    """`[T] -> [frames, N_FFT // 2 + 1]`."""
    return float32_stft(wav[None], N_FFT, HOP, WINDOW)[0].abs().T


def band_sums(power: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """`[frames, bins]` -> the sum over each band of `EDGES`, `[bands]` in float64."""
    freqs = torch.fft.rfftfreq(N_FFT, 1 / sample_rate)
    bands = zip(EDGES, EDGES[1:], strict=False)
    return torch.stack([power[:, (freqs >= lo) & (freqs < hi)].double().sum() for lo, hi in bands])


def log_differences(mag: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`20 log10(|Y| / |X|)` per bin, `[frames, bins]`, and the mask of the bins where the
    input `ref` is within `FLOOR_DB` of its loudest bin (both floored there)."""
    floor = ref.max().clamp_min(1e-12) * 10 ** (-FLOOR_DB / 20)
    diff = 20 * (mag.clamp_min(floor).log10() - ref.clamp_min(floor).log10())
    return diff, (ref >= floor).to(diff.dtype)


def parse_band(spec: str) -> tuple[float, float]:
    """ "1000-4000" -> (1000.0, 4000.0), for `--oracle`."""
    try:
        lo, hi = (float(v) for v in spec.split("-"))
    except ValueError:
        msg = f"a band is LO-HI in Hz, e.g. 1000-4000: {spec!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not 0 <= lo < hi:
        raise argparse.ArgumentTypeError(f"a band needs 0 <= LO < HI: {spec!r}")
    return lo, hi


def oracle_stft(wav: torch.Tensor) -> torch.Tensor:
    """`[T] -> [N_FFT // 2 + 1, frames]` complex, the resynthesisable STFT of `--oracle`."""
    return torch.stft(wav.double(), N_FFT, ORACLE_HOP, window=ORACLE_WINDOW, return_complex=True)


def with_input_magnitudes(
    spec_out: torch.Tensor,
    spec_ref: torch.Tensor,
    band: tuple[float, float],
    sample_rate: int,
    length: int,
) -> torch.Tensor:
    """The output, `[length]`, whose `oracle_stft` is `spec_out`, with the magnitudes of
    `band` (Hz) replaced by those of `spec_ref` (the input's), its own phase kept.
    Outside the band it comes back unchanged (up to the STFT's round trip, about 1e-7)."""
    freqs = torch.fft.rfftfreq(N_FFT, 1 / sample_rate, dtype=torch.float64)
    inside = ((freqs >= band[0]) & (freqs < band[1]))[:, None]
    swapped = torch.polar(spec_ref.abs(), spec_out.angle())
    mixed = torch.where(inside, swapped, spec_out)
    return torch.istft(mixed, N_FFT, ORACLE_HOP, window=ORACLE_WINDOW, length=length).float()


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
    ap.add_argument(
        "--oracle",
        action="append",
        type=parse_band,
        default=[],
        metavar="LO-HI",
        help="also PESQ-WB and STOI with this band's magnitudes from the input (repeatable)",
    )
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sources = args.model or [pretrained.DEFAULT_MODEL]
    models = [pretrained.load(name) for name in sources]
    # Rows are keyed by label: two folders both called `model` (runs/*/model) would
    # otherwise sum into one row. Such models are labelled by the path given instead.
    model_names = [m.name for m in models]
    labels = [
        n if model_names.count(n) == 1 else src for n, src in zip(model_names, sources, strict=True)
    ]
    width = max(28, 14 + max(map(len, labels)))  # the row labels add up to 14 characters
    rate = models[0].sample_rate
    if any(m.sample_rate != rate for m in models):
        ap.error("the models must share one sample rate")
    baselines = parse_baselines(args.baseline)
    paths = files(args.data, args.split, args.limit)
    print(
        f"{platform.processor() or platform.machine()}, {args.threads} thread(s); "
        f"{len(paths)} files of {args.data or 'codec/data'} ({args.split}); SNR in dB"
    )

    def outputs(wav: np.ndarray) -> Iterator[tuple[str, torch.Tensor]]:
        """Each system's output for `wav`, `[T]`, labelled."""
        x = torch.from_numpy(wav)
        for model, name in zip(models, labels, strict=True):
            n_q = model.n_codebooks_for(args.bitrate)
            padded = torch.nn.functional.pad(x, (0, -len(x) % model.hop_length))
            latents = model.encoder(padded[None, None])
            coded = model.decoder(model.quantizer.decode(model.quantizer.encode(latents, n_q)))
            yield f"{name} {args.bitrate:g} kbps", coded[0, 0, : len(x)]
            if (pf := pretrained.load_postfilter(model)) is not None:
                yield f"{name} + postfilter", pf(coded[0, :, : len(x)])[0]
            yield f"{name} unquantised", model.decoder(latents)[0, 0, : len(x)]
        for baseline in baselines:
            yield baseline.name, torch.from_numpy(baseline.run(wav, rate).decoded)

    energy = torch.zeros(len(EDGES) - 1, dtype=torch.float64)
    errors: dict[str, torch.Tensor] = {}
    levels: dict[str, torch.Tensor] = {}
    # logs[label]: per band, the sums of the log difference, of its size, and the bin count
    logs: dict[str, torch.Tensor] = {}
    # scores[label][column]: per-file (PESQ-WB, STOI), column "as is" or an oracle band
    scores: dict[str, dict[str, list[tuple[float, float]]]] = {}
    columns = ["as is", *(f"{lo:g}-{hi:g}" for lo, hi in args.oracle)]
    with torch.inference_mode():
        for path in paths:
            wav = load_audio(path, rate)
            x = torch.from_numpy(wav)
            ref = magnitudes(x)
            spec_ref = oracle_stft(x) if args.oracle else None
            energy += band_sums(ref**2, rate)
            for label, out in outputs(wav):
                mag = magnitudes(out)
                errors[label] = errors.get(label, 0) + band_sums((mag - ref) ** 2, rate)
                levels[label] = levels.get(label, 0) + band_sums(mag**2, rate)
                diff, mask = log_differences(mag, ref)
                sums = [band_sums(v, rate) for v in (diff * mask, diff.abs() * mask, mask)]
                logs[label] = logs.get(label, 0) + torch.stack(sums)
                if not args.oracle or label.endswith("unquantised"):
                    continue
                spec_out = oracle_stft(out)
                variants = [
                    out,
                    *(
                        with_input_magnitudes(spec_out, spec_ref, band, rate, len(out))
                        for band in args.oracle
                    ),
                ]
                row = scores.setdefault(label, {c: [] for c in columns})
                for column, y in zip(columns, variants, strict=True):
                    y = y.numpy()
                    row[column].append((pesq_wb(wav, y, rate), stoi(wav, y, rate)))
    names = [f"{lo}-{hi}" for lo, hi in zip(EDGES, EDGES[1:], strict=False)]
    print(f"{'':{width}s}" + "".join(f"{n:>11s}" for n in names))
    for label, error in errors.items():
        snr = 10 * torch.log10(energy / error)
        print(f"{label:{width}s}" + "".join(f"{v:11.1f}" for v in snr.tolist()))
    share = (energy / energy.sum()).tolist()
    print(f"{'energy share of the input':{width}s}" + "".join(f"{100 * v:10.1f}%" for v in share))
    print("\nlevel of the output against the input (dB)")
    for label, level in levels.items():
        db = 10 * torch.log10(level / energy)
        print(f"{label:{width}s}" + "".join(f"{v:11.1f}" for v in db.tolist()))
    print(f"\nlog level / mean absolute log difference (dB), bins above peak - {FLOOR_DB:g} dB")
    print(f"{'':{width}s}" + "".join(f"{n:>13s}" for n in names))
    for label, (bias, size, count) in logs.items():
        cells = [f"{b:.1f} / {a:.1f}" for b, a in zip(bias / count, size / count, strict=True)]
        print(f"{label:{width}s}" + "".join(f"{c:>13s}" for c in cells))
    if scores:
        print("\nPESQ-WB / STOI, as is and with each band's magnitudes from the input (Hz)")
        print(f"{'':{width}s}" + "".join(f"{c:>15s}" for c in columns))
        for label, row in scores.items():
            means = [np.nanmean(np.array(row[c]), axis=0) for c in columns]
            print(f"{label:{width}s}" + "".join(f"{p:9.2f} {s:.3f}" for p, s in means))


if __name__ == "__main__":
    main()
