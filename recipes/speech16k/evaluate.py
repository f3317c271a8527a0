"""Score a model on a corpus split next to Opus, for the model card.

Usage: `python recipes/speech16k/evaluate.py MODEL DATA_ROOT [--split valid]
[--bitrates 1.5,3,6] [--opus 6,8,12] [--json OUT.json]`

Every file of the split is encoded and decoded through `.codes` files (so the bitrate
is the real payload), and through opusenc/opusdec; PESQ-WB, STOI, SI-SDR and mel
distance are averaged over files. Files that cannot be read are listed and skipped;
PESQ is NaN for clips it cannot score (too short), and those are counted.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from codec import pretrained
from codec.audio import load_audio
from codec.errors import CodecError
from codec.eval.baselines import run_opus
from codec.eval.metrics import score
from codec.inference import decode_file, encode_file
from codec.train.data import list_files


def _mean(values: list[float]) -> tuple[float, int]:
    finite = [v for v in values if math.isfinite(v)]
    return (float(np.mean(finite)) if finite else float("nan")), len(values) - len(finite)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("data_root", type=Path)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--bitrates", default="1.5,3,6")
    parser.add_argument("--opus", default="6,8,12")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--limit", type=int, help="score only the first N files (smoke test)")
    args = parser.parse_args()

    model = pretrained.load(args.model)
    sr = model.sample_rate
    systems = [("codec", float(b)) for b in args.bitrates.split(",") if b]
    systems += [("opus", float(b)) for b in args.opus.split(",") if b]
    scores: dict[str, dict[str, list[float]]] = {}
    skipped, seconds, codec_time = [], 0.0, 0.0
    files = list_files(args.data_root, args.split)[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        for i, path in enumerate(files):
            try:
                ref = load_audio(path, sr)
            except CodecError as e:
                skipped.append(str(e))
                continue
            seconds += len(ref) / sr
            for kind, kbps in systems:
                name = f"{kind} {kbps:g} kbps"
                if kind == "codec":
                    t0 = time.perf_counter()
                    header = encode_file(model, path, Path(tmp) / "x.codes", kbps)
                    decode_file(model, Path(tmp) / "x.codes", Path(tmp) / "x.wav")
                    codec_time += time.perf_counter() - t0
                    dec = load_audio(Path(tmp) / "x.wav", sr)
                    bits = header.bitrate * header.duration
                else:
                    result = run_opus(ref, sr, kbps)
                    dec, bits = result.decoded, result.packet_bytes * 8
                s = score(ref, dec, sr)
                row = scores.setdefault(
                    name, {k: [] for k in ("pesq_wb", "stoi", "si_sdr", "mel", "bits")}
                )
                for key, value in zip(
                    ("pesq_wb", "stoi", "si_sdr", "mel", "bits"),
                    (s.pesq_wb, s.stoi, s.si_sdr, s.mel_distance, bits),
                    strict=True,
                ):
                    row[key].append(value)
            if (i + 1) % 20 == 0:
                print(f"{i + 1}/{len(files)} files", flush=True)

    table = []
    print(f"\n{len(files) - len(skipped)} files, {seconds:.1f} s of audio ({args.split} split)")
    for reason in skipped:
        print(f"skipped: {reason}")
    print("\n| system | kbps (measured) | PESQ-WB | STOI | SI-SDR (dB) | mel distance |")
    print("|---|---|---|---|---|---|")
    for name, row in scores.items():
        pesq, pesq_nan = _mean(row["pesq_wb"])
        entry = {
            "system": name,
            "kbps": sum(row["bits"]) / seconds / 1000,
            "pesq_wb": pesq,
            "pesq_unscored": pesq_nan,
            "stoi": _mean(row["stoi"])[0],
            "si_sdr": _mean(row["si_sdr"])[0],
            "mel_distance": _mean(row["mel"])[0],
        }
        table.append(entry)
        print(
            f"| {name} | {entry['kbps']:.2f} | {pesq:.2f} | {entry['stoi']:.3f} | "
            f"{entry['si_sdr']:.1f} | {entry['mel_distance']:.3f} |"
        )
    speed = seconds * sum(1 for k, _ in systems if k == "codec") / max(codec_time, 1e-9)
    print(f"\ncodec encode+decode through files: {speed:.0f}x real time")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "files": len(files) - len(skipped),
                    "seconds": seconds,
                    "skipped": skipped,
                    "results": table,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
