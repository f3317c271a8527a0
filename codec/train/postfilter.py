"""Train a codec's postfilter (`codec.models.postfilter`) on the codec's own output.

The codec is frozen. Every file is coded once at each training bitrate, and the
decoded audio is kept in memory next to the input as 16-bit PCM (128 KB per second of
audio with three bitrates: 1.3 GB for the 3-hour speech16k corpus). Each step takes
random crops of the same span from an input and one of its decodings and fits the
postfilter's gains so that the filtered magnitudes match the input's, compared after
power-law compression (`|X|^0.3`, the loss that gave the best PESQ in Braun and Tashev's
comparison of speech-enhancement losses, 2021; close to the loudness of PESQ's model).
On the shipped model it gained 0.16 PESQ-WB at 6 kbps where an L1 on log magnitudes
plus spectral convergence gained 0.02 (`docs/model-zoo.md`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from codec.atomic import atomic_path
from codec.audio import load_audio
from codec.config import PostFilterConfig
from codec.errors import CodecError
from codec.models.codec import CodecModel
from codec.models.postfilter import PostFilter
from codec.train.loop import CALIBRATE_AFTER, CALIBRATE_STEPS
from codec.train.losses import compressed_spectral_loss

# A wall-clock budget is fitted to the rate between these steps, after the first steps'
# start-up costs (CUDA's initialisation, cuDNN's autotuning), as the codec trainer's is.
TIMED_STEPS = (CALIBRATE_AFTER, CALIBRATE_AFTER + CALIBRATE_STEPS)


@dataclass(frozen=True)
class PostFilterTraining:
    """How a postfilter is trained; `steps` of `batch_size` crops, cosine learning rate.

    `seconds` (0: none) is a wall-clock budget: the step rate is timed between the
    `TIMED_STEPS` and `steps` is lowered to what the rest of the budget allows, so the
    cosine still ends at zero (as the codec trainer's `schedule.seconds`).

    `resynthesis` scores the filtered audio itself (gains applied, frames overlap-added,
    framed again) rather than the gained spectra: neighbouring frames' gains blend in
    the overlap-add, most at 50% overlap, and this way the training sees it.

    `overshoot` weighs the bins the filter makes louder than the input's by that much
    more than the ones it leaves quieter (1: the plain loss), as PESQ's model of
    disturbance does for added components."""

    bitrates: tuple[float, ...] = (1.5, 3.0, 6.0)
    steps: int = 6000
    batch_size: int = 32
    segment_frames: int = 128  # about 1 s at the default hop
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    seed: int = 0
    seconds: float = 0.0
    resynthesis: bool = False
    overshoot: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.segment_frames < 1:
            raise CodecError("postfilter steps, batch_size and segment_frames must be >= 1")
        if self.seconds < 0:
            raise CodecError("postfilter seconds must be >= 0 (0: no time budget)")
        if self.overshoot <= 0:
            raise CodecError("postfilter overshoot must be > 0 (1: the plain loss)")
        if not self.bitrates or self.learning_rate <= 0:
            raise CodecError("postfilter training needs bitrates and a positive learning rate")


@dataclass
class CodedCorpus:
    """Inputs and their decodings, 16-bit PCM: `clean[i]` and `decoded[bitrate][i]`."""

    clean: list[np.ndarray]
    decoded: dict[float, list[np.ndarray]]

    @property
    def samples(self) -> int:
        return sum(len(x) for x in self.clean)


def _pcm16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, -1.0, 1.0) * 32767).astype(np.int16)


@torch.inference_mode()
def code_corpus(
    model: CodecModel,
    paths: Sequence[Path],
    bitrates: Sequence[float],
    log: Callable[[str], None] = print,
) -> CodedCorpus:
    """Code every file at every bitrate with the frozen `model` (on whatever device it
    is); unreadable files are reported and skipped."""
    device = next(model.parameters()).device
    corpus = CodedCorpus([], {b: [] for b in bitrates})
    for i, path in enumerate(paths):
        try:
            wav = load_audio(path, model.sample_rate)
        except CodecError as e:
            log(f"skipped {e}")
            continue
        x = torch.from_numpy(wav).to(device)
        padded = torch.nn.functional.pad(x, (0, -len(x) % model.hop_length))
        latents = model.encoder(padded[None, None])
        corpus.clean.append(_pcm16(wav))
        for b in bitrates:
            codes = model.quantizer.encode(latents, model.n_codebooks_for(b))
            y = model.decoder(model.quantizer.decode(codes))[0, 0, : len(x)]
            corpus.decoded[b].append(_pcm16(y.cpu().numpy()))
        if (i + 1) % 500 == 0:
            log(f"coded {i + 1}/{len(paths)} files")
    if not corpus.clean:
        raise CodecError("no readable audio to train the postfilter on")
    return corpus


def cached_code_corpus(
    model: CodecModel,
    paths: Sequence[Path],
    bitrates: Sequence[float],
    cache: Path,
    codec_id: bytes,
    log: Callable[[str], None] = print,
) -> CodedCorpus:
    """`code_corpus`, kept in the folder `cache` so that another postfilter for the same
    codec, files and bitrates skips the coding (14 minutes for speech16k on 2 CPU cores).

    The file is named by a hash of the codec's id, the bitrates and the paths; one that
    cannot be read or does not add up is reported and coded again."""
    key = json.dumps([codec_id.hex(), [float(b) for b in bitrates], [str(p) for p in paths]])
    path = cache / f"coded-{codec_id.hex()[:8]}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"
    if path.is_file():
        try:
            corpus = _load_corpus(path, bitrates)
            log(f"{path}: {len(corpus.clean)} coded files from the cache")
            return corpus
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            log(f"{path}: unreadable cache ({e}); coding again")
    corpus = code_corpus(model, paths, bitrates, log)
    cache.mkdir(parents=True, exist_ok=True)
    lengths = np.array([len(x) for x in corpus.clean], dtype=np.int64)
    arrays = {"lengths": lengths, "clean": np.concatenate(corpus.clean)}
    for i, b in enumerate(bitrates):
        arrays[f"decoded{i}"] = np.concatenate(corpus.decoded[b])
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return corpus


def _load_corpus(path: Path, bitrates: Sequence[float]) -> CodedCorpus:
    with np.load(path, allow_pickle=False) as data:
        lengths = data["lengths"]
        ends = np.cumsum(lengths)[:-1]
        arrays = [data["clean"]] + [data[f"decoded{i}"] for i in range(len(bitrates))]
    if lengths.ndim != 1 or (lengths < 0).any():
        raise ValueError("bad lengths")
    for a in arrays:
        if a.dtype != np.int16 or a.shape != (int(lengths.sum()),):
            raise ValueError("the audio does not match its lengths")
    clean, *decoded = (np.split(a, ends) for a in arrays)
    return CodedCorpus(clean, dict(zip(bitrates, decoded, strict=True)))


class _Crops:
    """Random aligned crops of `span` samples, every second of audio equally likely."""

    def __init__(self, corpus: CodedCorpus, span: int, seed: int) -> None:
        self.corpus, self.span = corpus, span
        lengths = np.array([max(len(x) - span, 0) + 1 for x in corpus.clean], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        self.bitrates = list(corpus.decoded)
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`(clean, decoded)`, each `[size, span]` float32, zero-padded where short."""
        clean = np.zeros((size, self.span), dtype=np.float32)
        decoded = np.zeros((size, self.span), dtype=np.float32)
        for row, i in enumerate(self.rng.choice(len(self.weights), size, p=self.weights)):
            b = self.bitrates[self.rng.integers(len(self.bitrates))]
            x, y = self.corpus.clean[i], self.corpus.decoded[b][i]
            start = self.rng.integers(max(len(x) - self.span, 0) + 1)
            n = min(self.span, len(x))
            clean[row, :n] = x[start : start + n] / 32767
            decoded[row, :n] = y[start : start + n] / 32767
        return torch.from_numpy(clean), torch.from_numpy(decoded)


def _step_loss(
    pf: PostFilter,
    clean: torch.Tensor,
    decoded: torch.Tensor,
    resynthesis: bool = False,
    overshoot: float = 1.0,
) -> torch.Tensor:
    target = pf.frames(clean).abs()
    if resynthesis:
        estimate = pf.frames(pf(decoded)).abs()
    else:
        estimate = pf.apply_gains(pf.frames(decoded).abs())
    return compressed_spectral_loss(estimate, target, overshoot=overshoot)


@torch.no_grad()
def evaluate(pf: PostFilter, corpus: CodedCorpus) -> dict[str, float]:
    """Per bitrate, the spectral loss of the decoded audio as it is and postfiltered,
    over whole files."""
    hop = pf.config.hop_length
    device = next(pf.parameters()).device

    def magnitudes(pcm: np.ndarray) -> torch.Tensor:
        """`[1, bins, F]` of a whole file, from `latency` zeros before it to a hop after."""
        audio = torch.from_numpy(pcm / 32767.0).float().to(device)
        padded = torch.nn.functional.pad(audio, (pf.config.latency, -len(pcm) % hop + hop))
        return pf.frames(padded[None]).abs()

    metrics = {}
    for b, decoded in corpus.decoded.items():
        before = after = 0.0
        for x, y in zip(corpus.clean, decoded, strict=True):
            target, mags = magnitudes(x), magnitudes(y)
            before += compressed_spectral_loss(mags, target).item()
            after += compressed_spectral_loss(pf.apply_gains(mags), target).item()
        metrics[f"valid_loss_{b:g}kbps"] = round(after / len(decoded), 4)
        metrics[f"valid_loss_{b:g}kbps_unfiltered"] = round(before / len(decoded), 4)
    return metrics


def train_postfilter(
    train: CodedCorpus,
    valid: CodedCorpus | None,
    config: PostFilterConfig,
    training: PostFilterTraining,
    log: Callable[[str], None] = print,
    device: str | torch.device = "cpu",
) -> tuple[PostFilter, dict[str, float]]:
    """Fit a new postfilter to `train` on `device`; returns it (on the CPU, eval mode)
    and its figures on `valid`."""
    torch.manual_seed(training.seed)
    pf = PostFilter(config).to(device).train()
    crops = _Crops(
        train, (training.segment_frames - 1) * config.hop_length + config.n_fft, training.seed
    )
    opt = torch.optim.AdamW(pf.parameters(), lr=training.learning_rate, betas=(0.9, 0.99))
    start, running, steps, step = time.perf_counter(), 0.0, training.steps, 0
    while step < steps:
        step += 1
        warm = min(step / training.warmup_steps, 1.0) if training.warmup_steps else 1.0
        cosine = 0.5 * (1 + math.cos(math.pi * (step - 1) / steps))
        for group in opt.param_groups:
            group["lr"] = training.learning_rate * warm * cosine
        clean, decoded = crops.batch(training.batch_size)
        loss = _step_loss(
            pf, clean.to(device), decoded.to(device), training.resynthesis, training.overshoot
        )
        if not torch.isfinite(loss):
            raise CodecError(f"postfilter training diverged at step {step} (loss {loss.item()})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(pf.parameters(), 1.0)
        opt.step()
        running += loss.item()
        if training.seconds and step == TIMED_STEPS[0]:
            timed_from = time.perf_counter()
        if training.seconds and step == TIMED_STEPS[1]:
            now = time.perf_counter()
            rate = (TIMED_STEPS[1] - TIMED_STEPS[0]) / (now - timed_from)
            left = training.seconds - (now - start)
            steps = max(step, min(steps, step + int(rate * left)))
            log(f"{rate:.1f} steps/s: {steps} steps fit the {training.seconds:g} s budget")
        if step % 200 == 0 or step == steps:
            n = 200 if step % 200 == 0 else step % 200
            rate = step / (time.perf_counter() - start)
            log(f"step {step}/{steps}  loss {running / n:.4f}  {rate:.1f} steps/s")
            running = 0.0
    pf.eval()
    metrics = {
        "steps": steps,
        "train_seconds": round(train.samples / config.sample_rate, 1),
    }
    if valid is not None:
        metrics.update(evaluate(pf, valid))
    return pf.cpu(), metrics
