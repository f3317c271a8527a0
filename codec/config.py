"""Frozen dataclass configs and their loading from dicts, JSON and YAML.

Unknown keys are an error that names the key: a typo in a recipe must not silently
fall back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from codec.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class CodecConfig:
    """Everything needed to rebuild a codec model; saved beside its weights.

    The defaults are the shipped 16 kHz speech model: causal SEANet, 50 Hz frames
    (hop 320 = 2*4*5*8), 12 codebooks of 1024 entries, so 0.5 kbps per codebook and
    6 kbps with all twelve.

    `threshold_ema_dead_code` is in EMA assignments per training step: with a few
    hundred frames per batch and 1024 codes, even a used code averages well under 1,
    so 0.01 restarts codes left unused for a few hundred steps (EnCodec's 2 assumes
    batches of many thousands of frames).
    """

    sample_rate: int = 16000
    channels: int = 16
    latent_dim: int = 64
    ratios: tuple[int, ...] = (2, 4, 5, 8)
    dilations: tuple[int, ...] = (1, 3, 9)
    kernel_size: int = 7
    residual_kernel_size: int = 3
    causal: bool = True
    n_codebooks: int = 12
    codebook_size: int = 1024
    ema_decay: float = 0.99
    commitment_weight: float = 0.25
    kmeans_iters: int = 10
    threshold_ema_dead_code: float = 0.01
    quantizer_dropout: float = 0.5

    def __post_init__(self) -> None:
        if self.codebook_size < 2 or self.codebook_size & (self.codebook_size - 1):
            raise ConfigError(
                f"codebook_size must be a power of two >= 2, got {self.codebook_size}"
            )
        if self.n_codebooks < 1:
            raise ConfigError(f"n_codebooks must be >= 1, got {self.n_codebooks}")

    @property
    def hop_length(self) -> int:
        """Samples per code frame."""
        n = 1
        for r in self.ratios:
            n *= r
        return n

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def bits_per_code(self) -> int:
        return self.codebook_size.bit_length() - 1

    @property
    def kbps_per_codebook(self) -> float:
        return self.bits_per_code * self.frame_rate / 1000


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass `cls` from `data`, converting lists to tuples and nested dicts
    to nested dataclasses; an unknown key raises `ConfigError` naming it."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key '{key}' (known: {', '.join(fields)})")
        kwargs[key] = _convert(hints[key], value, f"{where}.{key}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        return tuple(_convert(item, v, where) for v in value)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected int, got {value!r}")
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a dataclass config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def load_json(cls: type[T], path: str | Path) -> T:
    """Read a dataclass config from a JSON file."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config ({e})") from None
    return from_dict(cls, data, where=str(path))


@dataclass(frozen=True)
class DataConfig:
    """Where training audio comes from: a folder, with an optional `manifest.tsv`."""

    root: str = ""
    train_split: str | None = "train"
    valid_split: str | None = "valid"
    segment_seconds: float = 1.0


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and loss weights of the simple reconstruction recipe."""

    steps: int = 20000
    batch_size: int = 16
    learning_rate: float = 6e-4
    betas: tuple[float, ...] = (0.8, 0.99)
    weight_decay: float = 0.0
    warmup_steps: int = 500
    grad_clip: float = 10.0
    mel_weight: float = 1.0
    waveform_weight: float = 0.1
    checkpoint_every: int = 500
    log_every: int = 50
    seed: int = 0
    num_threads: int = 0  # 0: torch's default


@dataclass(frozen=True)
class Recipe:
    """One training run: the model to build, the data, and how to optimise it."""

    model: CodecConfig = CodecConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe; `overrides` are `section.key=value` strings (YAML values)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read recipe ({e})") from None
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"override '{item}' is not of the form section.key=value")
        section, name = key.split(".", 1)
        if data.get(section) is None:  # `train:` with nothing under it
            data[section] = {}
        data[section][name] = yaml.safe_load(value)
    recipe = from_dict(Recipe, data, where=str(path))
    if recipe.data.root and not Path(recipe.data.root).is_absolute():
        root = (Path(path).parent / recipe.data.root).resolve()
        recipe = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, root=str(root)))
    return recipe
