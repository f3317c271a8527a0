"""Training throughput, eager against torch.compile, in one process.

Usage:
    python benchmarks/train_throughput.py [--recipe R.yaml] [--steps 20] [--warmup 3]
        [--device auto] [section.key=value ...]

Builds the recipe's trainer on a temporary folder of generated speech-like audio (so
the figures measure the model and losses, not the disk), times `--steps` optimiser steps
after `--warmup` untimed ones (which include compilation), first eager and then with
`compile=True`, and prints steps/s, seconds of audio per second and the ratio.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from codec.audio import save_audio
from codec.config import load_recipe, replace_recipe
from codec.train import distributed
from codec.train.data import loader
from codec.train.loop import Trainer

REPO = Path(__file__).resolve().parent.parent


def speech_like(seconds: float, sample_rate: int, seed: int) -> np.ndarray:
    """Harmonics of a gliding pitch, gated into syllables, with a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 110 + 40 * rng.random() + 30 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    wav = sum(np.sin(k * phase) / k for k in range(1, 10))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 3 * t))
    return (0.2 * wav * envelope + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def measure(recipe, folder: Path, steps: int, warmup: int) -> tuple[float, float]:
    """(steps per second, seconds of training audio per second) after warm-up."""
    info = distributed.setup(recipe.device)
    trainer = Trainer(recipe, folder / f"run-{time.monotonic_ns()}", info)
    trainer.logger.close()  # no progress bar in a benchmark
    trainer.step = recipe.losses.adversarial_start  # time the full (adversarial) step
    batches = loader(trainer.dataset, recipe.data.batch_size, num_workers=0)
    for _ in range(warmup):
        trainer.train_step(batches)
    _sync(info.device)
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(batches)
    _sync(info.device)
    rate = steps / (time.perf_counter() - t0)
    return rate, rate * trainer.samples_per_step * recipe.data.segment_seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(REPO / "recipes/folder/codec16k.yaml"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i in range(8):
            save_audio(folder / "audio" / f"{i}.wav", speech_like(6.0, 16000, i), 16000)
        recipe = load_recipe(
            args.recipe, [f"data.root={folder / 'audio'}", "data.num_workers=0", *args.overrides]
        )
        recipe = replace_recipe(recipe, device=args.device)
        device = distributed.setup(args.device).device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        print(f"device: {device} ({name or platform.machine()}), threads {torch.get_num_threads()}")
        print(
            f"model: {recipe.model.channels} channels, batch {recipe.data.batch_size} x "
            f"{recipe.data.segment_seconds:g} s, adversarial "
            f"{'on' if recipe.losses.adversarial or recipe.losses.feature else 'off'}, "
            f"precision {recipe.optim.precision}"
        )
        eager = measure(recipe, folder, args.steps, args.warmup)
        print(f"eager:    {eager[0]:7.2f} steps/s  {eager[1]:8.1f} s audio/s")
        compiled = measure(replace_recipe(recipe, compile=True), folder, args.steps, args.warmup)
        print(f"compiled: {compiled[0]:7.2f} steps/s  {compiled[1]:8.1f} s audio/s")
        print(f"compiled / eager: {compiled[0] / eager[0]:.2f}x")


if __name__ == "__main__":
    main()
