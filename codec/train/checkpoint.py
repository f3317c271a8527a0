"""Training checkpoints: written atomically, read back with `weights_only=True`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from codec.atomic import atomic_path
from codec.config import to_dict
from codec.errors import CodecError

CHECKPOINT = "checkpoint.pt"  # the name of a run folder's latest checkpoint


def checkpoint_path(run: str | Path) -> Path:
    """The checkpoint of a run: `run` itself, or `run/checkpoint.pt` for a run folder."""
    path = Path(run)
    return path / CHECKPOINT if path.is_dir() else path


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` (tensors, dicts, numbers) so a crash never leaves a partial file."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint without running any pickled code (`weights_only=True`)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CodecError(f"{path}: no such checkpoint") from None
    except Exception as e:  # torch raises many types for corrupt files
        raise CodecError(f"{path}: cannot read checkpoint ({type(e).__name__})") from None


def resume_state(out: Path, recipe: Any, resume: bool) -> dict[str, Any] | None:
    """The checkpoint a run in folder `out` resumes from, or None for a fresh run.

    A fresh run needs an empty (or missing) folder; a resumed one needs its checkpoint
    to have been trained with the same `model` section as `recipe` (a dataclass recipe).
    """
    if not resume:
        if out.exists() and any(out.iterdir()):
            raise CodecError(f"{out}: run folder is not empty; pass --resume to continue it")
        return None
    state = load_checkpoint(out / CHECKPOINT)
    if state["recipe"]["model"] != to_dict(recipe)["model"]:
        raise CodecError(f"{out}: the recipe's model section differs from the checkpoint's")
    return state
