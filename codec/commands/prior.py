"""`codec prior train|export` and `codec sample`: the Transformer prior over codes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from codec import pretrained
from codec.commands import out, progress_bar, user_errors

prior_app = typer.Typer(
    no_args_is_help=True,
    help="A Transformer prior over a codec's codes: for `encode --entropy` and `sample`.",
)


@prior_app.command("train", context_settings={"allow_interspersed_args": True})
def train_command(
    recipe: Annotated[Path, typer.Argument(help="A YAML prior recipe (see recipes/prior/).")],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="`section.key=value` changes, e.g. `train.steps=500`."),
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path("runs/prior"),
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the run folder's checkpoint.")
    ] = False,
) -> None:
    """Extract a codec's codes from audio and train a prior on them.

    The run folder gets `checkpoint.pt`, `metrics.json` (validation bits per token and
    perplexity per codebook) and the prior's `prior.safetensors` and `prior.json`.

    Examples:

        codec prior train recipes/prior/speech16k.yaml data.root=/data/speech16k

        codec prior train recipes/prior/speech16k.yaml train.steps=100 --out runs/p
    """
    with user_errors():
        from codec.config import load_prior_recipe
        from codec.train.prior import train_prior

        r = load_prior_recipe(recipe, overrides or [])
        m = train_prior(r, out_dir, resume=resume)
        out.print(
            f"{out_dir}: {m['bits_per_token']:.3f} bits/token on {m['tokens']} validation "
            f"tokens after {m['steps']} steps",
            highlight=False,
            soft_wrap=True,
        )


@prior_app.command("export")
def export_command(
    run: Annotated[Path, typer.Argument(help="A `codec prior train` run folder.")],
    model: Annotated[
        str, typer.Argument(help="The codec's model folder (or name) to store the prior in.")
    ],
) -> None:
    """Store a trained prior beside its codec, where `encode --entropy` finds it.

    Refused when the prior was trained on another codec's codes.

    Example:

        codec prior export runs/prior pretrained/speech16k
    """
    with user_errors():
        from codec.atomic import write_bytes_atomic
        from codec.errors import CodecError
        from codec.prior.io import PRIOR_CONFIG, PRIOR_WEIGHTS, load_prior_files

        prior = load_prior_files(run)
        codec = pretrained.load(model)
        if prior.codec_model_id != codec.model_id:
            raise CodecError(
                f"{run}: the prior was trained on codes of model "
                f"{prior.codec_model_id.hex()[:8]}..., not of '{model}' "
                f"({codec.model_id.hex()[:8]}...)"
            )
        target = pretrained.resolve(model)
        for name in (PRIOR_WEIGHTS, PRIOR_CONFIG):
            write_bytes_atomic(target / name, (run / name).read_bytes())
        out.print(f"{run} -> {target} (prior {prior.prior_id.hex()[:8]})", highlight=False)


def sample_command(
    dst: Annotated[Path, typer.Argument(help="Output audio (.wav or .flac).")],
    seconds: Annotated[
        float, typer.Option("--seconds", "-s", help="Seconds of audio to generate.")
    ] = 5.0,
    prompt: Annotated[
        Path | None,
        typer.Option("--prompt", "-p", help="Continue this audio (it starts the output)."),
    ] = None,
    temperature: Annotated[
        float, typer.Option("--temperature", "-t", help="Softmax temperature; 0 is greedy.")
    ] = 1.0,
    top_k: Annotated[
        int, typer.Option("--top-k", help="Sample among the k likeliest codes (0: all).")
    ] = 0,
    top_p: Annotated[
        float, typer.Option("--top-p", help="Nucleus sampling: the likeliest codes up to p.")
    ] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same audio).")] = 0,
    bitrate: Annotated[
        float | None,
        typer.Option("--bitrate", "-b", help="Codebooks to sample, as kbps [default: all]."),
    ] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Model name or folder.")] = (
        pretrained.DEFAULT_MODEL
    ),
) -> None:
    """Generate audio from the model's prior, or continue a prompt.

    Examples:

        codec sample babble.wav --seconds 5 --seed 1

        codec sample more.wav --prompt speech.wav --seconds 3 --top-p 0.9
    """
    with user_errors():
        from codec.errors import CodecError
        from codec.prior.generate import generate_audio

        if not 0 < seconds <= 600:
            raise CodecError(f"--seconds must be in (0, 600], got {seconds}")
        m = pretrained.load(model)
        with progress_bar(seconds, dst.name) as progress:
            made = generate_audio(
                m, dst, seconds, prompt=prompt, temperature=temperature, top_k=top_k,
                top_p=top_p, seed=seed, bitrate=bitrate, progress=progress,
            )  # fmt: skip
        what = f"{made.prompt_seconds:.2f} s of prompt + " if prompt else ""
        out.print(
            f"{dst}: {what}{made.seconds:.2f} s sampled at {made.n_q} codebooks "
            f"({made.seconds / made.elapsed:.1f}x real time)",
            highlight=False,
            soft_wrap=True,
        )
