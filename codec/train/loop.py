"""The codec training loop: reconstruction and adversarial losses, resumable, data-parallel.

One optimiser step of the codec (generator) takes `optim.accumulate` micro-batches;
with adversarial losses on, a discriminator step on the same audio follows (hinge GAN
as in EnCodec). Every `logging.checkpoint_every` steps and at the end the whole state
(models, optimisers, balancer, every process's RNG and the step, from which the learning
rate follows) is written atomically to `OUT/checkpoint.pt`. Each training crop depends
only on the seed and its global sample index, so a resumed run sees the same data as an
uninterrupted one and reaches the same weights.

Under `torchrun` each process trains a DistributedDataParallel replica on its own
slice of every global batch; the EMA codebooks pool their statistics across replicas.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from codec import pretrained
from codec.atomic import write_bytes_atomic
from codec.config import TRAINING_ONLY, Recipe, from_dict, replace_recipe, to_dict
from codec.errors import CodecError
from codec.models.codec import CodecModel, transfer_weights
from codec.train import distributed
from codec.train.balancer import Balancer
from codec.train.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from codec.train.data import SegmentDataset, loader, valid_clips
from codec.train.discriminators import build_discriminator
from codec.train.logger import TrainLogger
from codec.train.losses import (
    AdversarialLoss,
    CompressedSpectralLoss,
    FeatureMatchingLoss,
    MultiResolutionSTFTLoss,
    MultiScaleMelLoss,
    WaveformL1,
)
from codec.train.manifest import recipe_entries
from codec.train.validate import validate

RECONSTRUCTION = ("mel", "stft", "compressed", "waveform")
# A wall-clock budget (`schedule.seconds`) is fitted from the rate of this many steps,
# timed after this many untimed ones (compilation, cuDNN autotuning, the critic's start).
CALIBRATE_STEPS = 20
CALIBRATE_AFTER = 10
# After fitting, the budget is checked every this many steps (an all-reduce under torchrun),
# and the end re-fitted to the mean rate since the timing when it moves by more than
# this fraction (so the cosine still reaches its end when the rate drifts).
BUDGET_CHECK_EVERY = 10
REFIT_TOLERANCE = 0.02
ADVERSARIAL = ("adversarial", "feature")


def cosine_with_warmup(step: int, warmup: int, total: int, final: float = 0.0) -> float:
    """Learning-rate multiplier: linear warm-up over `warmup` steps, then cosine decay
    from 1 to `final` at step `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class TrainResult:
    """Where a finished run stands: its last step and validation figures."""

    step: int
    out_dir: Path
    valid: dict[str, float] = field(default_factory=dict)
    rank: int = 0  # of this process, under torchrun


def train(
    recipe: Recipe,
    out_dir: str | Path,
    *,
    resume: bool = False,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train the codec of `recipe` into `out_dir` (checkpoint, recipe, TensorBoard).

    With `resume`, continue from `out_dir/checkpoint.pt` when there is one; without
    it, a folder that already holds a checkpoint is an error (nothing is overwritten).
    """
    info = distributed.setup(recipe.device)
    try:
        trainer = Trainer(recipe, Path(out_dir), info, resume=resume, log=log)
        return trainer.run()
    finally:
        distributed.cleanup()


class Trainer:
    """The state of one training process: models, optimisers, data and logging."""

    def __init__(
        self,
        recipe: Recipe,
        out_dir: Path,
        info: distributed.DistInfo,
        *,
        resume: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.recipe, self.out_dir, self.info = recipe, out_dir, info
        ckpt_path = out_dir / CHECKPOINT
        if ckpt_path.exists() and not resume:
            raise CodecError(
                f"{out_dir} already holds a training run: pass --resume to continue it "
                "or choose another output folder"
            )
        if recipe.num_threads:
            torch.set_num_threads(recipe.num_threads)
        self.device = info.device
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed crop sizes: tune each conv once
        self.autocast = _autocast(recipe.optim.precision, self.device)
        self._build_models()
        self._build_data()
        self.step = 0
        self.valid_metrics: dict[str, float] = {}
        self._references_logged = False
        self._calibrated = False  # under schedule.seconds: the end is fitted
        self._started = time.monotonic()
        self._timed_from: tuple[int, float] | None = None  # (step, time) the rate is timed from
        self._step_cap = recipe.schedule.steps  # a fitted end never goes past this
        if resume and ckpt_path.exists():
            self._load(load_checkpoint(ckpt_path))
        else:
            if recipe.init_from:
                self._init_from(recipe.init_from)
            # Model init above is the same on every replica; quantizer dropout should
            # differ between them (crops differ by their sample index).
            torch.manual_seed(recipe.seed + 7919 * info.rank)
        if info.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
        self._write_recipe()
        self.logger = TrainLogger(
            out_dir,
            self.recipe.schedule.steps,
            self.step,
            enabled=info.is_main,
            tensorboard=recipe.logging.tensorboard,
            log=log,
        )

    # Set-up -----------------------------------------------------------------------

    def _build_models(self) -> None:
        r = self.recipe
        torch.manual_seed(r.seed)
        self.model = CodecModel(r.model).to(self.device).train()
        self.use_gan = r.losses.adversarial > 0 or r.losses.feature > 0
        self.discriminator = (
            build_discriminator(r.losses.discriminator, r.losses.discriminator_filters)
            .to(self.device)
            .train()
            if self.use_gan
            else None
        )
        if r.compile:
            # Compile the convolutional stacks in place (state_dict keys unchanged);
            # the EMA quantiser has data-dependent steps and stays eager.
            self.model.encoder.compile()
            self.model.decoder.compile()
            if self.discriminator is not None:
                self.discriminator.compile()
        self.ddp_model = self._wrap(self.model)
        self.ddp_discriminator = self._wrap(self.discriminator)
        o = r.optim
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=o.learning_rate, betas=o.betas, weight_decay=o.weight_decay
        )
        if self.discriminator is not None:
            self.opt_d = torch.optim.AdamW(
                self.discriminator.parameters(),
                lr=o.discriminator_learning_rate,
                betas=o.betas,
                weight_decay=o.weight_decay,
            )
        sr = r.model.sample_rate
        loss_modules: dict[str, nn.Module] = {
            "mel": MultiScaleMelLoss(sr),
            "stft": MultiResolutionSTFTLoss(),
            "compressed": CompressedSpectralLoss(),
            "waveform": WaveformL1(r.losses.waveform_cutoff, sr),
        }
        self.losses = {k: m.to(self.device) for k, m in loss_modules.items()}
        self.adversarial = AdversarialLoss(r.losses.adversarial_kind)
        self.feature_matching = FeatureMatchingLoss()
        self.weights = {k: float(getattr(r.losses, k)) for k in RECONSTRUCTION + ADVERSARIAL}
        self.balancer = (
            Balancer({k: w for k, w in self.weights.items() if w > 0})
            if r.losses.balancer
            else None
        )

    def _init_from(self, source: str) -> None:
        """Start from the weights of the model `source` (see `Recipe.init_from`)."""
        start = pretrained.load_for_training(source)
        # The recipe may drop residual units of the outermost stages (a faster model).
        free = (*TRAINING_ONLY, "outer_dilations")
        kept = {f: getattr(self.recipe.model, f) for f in free}
        wanted = dataclasses.replace(start.config, **kept)
        fix = " ".join(
            f"model.{f.name}={json.dumps(getattr(wanted, f.name), separators=(',', ':'))}"
            for f in dataclasses.fields(wanted)
            if getattr(wanted, f.name) != getattr(self.recipe.model, f.name)
        )
        error = CodecError(
            f"init_from {source}: its architecture differs from the recipe's model "
            f"(add {fix or 'the model.* values of its config.json'})"
        )
        if fix:
            raise error
        try:
            transfer_weights(start, self.model)
        except CodecError:
            raise error from None

    def _write_recipe(self) -> None:
        if self.info.is_main:
            text = json.dumps(to_dict(self.recipe), indent=2) + "\n"
            write_bytes_atomic(self.out_dir / "recipe.json", text.encode())

    def _wrap(self, module: nn.Module | None) -> nn.Module | None:
        if module is None or self.info.world_size == 1:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        # Codebooks are kept equal by the quantiser's own all-reduce, not by DDP's
        # buffer broadcast (which would throw away the other replicas' statistics).
        return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)

    def lr_scale(self, step: int) -> float:
        """The schedule is a function of the step alone, so restoring the step restores
        it (the optimisers' own state is checkpointed)."""
        s = self.recipe.schedule
        if s.decay == "constant":
            return min(1.0, (step + 1) / max(1, s.warmup_steps))
        return cosine_with_warmup(step, s.warmup_steps, s.steps, s.final_lr_ratio)

    def _set_learning_rates(self) -> None:
        scale = self.lr_scale(self.step)
        o = self.recipe.optim
        for group in self.opt.param_groups:
            group["lr"] = o.learning_rate * scale
        if self.discriminator is not None:
            for group in self.opt_d.param_groups:
                group["lr"] = o.discriminator_learning_rate * scale

    def _build_data(self) -> None:
        r = self.recipe
        train_entries, valid_entries = recipe_entries(r.data, self._note)
        segment = int(r.data.segment_seconds * r.model.sample_rate)
        self.dataset = SegmentDataset(
            train_entries,
            r.model.sample_rate,
            segment,
            chunk_seconds=r.data.chunk_seconds,
            silence_db=r.data.silence_db,
            gain_db=tuple(r.data.gain_db),
            seed=r.seed,
        )
        self.valid_clips = valid_clips(
            valid_entries, r.model.sample_rate, r.logging.valid_clips, r.logging.valid_seconds
        )
        self._data_summary = (
            f"{len(train_entries)} training files ({self.dataset.seconds / 3600:.2f} h), "
            f"{len(self.valid_clips)} validation clips of up to {r.logging.valid_seconds:g} s"
        )

    def _note(self, text: str) -> None:
        if self.info.is_main:
            # before the logger exists: data loading reports skipped files
            print(text, flush=True)

    @property
    def samples_per_step(self) -> int:
        r = self.recipe
        return r.data.batch_size * r.optim.accumulate * self.info.world_size

    # The loop -----------------------------------------------------------------------

    def run(self) -> TrainResult:
        r = self.recipe
        self.logger.line(
            f"{self._data_summary}; {self.info.world_size} process(es) on {self.device}, "
            f"{self.samples_per_step} crops of {r.data.segment_seconds:g} s per step"
        )
        if self.step:
            self.logger.line(f"resumed from step {self.step}")
        elif r.init_from:
            self.logger.line(f"weights and codebooks from {r.init_from}")
        batches = loader(
            self.dataset,
            r.data.batch_size,
            start=self.step * self.samples_per_step,
            rank=self.info.rank,
            world_size=self.info.world_size,
            num_workers=r.data.num_workers,
        )
        sums: dict[str, float] = {}
        self._started = time.monotonic()
        try:
            while self.step < self.recipe.schedule.steps:
                stats = self.train_step(batches)
                self.step += 1
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                self.logger.progress(self.step, stats["loss"])
                self._fit_budget()
                self._after_step(sums)
        finally:
            self.logger.close()
        return TrainResult(self.step, self.out_dir, self.valid_metrics, self.info.rank)

    def _fit_budget(self) -> None:
        """Under `schedule.seconds`, time `CALIBRATE_STEPS` steps once the critic has
        joined and warm-up is behind, then end the schedule where the budget runs out
        (never later than `schedule.steps`). The rate can drift after it was timed (a
        machine shared with another run, validation, a slower data phase), so the end is
        re-fitted to the mean rate since the timing as the run goes, and the budget is
        held: a run that is still going when it is spent ends at that step."""
        s = self.recipe.schedule
        if s.seconds <= 0:
            return
        if self._calibrated:
            if self.step % BUDGET_CHECK_EVERY == 0 and self.step < s.steps:
                self._hold_budget()
            return
        losses = self.recipe.losses
        start = CALIBRATE_AFTER + (
            losses.adversarial_start + losses.critic_warmup if self.use_gan else 0
        )
        if self._spent():  # too slow to have been timed yet
            self._end_schedule(self.step, f"time budget {s.seconds:g} s spent before timing")
        elif self.step == start:
            _sync(self.device)
            self._timed_from = (start, time.monotonic())
        elif self._timed_from is not None and self.step == start + CALIBRATE_STEPS:
            _sync(self.device)
            figures = self._budget_figures()
            left = max(0.0, s.seconds - figures["elapsed"])
            steps = min(s.steps, self.step + max(1, int(figures["rate"] * left)))
            self._end_schedule(steps, f"time budget {s.seconds:g} s: {figures['rate']:.2f} step/s")

    def _hold_budget(self) -> None:
        """End the run if its budget is spent, else re-fit its end to the mean rate since
        the timing when that moves the end by more than `REFIT_TOLERANCE`."""
        s = self.recipe.schedule
        figures = self._budget_figures()
        if figures["elapsed"] > s.seconds:
            self._end_schedule(
                self.step, f"time budget {s.seconds:g} s spent (fitted end {s.steps})"
            )
        elif self._timed_from is not None:
            left = s.seconds - figures["elapsed"]
            steps = min(self._step_cap, self.step + max(1, int(figures["rate"] * left)))
            if abs(steps - s.steps) > REFIT_TOLERANCE * s.steps:
                self._end_schedule(
                    steps,
                    f"time budget {s.seconds:g} s: re-fitted to {figures['rate']:.2f} step/s "
                    f"(was step {s.steps})",
                )

    def _budget_figures(self) -> dict[str, float]:
        """Seconds since the run started and, once timed, the mean step rate since the
        timing began, averaged over the replicas so they agree."""
        now = time.monotonic()
        figures = {"elapsed": now - self._started, "rate": 0.0}
        if self._timed_from is not None:
            step, since = self._timed_from
            figures["rate"] = (self.step - step) / max(now - since, 1e-9)
        return distributed.all_reduce_mean(figures, self.device)

    def _spent(self) -> bool:
        """Whether the wall-clock budget is spent; the replicas decide together."""
        return self._budget_figures()["elapsed"] > self.recipe.schedule.seconds

    def _end_schedule(self, steps: int, why: str) -> None:
        self.recipe = replace_recipe(self.recipe, schedule={"steps": steps})
        self._calibrated = True
        self._write_recipe()
        self.logger.set_total(steps)
        self.logger.line(f"{why}, so the schedule ends at step {steps}")

    def _after_step(self, sums: dict[str, float]) -> None:
        r, step = self.recipe, self.step
        last = step == r.schedule.steps
        if step % r.logging.log_every == 0 or last:
            n = step % r.logging.log_every or r.logging.log_every
            means = distributed.all_reduce_mean({k: v / n for k, v in sums.items()}, self.device)
            self._log_train(means)
            sums.clear()
        if step % r.logging.valid_every == 0 or last:
            self._validate()
        if step % r.logging.checkpoint_every == 0 or last:
            self.save()

    def train_step(self, batches: Iterator[torch.Tensor]) -> dict[str, float]:
        """One optimiser step of the codec, then one of the discriminator."""
        r = self.recipe
        accumulate = r.optim.accumulate
        gan_on = self.use_gan and self.step >= r.losses.adversarial_start
        # During the critic's warm-up only the critic learns from the adversarial game.
        critic_ahead = self.step >= r.losses.adversarial_start + r.losses.critic_warmup
        self._set_learning_rates()
        self.opt.zero_grad(set_to_none=True)
        stats: dict[str, float] = {}
        pairs = []
        for micro in range(accumulate):
            real = next(batches).to(self.device, non_blocking=True)
            sync = micro == accumulate - 1
            with _no_sync(self.ddp_model, sync):
                fake, micro_stats = self._generator_pass(real, gan_on and critic_ahead, accumulate)
            pairs.append((real, fake))
            for k, v in micro_stats.items():
                stats[k] = stats.get(k, 0.0) + v / accumulate
        stats["grad_norm"] = float(
            nn.utils.clip_grad_norm_(self.model.parameters(), r.optim.grad_clip)
        )
        self.opt.step()
        if gan_on:
            stats["discriminator"] = self._discriminator_step(pairs)
        return stats

    def _generator_pass(
        self, real: torch.Tensor, gan_on: bool, accumulate: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Forward and backward of one micro-batch; returns the decoded audio."""
        with self.autocast:
            out = self.ddp_model(real)
            fake = out.audio.float()
            losses = {k: self.losses[k](fake, real) for k in RECONSTRUCTION if self.weights[k] > 0}
            if gan_on:
                losses.update(self._adversarial_losses(real, fake))
        commitment = self.recipe.losses.commitment * out.commitment_loss
        if self.balancer is not None:
            grad = self.balancer(losses, fake)
            torch.autograd.backward([fake, commitment / accumulate], [grad / accumulate, None])
        else:
            total = sum(self.weights[k] * v for k, v in losses.items()) + commitment
            (total / accumulate).backward()
        stats = {k: float(v.detach()) for k, v in losses.items()}
        stats["commitment"] = float(out.commitment_loss.detach())
        stats["loss"] = sum(self.weights[k] * stats[k] for k in losses) + stats["commitment"]
        return fake.detach(), stats

    def _adversarial_losses(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, Any]:
        """Generator-side GAN losses. The discriminator is frozen and used outside DDP:
        this pass must not produce (or all-reduce) discriminator gradients."""
        disc = self.discriminator
        disc.requires_grad_(False)
        try:
            d = disc(torch.cat([real, fake]))
        finally:
            disc.requires_grad_(True)
        b = real.shape[0]
        fake_logits = [x[b:] for x in d.logits]
        real_feats = [[f[:b] for f in fs] for fs in d.features]
        fake_feats = [[f[b:] for f in fs] for fs in d.features]
        out = {}
        if self.weights["adversarial"] > 0:
            out["adversarial"] = self.adversarial.generator(fake_logits)
        if self.weights["feature"] > 0:
            out["feature"] = self.feature_matching(real_feats, fake_feats)
        return out

    def _discriminator_step(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        self.opt_d.zero_grad(set_to_none=True)
        total = 0.0
        for i, (real, fake) in enumerate(pairs):
            with _no_sync(self.ddp_discriminator, i == len(pairs) - 1), self.autocast:
                d = self.ddp_discriminator(torch.cat([real, fake]))
                b = real.shape[0]
                loss = self.adversarial.discriminator(
                    [x[:b].float() for x in d.logits], [x[b:].float() for x in d.logits]
                )
                (loss / len(pairs)).backward()
            total += float(loss.detach()) / len(pairs)
        nn.utils.clip_grad_norm_(self.discriminator.parameters(), self.recipe.optim.grad_clip)
        self.opt_d.step()
        return total

    # Logging and validation -------------------------------------------------------

    def _log_train(self, means: dict[str, float]) -> None:
        if not self.info.is_main:
            return
        usage = self.model.quantizer.usage()
        ppl = [float(p) for p in usage["perplexity"]]
        lr = self.opt.param_groups[0]["lr"]
        rate = self.logger.steps_per_second()
        audio_rate = rate * self.samples_per_step * self.recipe.data.segment_seconds
        shown = " ".join(f"{k} {v:.4f}" for k, v in means.items() if k != "grad_norm")
        self.logger.line(
            f"step {self.step} | {shown} | {rate:.2f} step/s ({audio_rate:.0f} s audio/s) | "
            f"lr {lr:.2e} | perplexity {' '.join(f'{p:.0f}' for p in ppl)}"
        )
        self.logger.scalars(self.step, means, "train")
        self.logger.scalars(
            self.step,
            {"lr": lr, "steps_per_second": rate, "perplexity_first": ppl[0]},
            "train",
        )

    def _validate(self) -> None:
        if not self.info.is_main or not self.valid_clips:
            return
        metrics, decoded = validate(
            self.model,
            self.valid_clips,
            pesq_clips=self.recipe.logging.pesq_clips,
            device=self.device,
        )
        self.valid_metrics = metrics
        self.logger.line(
            f"valid step {self.step} | " + " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        )
        self.logger.scalars(self.step, metrics, "valid")
        sr = self.recipe.model.sample_rate
        for i in range(min(self.recipe.logging.audio_samples, len(decoded))):
            if not self._references_logged:
                self.logger.audio(self.step, f"clip{i}/reference", self.valid_clips[i], sr)
            self.logger.audio(self.step, f"clip{i}/decoded", decoded[i], sr)
        self._references_logged = True

    # Checkpoints --------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this step left off."""
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        state = {
            "step": self.step,
            "samples_seen": self.step * self.samples_per_step,
            "recipe": to_dict(self.recipe),
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "rng": distributed.gather_objects(rng),
            "valid": dict(self.valid_metrics),
        }
        if self.discriminator is not None:
            state["discriminator"] = self.discriminator.state_dict()
            state["optimizer_d"] = self.opt_d.state_dict()
        if self.balancer is not None:
            state["balancer"] = self.balancer.state_dict()
        return state

    def save(self) -> None:
        state = self.state()  # a collective: every process takes part
        if self.info.is_main:
            save_checkpoint(self.out_dir / CHECKPOINT, state)
        distributed.barrier()

    def _load(self, state: dict[str, Any]) -> None:
        saved = from_dict(Recipe, state["recipe"], where="checkpoint recipe")
        if saved.model != self.recipe.model:
            raise CodecError(
                f"{self.out_dir / CHECKPOINT}: its model config differs from the recipe's; "
                "resume with the recipe it was trained with"
            )
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.discriminator is not None and "discriminator" in state:
            self.discriminator.load_state_dict(state["discriminator"])
            self.opt_d.load_state_dict(state["optimizer_d"])
        if self.balancer is not None and "balancer" in state:
            self.balancer.load_state_dict(state["balancer"])
        rngs = state["rng"]
        rng = rngs[self.info.rank] if self.info.rank < len(rngs) else rngs[0]
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.step = int(state["step"])
        self.valid_metrics = dict(state.get("valid", {}))
        if saved.schedule.seconds > 0 and saved.schedule.steps < self.recipe.schedule.steps:
            # A budgeted run keeps the end it was fitted to.
            self.recipe = replace_recipe(self.recipe, schedule={"steps": saved.schedule.steps})
            self._calibrated = True


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _no_sync(module: nn.Module | None, sync: bool) -> contextlib.AbstractContextManager:
    """Skip DDP's gradient all-reduce on all but the last accumulated micro-batch."""
    if sync or not isinstance(module, DistributedDataParallel):
        return contextlib.nullcontext()
    return module.no_sync()
