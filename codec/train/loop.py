"""The training loop of the simple reconstruction recipe (mel + waveform L1 + commitment).

Resumable: every `checkpoint_every` steps the model, optimiser, schedule and RNG states
are written atomically to `out_dir/checkpoint.pt`; calling `train` again continues.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from codec.config import Recipe, to_dict
from codec.models.codec import CodecModel
from codec.train.checkpoint import load_checkpoint, save_checkpoint
from codec.train.data import RandomCrops, list_files
from codec.train.losses import MultiScaleMelLoss, waveform_l1


def cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress))


def train(recipe: Recipe, out_dir: str | Path, log: Callable[[str], None] = print) -> CodecModel:
    """Train (or resume) the codec of `recipe`, checkpointing into `out_dir`."""
    cfg = recipe.train
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "recipe.json").write_text(json.dumps(to_dict(recipe), indent=2))
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)

    model = CodecModel(recipe.model).train()
    mel_loss = MultiScaleMelLoss(recipe.model.sample_rate)
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.learning_rate, betas=cfg.betas, weight_decay=cfg.weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: cosine_with_warmup(s, cfg.warmup_steps, cfg.steps)
    )
    files = list_files(recipe.data.root, recipe.data.train_split)
    segment = int(recipe.data.segment_seconds * recipe.model.sample_rate)
    data = RandomCrops(files, recipe.model.sample_rate, segment, cfg.batch_size, seed=cfg.seed)
    for reason in data.skipped:
        log(f"skipped {reason}")
    log(f"{len(data.waves)} training files, {data.seconds / recipe.model.sample_rate / 60:.1f} min")

    step = 0
    ckpt_path = out_dir / "checkpoint.pt"
    if ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        data.rng.bit_generator.state = json.loads(state["data_rng"])
        step = int(state["step"])
        log(f"resumed from step {step}")

    def checkpoint() -> None:
        save_checkpoint(
            ckpt_path,
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "data_rng": json.dumps(data.rng.bit_generator.state),
                "step": step,
            },
        )

    batches = iter(data)
    t0, sums = time.time(), {"loss": 0.0, "mel": 0.0, "l1": 0.0, "commit": 0.0}
    while step < cfg.steps:
        audio = next(batches)
        out = model(audio)
        mel = mel_loss(out.audio, audio)
        l1 = waveform_l1(out.audio, audio)
        loss = cfg.mel_weight * mel + cfg.waveform_weight * l1 + out.commitment_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        step += 1
        for k, v in zip(sums, (loss, mel, l1, out.commitment_loss.detach()), strict=True):
            sums[k] += v.item()
        if step % cfg.log_every == 0:
            usage = model.quantizer.usage()
            ppl = " ".join(f"{p:.0f}" for p in usage["perplexity"])
            means = " ".join(f"{k} {v / cfg.log_every:.4f}" for k, v in sums.items())
            rate = cfg.log_every / (time.time() - t0)
            log(
                f"step {step} {means} | {rate:.2f} step/s | lr {sched.get_last_lr()[0]:.2e} "
                f"| perplexity {ppl} | restarted {sum(usage['dead_codes']):.0f}"
            )
            t0, sums = time.time(), dict.fromkeys(sums, 0.0)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            checkpoint()
    return model.eval()
