"""`codec train`, `codec export` and `codec manifest`: thin commands over `codec.train`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from codec.commands import err, out, user_errors
from codec.errors import CodecError


def train_command(
    recipe: Annotated[Path, typer.Argument(help="A YAML recipe (see `recipes/`).")],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="`section.key=value` changes to the recipe, e.g. `data.root=DIR`."),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Run folder [default: runs/RECIPE-NAME]."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the run folder's checkpoint.")
    ] = False,
    compile_: Annotated[
        bool, typer.Option("--compile", help="torch.compile the encoder, decoder and critic.")
    ] = False,
    device: Annotated[
        str | None, typer.Option("--device", help="auto, cpu or cuda [default: the recipe's].")
    ] = None,
) -> None:
    """Train a codec from a recipe; checkpoints, TensorBoard and logs go to the run folder.

    Examples:

        codec train recipes/folder/codec16k.yaml data.root=my_audio/

        codec train recipes/librispeech/codec16k.yaml --out runs/ls --resume

        torchrun --nproc_per_node 4 -m codec train recipes/librispeech/codec16k.yaml
    """
    with user_errors():
        from codec.config import load_recipe, replace_recipe
        from codec.train.loop import train as run_training

        r = load_recipe(recipe, overrides or [])
        if compile_:
            r = replace_recipe(r, compile=True)
        if device:
            r = replace_recipe(r, device=device)
        run_dir = out_dir or Path("runs") / recipe.stem
        result = run_training(r, run_dir, resume=resume)
        if result.rank != 0:
            return
        figures = " ".join(f"{k} {v:.4f}" for k, v in result.valid.items())
        out.print(
            f"trained to step {result.step} in {run_dir}; {figures}".rstrip("; "),
            highlight=False,
            soft_wrap=True,
        )


def export_command(
    checkpoint: Annotated[Path, typer.Argument(help="A run folder or its `checkpoint.pt`.")],
    dst: Annotated[Path, typer.Argument(help="Model folder to write (safetensors, config, card).")],
    card: Annotated[
        Path | None, typer.Option("--card", help="Markdown model card to use as README.md.")
    ] = None,
) -> None:
    """Export a trained codec as a model folder like those in `pretrained/`.

    Examples:

        codec export runs/codec16k models/mycodec

        codec encode -m models/mycodec speech.wav speech.codes
    """
    with user_errors():
        from codec.train.export import export as export_model

        text = card.read_text() if card else None
        model_id = export_model(checkpoint, dst, card=text)
        out.print(
            f"{checkpoint} -> {dst} (model id {model_id.hex()})", highlight=False, soft_wrap=True
        )


def manifest_command(
    src: Annotated[Path, typer.Argument(help="A folder of audio files.")],
    dst: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Manifest to write [default: SRC/manifest.tsv]."),
    ] = None,
    valid_fraction: Annotated[
        float, typer.Option("--valid-fraction", help="Share of files held out for validation.")
    ] = 0.05,
) -> None:
    """List a folder's audio (path, duration, speaker, split) as a training manifest.

    The speaker is the first folder below SRC; the validation files are chosen by a
    stable hash of their path, so adding files never moves old ones between splits.

    Examples:

        codec manifest my_audio/

        codec train recipes/folder/codec16k.yaml data.manifest=my_audio/manifest.tsv
    """
    with user_errors():
        from codec.train.manifest import scan_folder, write_manifest

        if not src.is_dir():
            raise CodecError(f"{src}: not a folder")
        scan = scan_folder(src, valid_fraction=valid_fraction)
        for reason in scan.skipped:
            err.print(f"[yellow]skipped[/yellow] {reason}", highlight=False, soft_wrap=True)
        if not scan.entries:
            raise CodecError(f"{src}: no readable audio files")
        target = dst or src / "manifest.tsv"
        write_manifest(target, scan.entries)
        splits: dict[str, list[float]] = {}
        for e in scan.entries:
            splits.setdefault(e.split, []).append(e.seconds)
        summary = ", ".join(
            f"{name} {len(s)} files {sum(s) / 3600:.2f} h" for name, s in sorted(splits.items())
        )
        out.print(f"{target}: {summary}", highlight=False, soft_wrap=True)
