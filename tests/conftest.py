"""Shared fixtures: a tiny model saved as a model folder, and generated speech-like clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from codec import pretrained
from codec.audio import save_audio
from codec.config import CodecConfig
from codec.models.codec import CodecModel

TINY = CodecConfig(channels=4, latent_dim=8, dilations=(1,), n_codebooks=4, codebook_size=1024)


def tone(seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A voiced, speech-like test signal: harmonics of a gliding pitch, gated into syllables."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    wav = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 3 * t)).clip(0, 1)
    return (0.2 * wav * envelope + 0.001 * rng.standard_normal(len(t))).astype(np.float32)


def make_tiny_model(seed: int = 0, config: CodecConfig = TINY) -> CodecModel:
    """A randomly initialised tiny codec whose codebooks are k-means initialised."""
    torch.manual_seed(seed)
    model = CodecModel(config)
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(tone(1.0, seed=seed))[None, None])
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A model folder (safetensors + config.json + card) holding a tiny random model."""
    path = tmp_path_factory.mktemp("models") / "tiny"
    pretrained.save(make_tiny_model(), path, card="# tiny\nA random test model.\n")
    return path


@pytest.fixture
def speech_wav(tmp_path) -> Path:
    """A 2.3 s speech-like WAV at 16 kHz."""
    path = tmp_path / "speech.wav"
    save_audio(path, tone(2.3), 16000)
    return path
