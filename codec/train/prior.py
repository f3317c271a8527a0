"""Training a prior over a codec's codes: code extraction, batches, loop, validation.

`extract_codes` runs the codec over a recipe's audio once (cached by codec id and file
list); `PriorData` lays the files end to end, a BOS frame before each, and cuts random
crops; `train_prior` runs AdamW with warm-up and cosine decay, checkpoints atomically,
and reports validation cross-entropy in bits per token and perplexity per codebook.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from codec import pretrained
from codec.atomic import atomic_path, write_bytes_atomic
from codec.audio import iter_audio_blocks
from codec.config import PriorRecipe, to_dict
from codec.errors import CodecError
from codec.inference import encode_stream
from codec.models.codec import CodecModel
from codec.prior.io import save_prior
from codec.prior.model import CodePrior
from codec.train.checkpoint import CHECKPOINT, resume_state, save_checkpoint
from codec.train.distributed import pick_device
from codec.train.loop import cosine_with_warmup
from codec.train.manifest import Entry, recipe_entries

METRICS = "metrics.json"


def extract_codes(
    codec: CodecModel,
    entries: list[Entry],
    cache_dir: str | Path,
    note: Callable[[str], None] = print,
) -> list[np.ndarray]:
    """Codes `[Q, F]` (uint16, every codebook) of each readable file, cached.

    The cache file is named by a hash of the codec's id and each file's path, size and
    modification time, so a changed file or codec is extracted afresh. Unreadable files
    are reported and left out.
    """
    key = hashlib.sha256(pretrained.id_of(codec))
    for e in entries:
        st = Path(e.path).stat() if Path(e.path).exists() else None
        key.update(
            f"{e.path}\0{st.st_size if st else -1}\0{st.st_mtime_ns if st else -1}\n".encode()
        )
    path = Path(cache_dir) / f"codes-{key.hexdigest()[:24]}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            codes, lengths = f["codes"], f["lengths"]
        return np.split(codes, np.cumsum(lengths)[:-1], axis=1)
    out, start, seconds = [], time.perf_counter(), 0.0
    for i, e in enumerate(entries):
        try:
            header, codes = encode_stream(codec, iter_audio_blocks(e.path, codec.sample_rate))
        except CodecError as err:
            note(f"skipped {err}")
            continue
        seconds += header.duration
        if header.n_frames:
            out.append(codes.astype(np.uint16))
        if (i + 1) % 200 == 0:
            note(f"coded {i + 1}/{len(entries)} files, {seconds / 60:.1f} min of audio")
    note(f"coded {len(out)} files ({seconds / 60:.1f} min) in {time.perf_counter() - start:.0f} s")
    if not out:
        raise CodecError("no readable audio to extract codes from")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, codes=np.concatenate(out, axis=1), lengths=[c.shape[1] for c in out])
    return out


def stream(files: list[np.ndarray], bos: int) -> np.ndarray:
    """Files `[Q, F_i]` end to end, a BOS frame before each: `[Q, sum(F_i + 1)]` int64."""
    q = files[0].shape[0]
    parts = []
    for codes in files:
        parts += [np.full((q, 1), bos, dtype=np.int64), codes.astype(np.int64)]
    return np.concatenate(parts, axis=1)


@dataclass
class PriorBatch:
    """`codes [B, Q, T + 1]`, `n_q [B]`, `mask [B, T + 1]` (False on the context frame)."""

    codes: torch.Tensor
    n_q: torch.Tensor
    mask: torch.Tensor


class PriorData:
    """The training and validation streams of a recipe's codes."""

    def __init__(self, recipe: PriorRecipe, codec: CodecModel, note: Callable[[str], None] = print):
        c = recipe.model
        if (codec.config.n_codebooks, codec.config.codebook_size) != (
            c.n_codebooks,
            c.codebook_size,
        ):
            raise CodecError(
                f"the codec has {codec.config.n_codebooks} codebooks of "
                f"{codec.config.codebook_size}, the prior is set for {c.n_codebooks} of "
                f"{c.codebook_size}: set model.n_codebooks and model.codebook_size"
            )
        self.recipe = recipe
        train_entries, valid_entries = recipe_entries(recipe.data, note)
        if not valid_entries:
            raise CodecError("no validation audio: add a valid split or set data.valid_fraction")
        cache = recipe.codes.cache_dir
        self.train = stream(extract_codes(codec, train_entries, cache, note), c.bos)
        self.valid = stream(extract_codes(codec, valid_entries, cache, note), c.bos)
        length = recipe.train.seq_frames + 1
        if self.train.shape[1] < length:
            raise CodecError(
                f"{self.train.shape[1]} frames of training codes are fewer than one crop "
                f"({length}): lower train.seq_frames"
            )

    def batch(self, step: int) -> PriorBatch:
        """Random crops, a function of `(seed, step)` only (so a resumed run sees the
        same batches); a crop's first frame is context only."""
        t = self.recipe.train
        q = self.recipe.model.n_codebooks
        rng = np.random.default_rng([t.seed, step])
        starts = rng.integers(0, self.train.shape[1] - t.seq_frames, size=t.batch_size)
        codes = np.stack([self.train[:, s : s + t.seq_frames + 1] for s in starts])
        dropped = rng.random(t.batch_size) < t.codebook_dropout
        n_q = np.where(dropped, rng.integers(1, max(q, 2), size=t.batch_size), q)
        mask = np.ones((t.batch_size, t.seq_frames + 1), dtype=bool)
        mask[:, 0] = False
        return PriorBatch(torch.from_numpy(codes), torch.from_numpy(n_q), torch.from_numpy(mask))


@torch.no_grad()
def evaluate(model: CodePrior, codes: np.ndarray, seq_frames: int, batch_size: int = 8) -> dict:
    """Cross-entropy of a stream `[Q, N]` with all codebooks: windows of `seq_frames`
    frames overlapping by one context frame, so every frame is scored once.

    Returns `bits_per_token`, `bits_per_frame`, `bits_per_token_q` and `perplexity_q`
    (one per codebook) and the number of `tokens` scored.
    """
    model.eval()
    device = next(model.parameters()).device
    q = codes.shape[0]
    nats = torch.zeros(q, dtype=torch.float64, device=device)  # summed where computed:
    count = torch.zeros(q, dtype=torch.float64, device=device)  # one transfer at the end
    starts = list(range(0, max(codes.shape[1] - 1, 1), seq_frames))
    for i in range(0, len(starts), batch_size):
        windows = [codes[:, s : s + seq_frames + 1] for s in starts[i : i + batch_size]]
        length = max(w.shape[1] for w in windows)
        batch = np.full((len(windows), q, length), model.config.bos, dtype=np.int64)
        for j, w in enumerate(windows):
            batch[j, :, : w.shape[1]] = w
        x = torch.from_numpy(batch).to(device)
        mask = torch.ones(x.shape[0], length, dtype=torch.bool, device=device)
        mask[:, 0] = False
        keep = model.counted(x, None, mask)
        nll = model.token_nll(x) * keep
        nats += nll.sum((0, 1)).double()
        count += keep.sum((0, 1)).double()
    per_q = (nats / count.clamp(min=1) / math.log(2)).tolist()
    total = float(nats.sum() / count.sum().clamp(min=1) / math.log(2))
    model.train()
    return {
        "bits_per_token": total,
        "bits_per_frame": total * q,
        "bits_per_token_q": per_q,
        "perplexity_q": [2.0**b for b in per_q],
        "tokens": int(count.sum()),
    }


def train_prior(
    recipe: PriorRecipe,
    out_dir: str | Path,
    *,
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train the recipe's prior into `out_dir`: `checkpoint.pt`, `metrics.json`, and
    `prior.safetensors` + `prior.json` of the step with the best validation loss (every
    `valid_every` steps and the last), ready for `codec prior export`.

    Refuses a non-empty `out_dir` unless `resume`. Returns the validation metrics.
    """
    out, t = Path(out_dir), recipe.train
    device = pick_device(t.device, "train.device=cuda")
    state = resume_state(out, recipe, resume)
    codec = pretrained.load(recipe.codes.codec)
    data = PriorData(recipe, codec, note=log)
    log(
        f"codes: {data.train.shape[1]} training and {data.valid.shape[1]} validation frames "
        f"of {recipe.model.n_codebooks} codebooks"
    )
    torch.manual_seed(t.seed)
    model = CodePrior(recipe.model).to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": t.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=t.learning_rate,
        betas=(0.9, 0.95),
    )
    step, best = 0, None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, best = state["step"], state.get("best")
        log(f"resumed at step {step}")
    log(f"prior: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters on {device}")
    model.train()
    start, losses = time.perf_counter(), []
    while step < t.steps:
        lr = t.learning_rate * cosine_with_warmup(step, t.warmup, t.steps, final=0.1)
        for group in opt.param_groups:
            group["lr"] = lr
        b = data.batch(step)
        loss = model.loss(b.codes.to(device), b.n_q.to(device), b.mask.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % t.log_every == 0:
            rate = len(losses) / (time.perf_counter() - start)
            bits = np.mean(losses) / math.log(2)
            log(f"step {step} loss {bits:.3f} bits/token lr {lr:.2e} {rate:.2f} step/s")
            start, losses = time.perf_counter(), []
        if step % t.checkpoint_every == 0 or step == t.steps:
            _save(out, model, opt, step, recipe, best)
        if step % t.valid_every == 0 and step < t.steps:
            m = {**evaluate(model, data.valid, t.seq_frames), "steps": step}
            log(f"step {step} valid {m['bits_per_token']:.3f} bits/token")
            best = _keep_best(out, model, codec, m, best, log)
            _save(out, model, opt, step, recipe, best)
    metrics = {**evaluate(model, data.valid, t.seq_frames), "steps": step}
    metrics["train_frames"] = int(data.train.shape[1])
    per_q = " ".join(f"{b:.2f}" for b in metrics["bits_per_token_q"])
    log(f"step {step} valid {metrics['bits_per_token']:.3f} bits/token; per codebook: {per_q}")
    best = _keep_best(out, model, codec, metrics, best, log)
    metrics["best"] = best
    write_bytes_atomic(out / METRICS, (json.dumps(metrics, indent=2) + "\n").encode())
    return metrics


def _keep_best(
    out: Path, model: CodePrior, codec: CodecModel, m: dict, best: dict | None, log
) -> dict:
    """Write the prior files when `m` is the best validation so far (the prior that a
    run hands to `codec prior export` is its best, not its last); return the best."""
    if best is not None and best["bits_per_token"] <= m["bits_per_token"]:
        return best
    save_prior(model, out, pretrained.id_of(codec), m)
    if best is not None:
        log(f"step {m['steps']}: best so far, prior files written")
    return {"steps": m["steps"], "bits_per_token": m["bits_per_token"]}


def _save(
    out: Path,
    model: CodePrior,
    opt: torch.optim.Optimizer,
    step: int,
    recipe: PriorRecipe,
    best: dict | None,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        out / CHECKPOINT,
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "best": best,
            "recipe": to_dict(recipe),
        },
    )
