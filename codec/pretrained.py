"""Find, load, save and describe models on disk.

A model directory holds `model.safetensors` (weights), `config.json` (a `CodecConfig`)
and `README.md` (the model card), and may hold a postfilter for its decoded audio
(`postfilter.safetensors`, `postfilter.json`) and a prior over its codes
(`codec.prior.io`). Shipped models live in the repository's `pretrained/` folder;
`CODEC_MODELS_DIR` adds another place to look. A model's id is a hash of its
config and weights: `.codes` files carry it, so a file is only decoded by its own model.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from codec.atomic import write_bytes_atomic
from codec.config import CodecConfig, PostFilterConfig, from_dict, to_dict
from codec.errors import CodecError, ConfigError, ModelNotFoundError
from codec.models.codec import CodecModel
from codec.models.postfilter import PostFilter
from codec.nn.conv import fold_weight_norm

DEFAULT_MODEL = "speech16k"
WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
POSTFILTER_WEIGHTS, POSTFILTER_CONFIG = "postfilter.safetensors", "postfilter.json"
# Training-only statistics not shipped: each equals codebook * cluster_size.
_DERIVED = ".embed_sum"


def search_path() -> list[Path]:
    """Folders searched for models by name: `$CODEC_MODELS_DIR`, then `pretrained/`."""
    dirs = [Path(p) for p in os.environ.get("CODEC_MODELS_DIR", "").split(os.pathsep) if p]
    return dirs + [Path(__file__).resolve().parent.parent / "pretrained"]


@dataclass(frozen=True)
class ModelInfo:
    """A model found on disk, as listed by `codec models`."""

    name: str
    path: Path
    config: CodecConfig
    size_bytes: int


def available_models() -> list[ModelInfo]:
    """Every loadable model directory in the search path, first occurrence of a name wins."""
    found: dict[str, ModelInfo] = {}
    for root in search_path():
        for d in sorted(root.glob(f"*/{CONFIG}")):
            if d.parent.name in found or not (d.parent / WEIGHTS).is_file():
                continue
            try:
                config = from_dict(CodecConfig, json.loads(d.read_text()), str(d))
            except (ConfigError, json.JSONDecodeError):
                continue
            size = (d.parent / WEIGHTS).stat().st_size
            found[d.parent.name] = ModelInfo(d.parent.name, d.parent, config, size)
    return list(found.values())


def resolve(name_or_dir: str | os.PathLike[str] | None = None) -> Path:
    """The directory of a model given by name (searched) or by path."""
    name = str(name_or_dir or DEFAULT_MODEL)
    path = Path(name)
    if (path / CONFIG).is_file():
        return path
    if os.sep not in name and "/" not in name:
        for root in search_path():
            if (root / name / CONFIG).is_file():
                return root / name
    names = ", ".join(m.name for m in available_models()) or "none installed"
    raise ModelNotFoundError(
        f"model '{name}' not found (available: {names}; or pass a model folder)"
    )


def model_id(config: CodecConfig, weights: bytes) -> bytes:
    """16-byte id of a model: SHA-256 of its canonical config JSON and weight file.
    Unset (None) fields are left out, so a field added later does not change the ids
    of the models made before it."""
    fields = {k: v for k, v in to_dict(config).items() if v is not None}
    canonical = json.dumps(fields, sort_keys=True).encode()
    return hashlib.sha256(canonical + b"\0" + weights).digest()[:16]


def load(name_or_dir: str | os.PathLike[str] | None = None) -> CodecModel:
    """Load a model for inference (eval mode, weight norm folded).

    The returned model has `.model_id` (bytes) and `.name` set.
    """
    path = resolve(name_or_dir)
    model, weights = _build(path)
    model.model_id = model_id(model.config, weights)
    model.path = path
    return fold_weight_norm(model.eval())


def load_for_training(name_or_dir: str | os.PathLike[str]) -> CodecModel:
    """A model's weights in their training layout (weight norm as gain and direction,
    the codebooks' EMA statistics rebuilt), in train mode: the start of a fine-tuning
    run (`init_from` in a recipe)."""
    model, _ = _build(resolve(name_or_dir))
    return model.train()


def _build(path: Path) -> tuple[CodecModel, bytes]:
    """The model of folder `path` with its weights loaded (`.name` set), and the raw
    safetensors bytes its id is hashed from."""
    try:
        config = from_dict(CodecConfig, json.loads((path / CONFIG).read_text()), str(path / CONFIG))
        weights = (path / WEIGHTS).read_bytes()
        state = load_safetensors(weights)
    except (OSError, json.JSONDecodeError, SafetensorError) as e:
        raise CodecError(f"{path}: cannot load model ({e})") from None
    model = CodecModel(config)
    _load_state(model, state, path)
    model.name = path.name
    return model, weights


def _load_state(model: CodecModel, state: dict[str, torch.Tensor], path: Path) -> None:
    for key in [k for k in model.state_dict() if k.endswith(_DERIVED)]:
        prefix = key[: -len(_DERIVED)]
        if f"{prefix}.codebook" in state and f"{prefix}.cluster_size" in state:
            state[key] = state[f"{prefix}.codebook"] * state[f"{prefix}.cluster_size"][:, None]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CodecError(f"{path}: weights do not match config.json ({first})") from None


def save(model: CodecModel, directory: str | os.PathLike[str], card: str | None = None) -> bytes:
    """Write `model` as a model directory (atomically, file by file); return its id.

    The model must not have its weight norm folded: the saved layout is the training one,
    so a shipped model can be fine-tuned.
    """
    directory = Path(directory)
    weights = _weights_bytes(model)
    write_bytes_atomic(directory / WEIGHTS, weights)
    write_bytes_atomic(
        directory / CONFIG, (json.dumps(to_dict(model.config), indent=2) + "\n").encode()
    )
    if card is not None:
        write_bytes_atomic(directory / CARD, card.encode())
    return model_id(model.config, weights)


def id_of(model: CodecModel) -> bytes:
    """The id a model has (set by `load`), or would have once saved (fresh models)."""
    existing = getattr(model, "model_id", None)
    if existing is not None:
        return existing
    return model_id(model.config, _weights_bytes(model))


def _weights_bytes(model: CodecModel) -> bytes:
    """The safetensors file of a model's shipped state (derived statistics left out)."""
    state = model.state_dict()
    return save_safetensors(
        {k: v.detach().cpu().contiguous() for k, v in state.items() if not k.endswith(_DERIVED)}
    )


def installed_ids() -> dict[bytes, ModelInfo]:
    """Every installed model by its id (reads each model's weights once to hash them)."""
    return {model_id(m.config, (m.path / WEIGHTS).read_bytes()): m for m in available_models()}


def find_by_id(wanted: bytes) -> CodecModel:
    """Load the installed model whose id is `wanted` (for decoding without --model)."""
    info = installed_ids().get(wanted)
    if info is None:
        raise ModelNotFoundError(
            f"no installed model has id {wanted.hex()[:8]}; "
            "pass --model with the model that encoded it"
        )
    return load(info.path)


def save_postfilter(
    postfilter: PostFilter,
    directory: str | os.PathLike[str],
    codec_model_id: bytes,
    metrics: dict | None = None,
) -> None:
    """Write `postfilter.safetensors` (float16, in the training layout) and
    `postfilter.json` (config, the codec's id, training figures)."""
    directory = Path(directory)
    state = {
        k: v.detach().cpu().to(torch.float16).contiguous()
        for k, v in postfilter.state_dict().items()
    }
    meta = {
        "config": to_dict(postfilter.config),
        "codec_model_id": codec_model_id.hex(),
        "metrics": metrics or {},
    }
    write_bytes_atomic(directory / POSTFILTER_WEIGHTS, save_safetensors(state))
    write_bytes_atomic(directory / POSTFILTER_CONFIG, (json.dumps(meta, indent=2) + "\n").encode())


def load_postfilter(model: CodecModel) -> PostFilter | None:
    """The postfilter stored beside a loaded model (eval mode), or None if it has none.

    Loaded once per model. A postfilter trained for another codec is refused."""
    if "_postfilter" in model.__dict__:
        return model.__dict__["_postfilter"]
    path = getattr(model, "path", None)
    postfilter = None
    if path is not None and (Path(path) / POSTFILTER_WEIGHTS).is_file():
        postfilter = load_postfilter_files(path)
        if postfilter.codec_model_id != id_of(model):
            raise CodecError(
                f"{path}: the postfilter was trained for another codec; retrain it "
                "(codec postfilter train) or delete it"
            )
    model.__dict__["_postfilter"] = postfilter
    return postfilter


def load_postfilter_files(path: str | os.PathLike[str]) -> PostFilter:
    """`postfilter.safetensors` and `postfilter.json` of a folder as a `PostFilter` in eval
    mode, with `.codec_model_id` and `.metrics` set."""
    path = Path(path)
    try:
        meta = json.loads((path / POSTFILTER_CONFIG).read_text())
        config = from_dict(PostFilterConfig, meta["config"], str(path / POSTFILTER_CONFIG))
        codec_id = bytes.fromhex(meta["codec_model_id"])
        state = load_safetensors((path / POSTFILTER_WEIGHTS).read_bytes())
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as e:
        raise CodecError(f"{path}: cannot load postfilter ({e})") from None
    postfilter = PostFilter(config)
    try:
        postfilter.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CodecError(f"{path}: postfilter weights do not match its config ({first})") from None
    fold_weight_norm(postfilter)
    postfilter.codec_model_id = codec_id
    postfilter.metrics = meta.get("metrics", {})
    return postfilter.eval()
