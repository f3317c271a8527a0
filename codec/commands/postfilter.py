"""`codec postfilter train`: a learnt postfilter for a trained codec's decoded audio."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from codec import pretrained
from codec.commands import out, user_errors

postfilter_app = typer.Typer(
    no_args_is_help=True,
    help="A learnt postfilter on a codec's decoded audio (`codec decode` applies it).",
)


@postfilter_app.command("train")
def train_command(
    model: Annotated[str, typer.Argument(help="The codec: a model name or folder.")],
    data: Annotated[
        Path, typer.Argument(help="Audio: a corpus folder (its manifest's splits) or any folder.")
    ],
    out_dir: Annotated[
        Path,
        typer.Option("--out", "-o", help="Where postfilter.safetensors and .json are written."),
    ],
    steps: Annotated[int, typer.Option(help="Training steps.")] = 6000,
    seconds: Annotated[
        float,
        typer.Option(help="Wall-clock budget for the training steps: fewer steps if needed."),
    ] = 0.0,
    batch_size: Annotated[int, typer.Option(help="Crops of about 1 s per step.")] = 32,
    bitrates: Annotated[
        str, typer.Option(help="kbps the codec codes the audio at, comma-separated.")
    ] = "1.5,3,6",
    limit: Annotated[
        int, typer.Option(min=0, help="At most this many training files (0: all).")
    ] = 0,
    n_fft: Annotated[int, typer.Option(help="STFT frame; with the hop, sets the latency.")] = 512,
    hop_length: Annotated[
        int,
        typer.Option(
            help="STFT hop: n_fft/2 (sqrt-Hann window, 50% overlap) or n_fft/4 (Hann, "
            "75% overlap: twice the frames and N/4 more latency) [default: n_fft/2]."
        ),
    ] = 0,
    channels: Annotated[int, typer.Option(help="Width of the convolution network.")] = 96,
    resynthesis: Annotated[
        bool,
        typer.Option(
            help="Score the filtered audio (overlap-added and framed again), not the "
            "gained spectra: a quarter slower to train (no better so far, docs/postfilter.md)."
        ),
    ] = False,
    overshoot: Annotated[
        float,
        typer.Option(
            help="Weight of the bins the filter makes louder than the input's, against 1 "
            "for those it leaves quieter (PESQ weighs added components more)."
        ),
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the weights and the crops.")] = 0,
    cache: Annotated[
        Path | None,
        typer.Option(
            help="Folder that keeps the coded corpus (about 1.3 GB for 3 hours of audio), "
            "so another postfilter for the same codec and data skips the coding."
        ),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads [default: all].")] = None,
    device: Annotated[
        str, typer.Option(help="auto (CUDA when there is one), cpu or cuda.")
    ] = "auto",
) -> None:
    """Train a postfilter on MODEL's own output for DATA's train split.

    The codec stays as it is: its codes, and `.codes` files made with it, do not change.
    Copy the two files into the model's folder to install the postfilter; a postfilter
    made for another codec is refused when the model loads it.

    Examples:

        codec postfilter train speech16k /data/speech16k --out runs/pf

        cp runs/pf/postfilter.* pretrained/speech16k/
    """
    with user_errors():
        import torch

        from codec.config import PostFilterConfig
        from codec.errors import CodecError
        from codec.train.distributed import pick_device
        from codec.train.manifest import list_files
        from codec.train.postfilter import (
            CodedCorpus,
            PostFilterTraining,
            cached_code_corpus,
            code_corpus,
            train_postfilter,
        )

        if threads:
            torch.set_num_threads(threads)
        if device not in ("auto", "cpu", "cuda"):
            raise CodecError(f"--device: expected auto, cpu or cuda, got {device!r}")
        on = pick_device(device, "--device cuda")
        try:
            rates = tuple(float(b) for b in bitrates.split(","))
        except ValueError:
            raise CodecError(
                f"--bitrates: expected numbers such as 1.5,3,6, got {bitrates!r}"
            ) from None
        codec = pretrained.load(model)
        hop = hop_length or n_fft // 2
        config = PostFilterConfig(
            sample_rate=codec.sample_rate, n_fft=n_fft, hop_length=hop, channels=channels
        )
        training = PostFilterTraining(
            rates,
            steps,
            batch_size,
            # crops as long as at the default hop (about 1 s at 16 kHz), whatever the hop
            segment_frames=max(
                1, PostFilterTraining.segment_frames * PostFilterConfig.hop_length // hop
            ),
            seed=seed,
            seconds=seconds,
            resynthesis=resynthesis,
            overshoot=overshoot,
        )
        for b in rates:
            codec.n_codebooks_for(b)  # an unavailable bitrate fails before any work
        if not data.is_dir():
            raise CodecError(f"{data}: not a folder of audio")
        has_manifest = (data / "manifest.tsv").is_file()
        train_files = list_files(data, "train" if has_manifest else None)[: limit or None]
        valid_files = list_files(data, "valid") if has_manifest else []
        if not train_files:
            raise CodecError(f"{data}: no training audio")

        def log(line: str) -> None:
            out.print(line, highlight=False, soft_wrap=True)

        log(f"coding {len(train_files)} training files at {bitrates} kbps on {on}")
        codec_id = pretrained.id_of(codec)
        codec.to(on)

        def coded(files: list[Path]) -> CodedCorpus:
            if cache is None:
                return code_corpus(codec, files, rates, log)
            return cached_code_corpus(codec, files, rates, cache, codec_id, log)

        train = coded(train_files)
        valid = coded(valid_files) if valid_files else None
        pf, metrics = train_postfilter(train, valid, config, training, log, device=on)
        codec.cpu()
        out_dir.mkdir(parents=True, exist_ok=True)
        pretrained.save_postfilter(pf, out_dir, pretrained.id_of(codec), metrics)
        log(
            f"{out_dir}: postfilter for {codec.name} ({pretrained.id_of(codec).hex()[:8]}), "
            f"{metrics}"
        )
