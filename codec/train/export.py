"""Turn a training checkpoint into a model folder: safetensors, config.json and a card.

The folder has the layout of `pretrained/NAME/`, so `codec encode -m FOLDER` (or copying
it under `pretrained/` or `$CODEC_MODELS_DIR`) uses it like a shipped model.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from codec import pretrained
from codec.config import Recipe, from_dict
from codec.errors import CodecError
from codec.models.codec import CodecModel
from codec.train.checkpoint import checkpoint_path, load_checkpoint


def export(checkpoint: str | Path, out_dir: str | Path, *, card: str | None = None) -> bytes:
    """Export the codec of `checkpoint` (a `checkpoint.pt` or the run folder holding
    it) to `out_dir`; a card is written from the run's recipe and validation figures
    unless `card` is given. Returns the model id."""
    path = checkpoint_path(checkpoint)
    state = load_checkpoint(path)
    if not {"recipe", "model", "step"} <= set(state):
        raise CodecError(f"{path}: not a codec training checkpoint")
    recipe = from_dict(Recipe, state["recipe"], where=f"{path} recipe")
    model = CodecModel(recipe.model)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise CodecError(f"{path}: weights do not match the checkpoint's model config") from None
    name = Path(out_dir).name
    return pretrained.save(model.eval(), out_dir, card=card or model_card(name, recipe, state))


def model_card(name: str, recipe: Recipe, state: dict[str, Any]) -> str:
    """A model card (README.md) that says what was trained, on what, and how well."""
    m, d, losses = recipe.model, recipe.data, recipe.losses
    kbps = m.n_codebooks * m.kbps_per_codebook
    names = ("mel", "stft", "compressed", "waveform", "adversarial", "feature")
    used = [k for k in names if getattr(losses, k)]
    if losses.waveform and losses.waveform_cutoff:
        used[used.index("waveform")] = f"waveform below {losses.waveform_cutoff:g} Hz"
    valid = state.get("valid") or {}
    figures = ", ".join(f"{k} {v:.3f}" for k, v in valid.items()) or "not measured"
    rows = [
        ("sample rate", f"{m.sample_rate} Hz"),
        ("frame rate", f"{m.frame_rate:g} Hz (hop {m.hop_length})"),
        (
            "codebooks",
            f"{m.n_codebooks} x {m.codebook_size} "
            f"({m.kbps_per_codebook:g} kbps each, up to {kbps:g} kbps)",
        ),
        (
            "encoder/decoder",
            f"SEANet, {m.channels} channels, ratios {list(m.ratios)}, "
            + ("causal" if m.causal else "non-causal"),
        ),
        (
            "training",
            f"{int(state['step'])} steps of {d.batch_size} x {recipe.optim.accumulate} "
            f"crops of {d.segment_seconds:g} s",
        ),
        ("losses", ", ".join(used) + (" (balanced)" if losses.balancer else "") + ", commitment"),
        ("data", f"`{d.manifest or d.root}`"),
        ("last validation", figures),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"""# {name}

A `codec` model exported from a training checkpoint on {datetime.date.today()}.

| | |
|---|---|
{table}

Use it with `codec encode -m DIR in.wav out.codes`, or `codec.load("DIR")` in Python.
Measure it on your audio with the evaluation tools before you rely on these figures.
"""
