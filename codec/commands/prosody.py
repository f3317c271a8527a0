"""`codec prosody`: train the prosody VAEs and look at what they make of an utterance."""

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


@prosody_app.command("eval")
def eval_command(
    runs: Annotated[list[Path], typer.Argument(help="`codec prosody train` run folders.")],
    k: Annotated[int, typer.Option("--k", help="Importance samples of the IWAE bound.")] = 500,
    limit: Annotated[
        int,
        typer.Option("--limit", help="Score only the first N validation utterances (0: all)."),
    ] = 0,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write every run's figures as JSON.")
    ] = None,
) -> None:
    """Score trained prosody models on their held-out split: NLL (IWAE-K), ELBO, KL,
    F0 RMSE in cents, voicing error and active units, as a markdown table.

    Examples:

        codec prosody eval runs/prosody-rnn runs/prosody-vrnn

        codec prosody eval runs/prosody-table/* --k 500 --limit 64 --json table.json
    """
    with user_errors():
        import json

        from codec.atomic import write_bytes_atomic
        from codec.errors import CodecError
        from codec.eval.prosody_report import TABLE_HEADER, evaluate_run, table_row

        if k < 1:
            raise CodecError(f"--k must be >= 1, got {k}")
        results = []
        out.print(TABLE_HEADER, highlight=False, soft_wrap=True)
        for run in runs:
            results.append(evaluate_run(run, k=k, limit=limit))
            out.print(table_row(results[-1]), highlight=False, soft_wrap=True)
        for r in results:  # what the global latents hold, where there are any
            if "mutual_information" in r:
                mi = ", ".join(f"{n} {v:.2f}" for n, v in r["mutual_information"].items())
                line = f"{r['kind']}: mutual information (nats) {mi}"
                if "speaker_purity" in r:
                    pur = ", ".join(f"{n} {v:.2f}" for n, v in r["speaker_purity"].items())
                    line += (
                        f"; speaker purity of k-means ({r['speakers']} speakers) {pur}, "
                        f"one cluster {r['speaker_purity_one_cluster']:.2f}"
                    )
                out.print(line, highlight=False, soft_wrap=True)
        if json_out is not None:
            write_bytes_atomic(json_out, (json.dumps(results, indent=2) + "\n").encode())


@prosody_app.command("analyze")
def analyze_command(
    wav: Annotated[Path, typer.Argument(help="An utterance (WAV, FLAC, OGG).")],
    run: Annotated[Path, typer.Option("--run", "-r", help="A `codec prosody train` run folder.")],
    plot: Annotated[
        Path | None, typer.Option("--plot", "-p", help="Write contours and latents as PNG.")
    ] = None,
) -> None:
    """Show what a trained prosody model makes of one utterance: its F0 and energy
    contours, the model's reconstruction, the errors and the latents.

    Examples:

        codec prosody analyze speech.wav --run runs/prosody-vrae --plot speech.png
    """
    with user_errors():
        from codec.eval.prosody_analysis import analyze, plot_analysis

        a = analyze(run, wav)
        out.print(
            f"{wav} ({a.kind}, {len(a.reference)} frames): ELBO {a.elbo_per_frame:.3f} "
            f"nats/frame, F0 RMSE {a.f0_rmse_cents:.0f} cents, "
            f"voicing error {a.voicing_error:.1%}",
            highlight=False,
            soft_wrap=True,
        )
        for name, means in a.latents.items():
            shown = " ".join(f"{v:+.2f}" for v in means)
            out.print(f"  {name}: {shown}", highlight=False, soft_wrap=True)
        if plot:
            out.print(f"  plot: {plot_analysis(a, plot)}", highlight=False, soft_wrap=True)
