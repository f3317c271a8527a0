"""Entropy coding with the prior: file sizes with and without `--entropy`, and speed.

Usage: `python benchmarks/entropy.py [--data DIR] [--split valid] [--limit N]
[--bitrate 6,3,1.5] [--model speech16k] [--threads 2] [--speed-seconds 30] [--no-sizes]`

Sizes: every file of the split (held-out speech: neither the codec nor the prior saw
it) is encoded once; its codes are range-coded by the prior and decoded back, and the
decoded codes must equal the originals. Reported per bitrate: bits per token, payload
and whole-file sizes with and without entropy coding, and the saving. Without `--data`,
the bundled clips in `codec/data` are used.

Speed: `--speed-seconds` of the bundled speech (repeated), batch 1: the prior's coding
alone (entropy encode, entropy decode) and the whole `codec encode --entropy` /
`codec decode` path, each as times real time, next to the plain (bit-packed) path run
in the same process, and the ratio between them.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import torch
from speed import best_of, speech  # benchmarks/, the folder of this script, is on sys.path

from codec import pretrained
from codec.audio import iter_audio_blocks
from codec.bitstream.format import ENTROPY_HEADER_SIZE, HEADER_SIZE, from_bytes, plain_file_size
from codec.inference import decode_stream, encode_bytes, encode_stream, prior_for
from codec.prior.coding import EntropyEncoder, decode_codes
from codec.train.manifest import read_manifest

DATA = Path(__file__).resolve().parent.parent / "codec" / "data"


def files(data: Path | None, split: str, limit: int) -> list[Path]:
    if data is None:
        return sorted(DATA.glob("*.flac"))
    entries = [e for e in read_manifest(data / "manifest.tsv") if e.split == split]
    return [Path(e.path) for e in entries][: limit or None]


def sizes(model, prior, paths: list[Path], bitrate: float) -> dict:
    """Bits per token and bytes, plain and entropy-coded, over `paths`."""
    n_q = model.n_codebooks_for(bitrate)
    tokens = plain = coded = seconds = 0.0
    n_files = 0
    for path in paths:
        try:
            header, codes = encode_stream(
                model, iter_audio_blocks(path, model.sample_rate), bitrate
            )
        except Exception as e:  # noqa: BLE001 - a benchmark reports and goes on
            print(f"  skipped {path}: {e}")
            continue
        if not header.n_frames:
            continue
        enc = EntropyEncoder(prior.exact, n_q)
        enc.push(codes)
        payload = enc.finish()
        back = np.concatenate(list(decode_codes(prior.exact, payload, n_q, codes.shape[1])), 1)
        if not np.array_equal(back, codes):
            raise SystemExit(f"{path}: entropy decoding did not restore the codes")
        tokens += codes.size
        plain += plain_file_size(header) - HEADER_SIZE
        coded += len(payload)
        seconds += header.duration
        n_files += 1
    return dict(
        bitrate=bitrate, files=n_files, seconds=seconds, tokens=int(tokens),
        plain_bytes=int(plain), coded_bytes=int(coded),
        plain_file=int(plain + n_files * HEADER_SIZE),
        coded_file=int(coded + n_files * ENTROPY_HEADER_SIZE),
        bits_per_token=coded * 8 / tokens, kbps=coded * 8 / seconds / 1000,
        plain_kbps=plain * 8 / seconds / 1000,
    )  # fmt: skip


def speed(model, prior, seconds: float, repeats: int = 2) -> dict:
    """Times real time of entropy coding alone and of the whole encode/decode paths."""
    wav = speech(seconds, model.sample_rate)
    header, codes = encode_stream(model, [wav])
    n_q = codes.shape[0]

    def prior_encode() -> bytes:
        enc = EntropyEncoder(prior.exact, n_q)
        enc.push(codes)
        return enc.finish()

    payload = prior_encode()
    out = {
        "prior_encode": seconds / best_of(repeats, prior_encode),
        "prior_decode": seconds
        / best_of(repeats, lambda: list(decode_codes(prior.exact, payload, n_q, codes.shape[1]))),
    }
    for name, entropy in (("plain", False), ("entropy", True)):
        data = encode_bytes(model, [wav], entropy=entropy)[1]
        out[f"{name}_encode"] = seconds / best_of(
            repeats, lambda e=entropy: encode_bytes(model, [wav], entropy=e)
        )
        f = from_bytes(data)
        out[f"{name}_decode"] = seconds / best_of(
            repeats, lambda f=f: list(decode_stream(model, f))
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default=pretrained.DEFAULT_MODEL)
    ap.add_argument("--data", type=Path, default=None, help="a corpus folder with manifest.tsv")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--limit", type=int, default=0, help="at most this many files (0: all)")
    ap.add_argument("--bitrate", default="6,3,1.5")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--speed-seconds", type=float, default=30.0, help="0: skip the speed part")
    ap.add_argument("--no-sizes", action="store_true", help="skip the size part")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = pretrained.load(args.model)
    prior = prior_for(model)
    print(f"# {platform.processor() or platform.machine()}, {args.threads} threads, "
          f"torch {torch.__version__}, prior {prior.prior_id.hex()[:8]}")  # fmt: skip
    paths = [] if args.no_sizes else files(args.data, args.split, args.limit)
    if paths:
        print(f"\n## sizes: {len(paths)} files of {args.data or DATA} ({args.split})\n")
        print(
            "| kbps | files | seconds | bits/token | plain kbps | entropy kbps "
            "| payload saving | file saving |"
        )
        print("|---|---|---|---|---|---|---|---|")
    with torch.inference_mode():
        for rate in [float(r) for r in args.bitrate.split(",")] if paths else []:
            s = sizes(model, prior, paths, rate)
            print(
                f"| {rate:g} | {s['files']} | {s['seconds']:.0f} | {s['bits_per_token']:.2f} | "
                f"{s['plain_kbps']:.2f} | {s['kbps']:.2f} | "
                f"{1 - s['coded_bytes'] / s['plain_bytes']:.1%} | "
                f"{1 - s['coded_file'] / s['plain_file']:.1%} |",
                flush=True,
            )
        if args.speed_seconds:
            v = speed(model, prior, args.speed_seconds)
            print(f"\n## speed: {args.speed_seconds:g} s of speech, batch 1, x real time\n")
            print("| | plain | entropy-coded | entropy / plain |")
            print("|---|---|---|---|")
            for what in ("encode", "decode"):
                p, e = v[f"plain_{what}"], v[f"entropy_{what}"]
                print(f"| codec {what} (whole path) | {p:.1f} | {e:.1f} | {e / p:.2f} |")
            print(f"| prior alone: range encode | | {v['prior_encode']:.1f} | |")
            print(f"| prior alone: range decode | | {v['prior_decode']:.1f} | |")


if __name__ == "__main__":
    main()
