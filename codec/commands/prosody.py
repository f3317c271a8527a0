"""`codec prosody`: train the prosody VAEs (evaluation and analysis commands to come)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from codec.commands import out, user_errors

prosody_app = typer.Typer(
    no_args_is_help=True,
    help="Prosody latents: VAEs over pitch, voicing and energy (VRAE, VRNN, SRNN, Ladder).",
)


@prosody_app.command("train", context_settings={"allow_interspersed_args": True})
def train_command(
    recipe: Annotated[Path, typer.Argument(help="A YAML prosody recipe (see recipes/prosody/).")],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="`section.key=value` changes, e.g. `model.kind=ladder`."),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Run folder [default: runs/prosody-KIND]."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the run folder's checkpoint.")
    ] = False,
) -> None:
    """Train one prosody model; checkpoint and `metrics.json` go to the run folder.

    Examples:

        codec prosody train recipes/prosody/speech16k.yaml model.kind=vrae

        codec prosody train recipes/prosody/speech16k.yaml model.kind=ladder --out runs/ladder
    """
    with user_errors():
        from codec.config import load_prosody_recipe
        from codec.train.prosody import train_prosody

        r = load_prosody_recipe(recipe, overrides or [])
        run_dir = out_dir or Path("runs") / f"prosody-{r.model.kind}"
        metrics = train_prosody(r, run_dir, resume=resume)
        figures = " ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
        )
        out.print(f"{run_dir}: {figures}", highlight=False, soft_wrap=True)
