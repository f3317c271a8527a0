"""`make demo`: compress a bundled speech clip with the default model at several
bitrates, decode it, and print bitrate, quality and speed.

Run as `python -m codec.demo [AUDIO] [--model NAME]`; outputs go to `out/demo/`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from codec import pretrained
from codec.audio import load_audio
from codec.errors import CodecError
from codec.eval.metrics import pesq_wb, stoi
from codec.inference import decode_file, encode_file

CLIP = Path(__file__).parent / "data" / "speech_en.flac"


def run(audio: Path, model_name: str, out_dir: Path, console: Console) -> None:
    model = pretrained.load(model_name)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    ref = load_audio(audio, model.sample_rate)
    seconds = len(ref) / model.sample_rate
    console.print(
        f"model [bold]{model.name}[/bold] ({model.model_id.hex()[:8]}), "
        f"clip {audio.name}: {seconds:.2f} s, outputs in {out_dir}/"
    )
    table = Table(
        "bitrate", "bytes", "payload kbps", "file kbps", "PESQ-WB", "STOI", "enc xRT", "dec xRT",
        caption="xRT: times faster than real time; file kbps includes the 64-byte header; "
        "rows decode as codec decode does, through the model's learnt postfilter if it has "
        "one; no pf: the codec's own output (codec decode --no-postfilter)",
    )  # fmt: skip
    encode_file(model, audio, out_dir / "warmup.codes", 6.0)  # first call pays one-off costs
    runs = [(1.5, True), (3.0, True), (6.0, True)]
    if pretrained.load_postfilter(model) is not None:
        runs.append((6.0, False))  # `codec decode --no-postfilter`
    for kbps, postfilter in runs:
        tag = f"{kbps:g}kbps" + ("" if postfilter else "_no_postfilter")
        codes, wav = out_dir / f"{audio.stem}_{tag}.codes", out_dir / f"{audio.stem}_{tag}.wav"
        t0 = time.perf_counter()
        header = encode_file(model, audio, codes, kbps)
        t1 = time.perf_counter()
        decode_file(model, codes, wav, postfilter=postfilter)
        t2 = time.perf_counter()
        dec = load_audio(wav, model.sample_rate)
        size = codes.stat().st_size
        table.add_row(
            f"{kbps:g} kbps" + ("" if postfilter else " no pf"),
            f"{size} B",
            f"{header.bitrate / 1000:.2f}",
            f"{size * 8 / seconds / 1000:.2f}",
            f"{pesq_wb(ref, dec, model.sample_rate):.2f}",
            f"{stoi(ref, dec, model.sample_rate):.3f}",
            f"{seconds / (t1 - t0):.0f}",
            f"{seconds / (t2 - t1):.0f}",
        )
    (out_dir / "warmup.codes").unlink()
    console.print(table)
    console.print(
        f"Model card (quality next to Opus): {pretrained.resolve(model_name) / 'README.md'}"
    )
    console.print("Listen: " + ", ".join(str(p) for p in sorted(out_dir.glob("*.wav"))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", nargs="?", type=Path, default=CLIP)
    parser.add_argument("--model", default=pretrained.DEFAULT_MODEL)
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    args = parser.parse_args(argv)
    console = Console()
    try:
        run(args.audio, args.model, args.out, console)
    except CodecError as e:
        Console(stderr=True).print(f"[red]error:[/red] {e}", highlight=False)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
