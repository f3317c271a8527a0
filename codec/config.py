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
from codec.nn.activation import ACTIVATIONS

T = TypeVar("T")


@dataclass(frozen=True)
class CodecConfig:
    """Everything needed to rebuild a codec model; saved beside its weights.

    The defaults are the first 16 kHz speech model: causal SEANet, 50 Hz frames
    (hop 320 = 2*4*5*8), 12 codebooks of 1024 entries, so 0.5 kbps per codebook and
    6 kbps with all twelve. The shipped model differs in width, ratios and its
    full-rate stages (32 channels, 8*5*4*2, one residual unit there;
    `pretrained/speech16k/config.json`).

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
    # The outermost stage (the encoder's first, the decoder's last) runs at the full
    # sample rate and costs about half of the compute; None gives it `dilations`.
    outer_dilations: tuple[int, ...] | None = None
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
    # The encoder's and decoder's activation: None is SEANet's ELU; "snake" is DAC's
    # (a learnt periodic term per channel). None rather than "elu", so the ids of the
    # models made before the field existed stay the same.
    activation: str | None = None

    def __post_init__(self) -> None:
        if self.activation not in (None, *ACTIVATIONS):
            raise ConfigError(
                f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}"
            )
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
        return _convert(hint, value, where)
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


# The fields of `CodecConfig` that shape training only, not the weights: a model trained
# with other values of these can start another run (`Recipe.init_from`).
TRAINING_ONLY = (
    "ema_decay",
    "commitment_weight",
    "kmeans_iters",
    "threshold_ema_dead_code",
    "quantizer_dropout",
)


@dataclass(frozen=True)
class DataConfig:
    """Where training audio comes from and how it is cut into batches.

    `root` is a folder of audio; its `manifest.tsv` (see `codec.train.manifest`) is
    used when present, else the folder is scanned. `manifest` names another manifest.
    Without a `valid_split` in the manifest, `valid_fraction` of the files are held
    out by a stable hash of their path.
    """

    root: str = ""
    manifest: str = ""
    train_split: str = "train"
    valid_split: str = "valid"
    valid_fraction: float = 0.05
    segment_seconds: float = 1.0
    chunk_seconds: float = 30.0
    silence_db: float = -50.0
    gain_db: tuple[float, ...] = (-12.0, 3.0)
    batch_size: int = 16
    num_workers: int = 0


@dataclass(frozen=True)
class LossConfig:
    """Loss weights and the adversarial set-up.

    With `balancer` on, the weights of the losses on the decoded audio (mel, stft,
    compressed, waveform, adversarial, feature) are fractions of the gradient they contribute
    (EnCodec's balancer); otherwise they multiply the losses. `commitment` always
    multiplies the commitment loss. `adversarial` or `feature` > 0 trains a
    `discriminator` ("msstft", "mpd" or "msstft+mpd"), from step `adversarial_start`.
    For the first `critic_warmup` of those steps the critic trains alone and the codec
    does not yet see it: with the balancer on, a critic that starts from scratch is
    otherwise fooled from its first step and stays at chance (docs/model-zoo.md).
    `waveform_cutoff` > 0 (Hz) low-passes the waveform L1's error, so that term
    anchors only the bands below it; 0 compares the full band. `compressed` weighs the
    MSE of power-law compressed STFT magnitudes (`|X|^0.3`), the postfilter's loss.
    """

    mel: float = 1.0
    stft: float = 0.0
    compressed: float = 0.0
    waveform: float = 0.1
    waveform_cutoff: float = 0.0
    commitment: float = 1.0
    adversarial: float = 0.0
    feature: float = 0.0
    adversarial_kind: str = "hinge"
    discriminator: str = "msstft"
    discriminator_filters: int = 32
    adversarial_start: int = 0
    critic_warmup: int = 0
    balancer: bool = False


@dataclass(frozen=True)
class OptimConfig:
    """AdamW for the codec (and the discriminator), clipping, accumulation, precision.

    `accumulate` micro-batches of `data.batch_size` make one optimiser step.
    `precision` "auto" is bf16 autocast on CUDA and float32 on CPU.
    """

    learning_rate: float = 6e-4
    discriminator_learning_rate: float = 3e-4
    betas: tuple[float, ...] = (0.8, 0.99)
    weight_decay: float = 0.0
    grad_clip: float = 10.0
    accumulate: int = 1
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"optim.precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.accumulate < 1:
            raise ConfigError(f"optim.accumulate must be >= 1, got {self.accumulate}")


@dataclass(frozen=True)
class ScheduleConfig:
    """Length of the run and the learning-rate schedule: linear warm-up, then cosine
    decay to `final_lr_ratio` of the peak at `steps` ("cosine"), or flat ("constant").

    `seconds` > 0 gives the run a wall-clock budget instead: once the step rate has
    been measured (over a few steps after compilation and the critic's start), `steps`
    is lowered to the step at which the budget runs out, so the cosine ends there. The
    chosen `steps` is saved with the run; a resumed run keeps it. If the rate falls after
    it was timed, the run still ends once the budget is spent (counted from the start of
    this invocation, so a resumed run gets the budget again, up to its fitted end).
    """

    steps: int = 20000
    warmup_steps: int = 500
    decay: str = "cosine"
    final_lr_ratio: float = 0.0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.decay not in ("cosine", "constant"):
            raise ConfigError(f"schedule.decay must be cosine or constant, got {self.decay!r}")
        if self.steps < 1:
            raise ConfigError(f"schedule.steps must be >= 1, got {self.steps}")
        if self.seconds < 0:
            raise ConfigError(f"schedule.seconds must be >= 0, got {self.seconds}")


@dataclass(frozen=True)
class LoggingConfig:
    """How often to log, checkpoint and validate, and what validation measures."""

    log_every: int = 50
    checkpoint_every: int = 500
    valid_every: int = 1000
    valid_clips: int = 8
    valid_seconds: float = 4.0
    pesq_clips: int = 4
    audio_samples: int = 2
    tensorboard: bool = True


@dataclass(frozen=True)
class Recipe:
    """One training run: the model, its data, losses, optimiser, schedule and logging.

    `device` "auto" picks CUDA when available; `num_threads` 0 keeps torch's default.
    `init_from` (a model name or folder, e.g. an export of an earlier run) starts a fresh
    run from that model's weights and codebooks instead of a random init: fine-tuning,
    or training in stages when checkpoints cannot travel. Its architecture must be
    `model`'s, except that `model.outer_dilations` may drop residual units it has; the
    optimiser and schedule start afresh.
    """

    model: CodecConfig = CodecConfig()
    data: DataConfig = DataConfig()
    losses: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    logging: LoggingConfig = LoggingConfig()
    seed: int = 0
    num_threads: int = 0
    device: str = "auto"
    compile: bool = False
    init_from: str = ""

    def __post_init__(self) -> None:
        nyquist = self.model.sample_rate / 2
        if not 0 <= self.losses.waveform_cutoff < nyquist:
            raise ConfigError(
                f"losses.waveform_cutoff must be 0 (the full band) or below {nyquist:g} Hz "
                f"(half the sample rate), got {self.losses.waveform_cutoff:g}"
            )


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe; `overrides` are `section.key=value` (or `key=value` for the
    top-level keys) strings whose values are parsed as YAML."""
    return _load_yaml(Recipe, path, overrides)


def _load_yaml(cls: type[T], path: str | Path, overrides: list[str] | None) -> T:
    """A recipe dataclass from YAML: data paths resolved, overrides applied, keys checked."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read recipe ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of sections, got {type(data).__name__}")
    _resolve_data_paths(data, Path(path).parent)
    for item in overrides or []:
        _apply_override(data, item)
    return from_dict(cls, data, where=str(path))


def _apply_override(data: dict[str, Any], item: str) -> None:
    """Set `section.key=value` in the recipe dict; data paths are relative to the cwd."""
    import yaml

    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override '{item}' is not of the form section.key=value")
    try:
        parsed = yaml.safe_load(value) if value else ""  # `data.root=` empties a string
    except yaml.YAMLError:
        raise ConfigError(f"override '{item}': cannot parse the value") from None
    *sections, name = key.split(".")
    node = data
    for section in sections:
        if node.get(section) is None:  # `train:` with nothing under it
            node[section] = {}
        node = node[section]
        if not isinstance(node, dict):
            raise ConfigError(f"override '{item}': '{section}' is not a section")
    node[name] = parsed
    if sections == ["data"] and name in _PATH_KEYS:
        _resolve_data_paths(data, Path.cwd(), only=name)


_PATH_KEYS = ("root", "manifest")


def _resolve_data_paths(data: dict[str, Any], base: Path, only: str | None = None) -> None:
    """Make `data.root` and `data.manifest` absolute: a recipe's own paths are relative
    to its folder, paths given on the command line to the working directory."""
    section = data.get("data")
    if not isinstance(section, dict):
        return
    for name in (only,) if only else _PATH_KEYS:
        value = section.get(name)
        if isinstance(value, str) and value:
            section[name] = str((base / Path(value).expanduser()).resolve())


def replace_recipe(recipe: Recipe, **sections: dict[str, Any]) -> Recipe:
    """`recipe` with fields of some sections (a dict per section) or top-level keys
    changed: `replace_recipe(r, schedule={"steps": 10}, compile=True)`."""
    changes = {
        name: dataclasses.replace(getattr(recipe, name), **values)
        if isinstance(values, dict)
        else values
        for name, values in sections.items()
    }
    return dataclasses.replace(recipe, **changes)


@dataclass(frozen=True)
class ProsodyModelSection:
    """Which prosody model to train and its sizes.

    `kind` is "rnn" (no latents), "vrae" (one global latent), "vrnn", "srnn" (a latent
    per frame) or "ladder" (a hierarchy of global latents). `latent` sizes the per-frame
    or global latent; `latents` the ladder's layers, bottom to top.
    """

    kind: str = "vrnn"
    hidden: int = 64
    latent: int = 16
    latents: tuple[int, ...] = (16, 8, 4)


@dataclass(frozen=True)
class ProsodyFeatureSection:
    """Where extracted features are cached and how they are cut.

    `normalise` "speaker" standardises log-F0 and log energy per speaker (statistics of
    the training files; speakers unseen in training fall back to per utterance),
    "utterance" per utterance. Training crops `segment_frames` frames; validation
    scores whole utterances up to `valid_frames` frames. `cache_dir` is relative to the
    working directory.
    """

    cache_dir: str = ".prosody_cache"
    normalise: str = "speaker"
    segment_frames: int = 200
    valid_frames: int = 1000

    def __post_init__(self) -> None:
        if self.normalise not in ("speaker", "utterance"):
            raise ConfigError(
                f"features.normalise must be speaker or utterance, got {self.normalise!r}"
            )
        if self.segment_frames < 1 or self.valid_frames < 1:
            raise ConfigError("features.segment_frames and valid_frames must be >= 1")


@dataclass(frozen=True)
class ProsodyTrainSection:
    """Optimisation of a prosody model: AdamW, clipping, KL annealing and free bits.

    `kl_schedule` is "linear" or "cosine" (rising to 1 at `kl_warmup`) or "cyclical"
    (period `kl_period`). With `length_aware_lr`, each step's learning rate is scaled by
    `sqrt(frames_in_batch / (batch_size * segment_frames))` (the square-root rule for
    batch size, counted in real frames), so batches padded with short utterances take
    smaller steps. `iwae_k` samples give the final IWAE bound.
    """

    steps: int = 2000
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    kl_schedule: str = "linear"
    kl_warmup: int = 500
    kl_period: int = 500
    free_bits: float = 0.0
    length_aware_lr: bool = True
    log_every: int = 50
    checkpoint_every: int = 250
    valid_every: int = 500
    iwae_k: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kl_schedule not in ("linear", "cosine", "cyclical"):
            raise ConfigError(
                f"train.kl_schedule must be linear, cosine or cyclical, got {self.kl_schedule!r}"
            )
        if min(self.steps, self.batch_size, self.iwae_k) < 1:
            raise ConfigError("train.steps, batch_size and iwae_k must be >= 1")
        if min(self.log_every, self.checkpoint_every, self.valid_every) < 1:
            raise ConfigError("train.log_every, checkpoint_every and valid_every must be >= 1")


@dataclass(frozen=True)
class ProsodyRecipe:
    """One prosody-model training run: the model, its data, features and optimisation."""

    model: ProsodyModelSection = ProsodyModelSection()
    data: DataConfig = DataConfig()
    features: ProsodyFeatureSection = ProsodyFeatureSection()
    train: ProsodyTrainSection = ProsodyTrainSection()


def load_prosody_recipe(path: str | Path, overrides: list[str] | None = None) -> ProsodyRecipe:
    """Read a YAML prosody recipe; `overrides` are `section.key=value` strings, as for
    `load_recipe` (e.g. `model.kind=vrae`)."""
    return _load_yaml(ProsodyRecipe, path, overrides)


@dataclass(frozen=True)
class PriorConfig:
    """Sizes of a `CodePrior`. `window` is the frames of context each frame attends to."""

    n_codebooks: int = 12
    codebook_size: int = 1024
    dim: int = 192
    n_layers: int = 3
    n_heads: int = 4
    mlp_ratio: int = 4
    depth_dim: int = 128
    depth_layers: int = 1
    window: int = 256

    def __post_init__(self) -> None:
        if min(self.n_codebooks, self.codebook_size, self.dim, self.n_heads, self.window) < 1:
            raise ConfigError("prior sizes must be >= 1")
        if self.dim % self.n_heads:
            raise ConfigError(f"prior dim {self.dim} is not a multiple of n_heads {self.n_heads}")
        if min(self.n_layers, self.depth_layers) < 0 or self.mlp_ratio < 1 or self.depth_dim < 1:
            raise ConfigError("prior n_layers and depth_layers must be >= 0, mlp_ratio >= 1")

    @property
    def bos(self) -> int:
        """The code value that stands for "before the first frame"."""
        return self.codebook_size


@dataclass(frozen=True)
class PriorCodesSection:
    """Whose codes the prior models: `codec` is a model name or folder; the codes of
    the recipe's audio are extracted once into `cache_dir` (relative to the working
    directory), keyed by the codec's id and the files."""

    codec: str = "speech16k"
    cache_dir: str = ".prior_cache"


@dataclass(frozen=True)
class PriorTrainSection:
    """Optimisation of a prior: AdamW, warm-up then cosine, clipping.

    Each step takes `batch_size` random crops of `seq_frames` frames (plus one frame of
    context) from the training files laid end to end, BOS frames between files. With
    probability `codebook_dropout` a crop keeps only its first n < Q codebooks (n
    uniform), so that one prior codes every bitrate. `device` is where the prior trains
    ("auto": CUDA when available); the codes are extracted on the CPU either way.
    """

    steps: int = 3000
    batch_size: int = 16
    seq_frames: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 200
    grad_clip: float = 1.0
    codebook_dropout: float = 0.3
    log_every: int = 50
    checkpoint_every: int = 250
    valid_every: int = 500
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.seq_frames) < 1:
            raise ConfigError("train.steps, batch_size and seq_frames must be >= 1")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train.device: expected auto, cpu or cuda, got {self.device!r}")
        if not 0.0 <= self.codebook_dropout <= 1.0:
            raise ConfigError("train.codebook_dropout must be in [0, 1]")
        if min(self.log_every, self.checkpoint_every, self.valid_every) < 1:
            raise ConfigError("train.log_every, checkpoint_every and valid_every must be >= 1")


@dataclass(frozen=True)
class PriorRecipe:
    """One prior training run: the network, the audio, the codec, the optimisation."""

    model: PriorConfig = PriorConfig()
    data: DataConfig = DataConfig()
    codes: PriorCodesSection = PriorCodesSection()
    train: PriorTrainSection = PriorTrainSection()


def load_prior_recipe(path: str | Path, overrides: list[str] | None = None) -> PriorRecipe:
    """Read a YAML prior recipe; `overrides` are `section.key=value` strings."""
    return _load_yaml(PriorRecipe, path, overrides)


@dataclass(frozen=True)
class PostFilterConfig:
    """Shape of a `PostFilter` (`codec.models.postfilter`); saved beside its weights."""

    sample_rate: int = 16000
    n_fft: int = 512  # 32 ms at 16 kHz: resolves the harmonics of a voice
    hop_length: int = 256  # half (sqrt-Hann window) or a quarter (Hann) of the frame
    channels: int = 96  # with the hop, speech16k's shipped shape: 16 ms, 0.25 M params
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    max_gain_db: float = 20.0
    floor: float = 1e-3  # magnitude floor of the log features (silence is about 1e-4)

    def __post_init__(self) -> None:
        if self.hop_length < 1 or self.n_fft not in (2 * self.hop_length, 4 * self.hop_length):
            raise ConfigError(
                "the postfilter's n_fft must be 4 * hop_length (75% overlap, Hann window) "
                "or 2 * hop_length (50% overlap, sqrt-Hann window)"
            )
        if self.channels < 1 or min(self.dilations, default=0) < 1 or self.floor <= 0:
            raise ConfigError("postfilter channels, dilations and floor must be positive")
        if self.max_gain_db <= 0:
            raise ConfigError("postfilter max_gain_db must be positive")

    @property
    def overlap(self) -> int:
        """Frames that cover each sample: 4 or 2."""
        return self.n_fft // self.hop_length

    @property
    def latency(self) -> int:
        """Samples between an input sample's arrival and its filtered value's."""
        return self.n_fft - self.hop_length
