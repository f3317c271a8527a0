"""Training the prosody VAEs: feature data, the training loop, validation bounds.

`ProsodyData` turns a recipe's audio into normalised frames `x [B, T, 3]` (log-F0, the
voicing flag as 0/1, log energy) with `mask [B, T]`; `train_prosody` runs AdamW with KL
annealing and free bits, checkpoints atomically and reports the validation ELBO and
IWAE bound per frame (nats).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from codec.atomic import write_bytes_atomic
from codec.config import ProsodyModelSection, ProsodyRecipe, to_dict
from codec.errors import CodecError, ConfigError
from codec.features import (
    Normalizer,
    ProsodyConfig,
    ProsodyFeatures,
    ProsodyStats,
    cached_extract,
)
from codec.models.prosody import (
    SRNN,
    VRAE,
    VRNN,
    LadderConfig,
    LadderVAE,
    RNNGauss,
    RNNGaussConfig,
    SRNNConfig,
    VRAEConfig,
    VRNNConfig,
    kl_weight,
    per_layer_warmup,
)
from codec.train.checkpoint import CHECKPOINT, resume_state, save_checkpoint
from codec.train.manifest import Entry, recipe_entries

KINDS = ("rnn", "vrae", "vrnn", "srnn", "ladder")
METRICS = "metrics.json"
Batch = tuple[torch.Tensor, torch.Tensor]


def build_model(section: ProsodyModelSection) -> nn.Module:
    """The prosody model named by `section.kind`, with its sizes."""
    s = section
    if s.kind == "rnn":
        return RNNGauss(RNNGaussConfig(hidden=s.hidden))
    if s.kind == "vrae":
        return VRAE(VRAEConfig(hidden=s.hidden, latent=s.latent))
    if s.kind == "vrnn":
        return VRNN(VRNNConfig(hidden=s.hidden, latent=s.latent))
    if s.kind == "srnn":
        return SRNN(SRNNConfig(hidden=s.hidden, latent=s.latent))
    if s.kind == "ladder":
        deterministic = (s.hidden,) * len(s.latents)
        return LadderVAE(LadderConfig(s.hidden, tuple(s.latents), deterministic))
    raise ConfigError(f"unknown prosody model kind {s.kind!r}; choose from {', '.join(KINDS)}")


def frames_matrix(features: ProsodyFeatures) -> np.ndarray:
    """`[F, 3]` float32: normalised log-F0, the voicing decision as 0/1, log energy."""
    return np.stack(
        [features.log_f0, features.voiced.astype(np.float32), features.log_energy], axis=1
    ).astype(np.float32)


def pad_batch(items: list[np.ndarray], length: int) -> Batch:
    """Stack `[F_i, 3]` arrays into `x [B, length, 3]`, zero-padded at the end, and the
    mask `[B, length]` of real frames."""
    x = torch.zeros(len(items), length, 3)
    mask = torch.zeros(len(items), length, dtype=torch.bool)
    for i, item in enumerate(items):
        n = min(len(item), length)
        x[i, :n] = torch.from_numpy(item[:n])
        mask[i, :n] = True
    return x, mask


class ProsodyData:
    """Normalised prosody frames of a recipe's training and validation files.

    Features are extracted once per file (cached in `features.cache_dir`); per-speaker
    statistics are fitted on the training files only.
    """

    def __init__(self, recipe: ProsodyRecipe, note: Callable[[str], None] = print) -> None:
        self.recipe = recipe
        train_entries, valid_entries = recipe_entries(recipe.data, note)
        if not valid_entries:
            raise CodecError("no validation audio: add a valid split or set data.valid_fraction")
        train_entries, raw_train = self._extract(train_entries, note)
        valid_entries, raw_valid = self._extract(valid_entries, note)
        if not valid_entries:
            raise CodecError("no readable validation audio")
        self.normalizer = self._fit(train_entries, raw_train)
        self.train, _, _ = self._prepare(train_entries, raw_train)
        # valid_f0_std[i]: the std of natural-log F0 that normalised valid[i], which
        # turns its F0 errors back into cents; valid_speakers[i]: its speaker label
        self.valid, self.valid_f0_std, self.valid_speakers = self._prepare(valid_entries, raw_valid)
        if not self.train:
            raise CodecError("every training file is shorter than one prosody frame")

    def _extract(
        self, entries: list[Entry], note: Callable[[str], None]
    ) -> tuple[list[Entry], list[ProsodyFeatures]]:
        """Features of the readable files (cached); an unreadable file is reported and
        skipped, so one bad file never stops a run."""
        kept, features = [], []
        for entry in entries:
            try:
                features.append(
                    cached_extract(entry.path, ProsodyConfig(), self.recipe.features.cache_dir)
                )
            except CodecError as e:
                note(f"skipped {e}")
                continue
            kept.append(entry)
        return kept, features

    def _fit(self, entries: list[Entry], features: list[ProsodyFeatures]) -> Normalizer:
        by_speaker: dict[str, list[ProsodyFeatures]] = {}
        if self.recipe.features.normalise == "speaker":
            for entry, feats in zip(entries, features, strict=True):
                if entry.speaker and feats.num_frames:
                    by_speaker.setdefault(entry.speaker, []).append(feats)
        return Normalizer().fit(by_speaker)

    def _prepare(
        self, entries: list[Entry], features: list[ProsodyFeatures]
    ) -> tuple[list[np.ndarray], list[float], list[str]]:
        """Normalised frames of each non-empty utterance, the log-F0 std used, and its
        speaker."""
        out, f0_std, speakers = [], [], []
        for entry, feats in zip(entries, features, strict=True):
            if feats.num_frames == 0:
                continue
            if entry.speaker in self.normalizer.stats:
                stats = self.normalizer.stats[entry.speaker]
            else:  # unknown or unseen speaker, or per-utterance normalisation
                stats = ProsodyStats.fit([feats], self.normalizer.min_std)
            out.append(frames_matrix(stats.apply(feats)))
            f0_std.append(stats.f0_std)
            speakers.append(entry.speaker)
        return out, f0_std, speakers

    def batch(self, step: int, batch_size: int, seed: int) -> Batch:
        """Random crops of `segment_frames` frames, a function of `(seed, step)` only, so
        a resumed run sees the same batches. `x [B, T, 3]`, `mask [B, T]`."""
        length = self.recipe.features.segment_frames
        rng = np.random.default_rng([seed, step])
        items = []
        for index in rng.integers(0, len(self.train), size=batch_size):
            utterance = self.train[index]
            start = int(rng.integers(0, max(len(utterance) - length, 0) + 1))
            items.append(utterance[start : start + length])
        return pad_batch(items, length)

    def valid_batches(self, batch_size: int) -> Iterator[Batch]:
        """Validation utterances in a fixed order, each cut to `valid_frames`, padded."""
        limit = self.recipe.features.valid_frames
        for start in range(0, len(self.valid), batch_size):
            items = [u[:limit] for u in self.valid[start : start + batch_size]]
            yield pad_batch(items, max(len(u) for u in items))


def kl_weights(recipe: ProsodyRecipe, step: int, n_layers: int = 0) -> tuple[float, list[float]]:
    """(KL weight, per-layer KL weights) at `step`.

    For the ladder the per-layer warm-up (deeper layers start later) replaces the linear
    schedule and multiplies the cosine or cyclical one.
    """
    t = recipe.train
    if t.kl_schedule == "cyclical":
        weight = kl_weight("cyclical", step, period=t.kl_period)
    else:
        weight = kl_weight(t.kl_schedule, step, warmup=t.kl_warmup)
    if not n_layers:
        return weight, []
    layers = [per_layer_warmup(step, layer, n_layers, t.kl_warmup) for layer in range(n_layers)]
    return (1.0 if t.kl_schedule == "linear" else weight), layers


@torch.no_grad()
def evaluate(
    model: nn.Module, data: ProsodyData, batch_size: int, seed: int, iwae_k: int = 0
) -> dict[str, float]:
    """Validation ELBO and KL per real frame (and IWAE-`iwae_k` per frame when > 0).

    Runs under a forked RNG seeded with `seed`, so evaluating never changes training.
    """
    was_training = model.training
    model.eval()
    bound = kl = iwae = frames = 0.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for x, mask in data.valid_batches(batch_size):
            out = model.elbo(x, mask)
            bound += out.bound.sum().item()
            kl += out.kl.sum().item()
            frames += out.frames.sum().item()
            if iwae_k:
                iwae += model.iwae(x, mask, iwae_k).sum().item()
    model.train(was_training)
    metrics = {"elbo_per_frame": bound / frames, "kl_per_frame": kl / frames}
    if iwae_k:
        metrics["iwae_per_frame"] = iwae / frames
    return metrics


def _save(
    path: Path, model: nn.Module, opt: torch.optim.Optimizer, step: int, recipe: ProsodyRecipe
) -> None:
    save_checkpoint(
        path,
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "torch_rng": torch.get_rng_state(),
            "recipe": to_dict(recipe),
        },
    )


def train_step(
    model: nn.Module, opt: torch.optim.Optimizer, recipe: ProsodyRecipe, batch: Batch, step: int
) -> float:
    """One AdamW step on `batch`; returns the loss (negative annealed bound per frame)."""
    t = recipe.train
    x, mask = batch
    weight, layers = kl_weights(recipe, step, getattr(model, "n_layers", 0))
    extra = {"layer_kl_weights": layers} if layers else {}
    out = model.elbo(x, mask, kl_weight=weight, free_bits=t.free_bits, **extra)
    lr = t.learning_rate
    if t.length_aware_lr:
        lr *= math.sqrt(mask.sum().item() / (t.batch_size * recipe.features.segment_frames))
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
    opt.step()
    return out.loss.item()


def train_prosody(
    recipe: ProsodyRecipe,
    out_dir: str | Path,
    *,
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    """Train `recipe`'s prosody model into `out_dir` (checkpoint.pt, metrics.json).

    Refuses a non-empty `out_dir` unless `resume`, which continues from its checkpoint
    to `train.steps`. Returns the final validation metrics: `elbo_per_frame`,
    `iwae_per_frame`, `kl_per_frame` (nats per frame) and `steps`.
    """
    out, t = Path(out_dir), recipe.train
    state = resume_state(out, recipe, resume)
    data = ProsodyData(recipe, note=log)
    torch.manual_seed(t.seed)
    model = build_model(recipe.model)
    opt = torch.optim.AdamW(model.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay)
    step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        step = state["step"]
        log(f"resumed at step {step}")
    model.train()
    while step < t.steps:
        loss = train_step(model, opt, recipe, data.batch(step, t.batch_size, t.seed), step)
        step += 1
        if step % t.log_every == 0:
            log(f"step {step} loss {loss:.4f}")
        if step % t.checkpoint_every == 0:
            _save(out / CHECKPOINT, model, opt, step, recipe)
        if step % t.valid_every == 0 and step < t.steps:
            m = evaluate(model, data, t.batch_size, t.seed)
            log(f"step {step} valid elbo/frame {m['elbo_per_frame']:.4f}")
    _save(out / CHECKPOINT, model, opt, step, recipe)
    metrics = {**evaluate(model, data, t.batch_size, t.seed, t.iwae_k), "steps": step}
    write_bytes_atomic(out / METRICS, (json.dumps(metrics, indent=2) + "\n").encode())
    log(
        f"step {step} valid elbo/frame {metrics['elbo_per_frame']:.4f} "
        f"iwae-{t.iwae_k}/frame {metrics['iwae_per_frame']:.4f}"
    )
    return metrics
