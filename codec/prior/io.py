"""Save and load a prior beside the codec whose codes it models.

A codec model folder may hold `prior.safetensors` (float16 weights) and `prior.json`
(`{"config": PriorConfig, "codec_model_id": hex, "metrics": {...}}`). A prior's id is a
hash of both files' contents; entropy-coded `.codes` files carry it, so they are only
decoded by the very prior that coded them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from codec import pretrained
from codec.atomic import write_bytes_atomic
from codec.config import PriorConfig, from_dict, to_dict
from codec.errors import CodecError, ConfigError
from codec.prior.model import CodePrior

PRIOR_WEIGHTS, PRIOR_CONFIG = "prior.safetensors", "prior.json"


@dataclass
class LoadedPrior:
    """A prior ready for use: the float model, its id, and the codec it belongs to."""

    model: CodePrior
    prior_id: bytes
    codec_model_id: bytes
    metrics: dict[str, Any] = field(default_factory=dict)
    _exact: Any = None

    @property
    def exact(self):
        """The bit-exact NumPy twin (`ExactPrior`), built on first use."""
        if self._exact is None:
            from codec.prior.exact import ExactPrior

            self._exact = ExactPrior(self.model)
        return self._exact


def prior_id(meta: bytes, weights: bytes) -> bytes:
    """16-byte id of a prior: SHA-256 of its metadata JSON, its weight file and the
    version of the integer arithmetic that turns them into probabilities (a change to
    `codec.prior.exact` bumps `EXACT_VERSION`, so older files are refused, not misread)."""
    from codec.prior.exact import EXACT_VERSION

    tag = f"exact-v{EXACT_VERSION}".encode()
    return hashlib.sha256(meta + b"\0" + weights + b"\0" + tag).digest()[:16]


def _weights(model: CodePrior) -> bytes:
    state = {
        k: v.detach().cpu().to(torch.float16).contiguous() for k, v in model.state_dict().items()
    }
    return save_safetensors(state)


def save_prior(
    model: CodePrior,
    directory: str | os.PathLike[str],
    codec_model_id: bytes,
    metrics: dict[str, Any] | None = None,
) -> bytes:
    """Write `prior.safetensors` and `prior.json` into a codec's folder; return the id.

    Weights are stored as float16; the loaded prior is exactly what was written.
    """
    directory = Path(directory)
    weights = _weights(model)
    meta = {
        "config": to_dict(model.config),
        "codec_model_id": codec_model_id.hex(),
        "metrics": metrics or {},
    }
    meta_bytes = (json.dumps(meta, indent=2) + "\n").encode()
    write_bytes_atomic(directory / PRIOR_WEIGHTS, weights)
    write_bytes_atomic(directory / PRIOR_CONFIG, meta_bytes)
    return prior_id(meta_bytes, weights)


def has_prior(codec_name_or_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether a codec model's folder holds a prior."""
    try:
        path = pretrained.resolve(codec_name_or_dir)
    except CodecError:
        return False
    return (path / PRIOR_WEIGHTS).is_file() and (path / PRIOR_CONFIG).is_file()


def load_prior(codec_name_or_dir: str | os.PathLike[str] | None = None) -> LoadedPrior:
    """Load the prior stored with a codec model (by name or folder), in eval mode."""
    path = pretrained.resolve(codec_name_or_dir)
    if not (path / PRIOR_WEIGHTS).is_file():
        raise CodecError(
            f"model '{path.name}' has no prior ({PRIOR_WEIGHTS}); train one with "
            "`codec prior train` (see docs/prior.md)"
        )
    return load_prior_files(path)


def load_prior_files(path: str | os.PathLike[str]) -> LoadedPrior:
    """Load `prior.safetensors` and `prior.json` from a folder (a codec's or a run's)."""
    path = Path(path)
    try:
        meta_bytes = (path / PRIOR_CONFIG).read_bytes()
        weights = (path / PRIOR_WEIGHTS).read_bytes()
        meta = json.loads(meta_bytes)
        config = from_dict(PriorConfig, meta["config"], str(path / PRIOR_CONFIG))
        codec_id = bytes.fromhex(meta["codec_model_id"])
        state = {k: v.float() for k, v in load_safetensors(weights).items()}
    except (OSError, ValueError, KeyError, TypeError, SafetensorError, ConfigError) as e:
        raise CodecError(f"{path}: cannot load prior ({e})") from None
    model = CodePrior(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CodecError(f"{path}: prior weights do not match {PRIOR_CONFIG} ({first})") from None
    return LoadedPrior(
        model.eval(), prior_id(meta_bytes, weights), codec_id, meta.get("metrics", {})
    )
