"""Training objectives and helpers: multi-scale mel loss, waveform L1, the learning-rate
schedule and checkpoints."""

import math

import pytest
import torch

from codec.errors import CodecError
from codec.train.checkpoint import load_checkpoint, save_checkpoint
from codec.train.loop import cosine_with_warmup
from codec.train.losses import MultiScaleMelLoss, waveform_l1

SR = 16000


def tone(length: int = 2048) -> torch.Tensor:
    """Two harmonics of 220 Hz, `[1, 1, T]`."""
    t = torch.arange(length) / SR
    wave = 0.5 * torch.sin(2 * math.pi * 220 * t) + 0.2 * torch.sin(2 * math.pi * 440 * t)
    return wave[None, None]


def white(length: int = 2048, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 1, length, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def mel_loss() -> MultiScaleMelLoss:
    """Two scales instead of six keep each call a few ms; the default is tested below."""
    return MultiScaleMelLoss(SR, windows=(64, 512), mels_per_window=(8, 64))


# Multi-scale mel loss ----------------------------------------------------------------


def test_mel_loss_is_zero_for_identical_audio(mel_loss):
    assert mel_loss(tone(), tone()) == 0


def test_mel_loss_grows_with_noise(mel_loss):
    clean = tone()
    slight = mel_loss(clean + 0.01 * white(), clean)
    strong = mel_loss(clean + 0.1 * white(), clean)
    assert 0 < slight < strong


def test_default_mel_loss_grows_with_noise():
    loss, clean = MultiScaleMelLoss(SR), tone()
    assert loss(clean, clean) == 0
    assert 0 < loss(clean + 0.01 * white(), clean) < loss(clean + 0.1 * white(), clean)


def test_mel_loss_accepts_batched_waveforms_with_or_without_channel(mel_loss):
    clean, noisy = tone().expand(2, 1, -1), tone() + 0.05 * white()
    noisy = noisy.expand(2, 1, -1)
    assert torch.allclose(mel_loss(noisy, clean), mel_loss(noisy[:, 0], clean[:, 0]))


def test_mel_loss_gives_finite_gradients_to_the_estimate(mel_loss):
    estimate = (tone() + 0.05 * white()).requires_grad_()
    mel_loss(estimate, tone()).backward()
    assert torch.isfinite(estimate.grad).all()
    assert estimate.grad.abs().sum() > 0


def test_mel_loss_of_silence_is_floored_not_infinite(mel_loss):
    silence = torch.zeros(1, 1, 2048)
    assert mel_loss(silence, silence) == 0
    assert torch.isfinite(mel_loss(tone(), silence))


# Waveform L1 ------------------------------------------------------------------------


def test_waveform_l1_is_the_mean_absolute_difference():
    estimate = torch.tensor([[1.0, -2.0, 0.5, 0.0]])
    target = torch.tensor([[0.0, 1.0, 0.5, -2.0]])
    assert waveform_l1(estimate, target) == pytest.approx((1 + 3 + 0 + 2) / 4)


# Learning-rate schedule -------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "multiplier"),
    [
        (0, 0.1),  # first step of a 10-step warm-up
        (4, 0.5),
        (9, 1.0),  # warm-up ends at the full learning rate
        (10, 1.0),
        (60, 0.5),  # halfway through the cosine
        (110, 0.0),  # decayed to zero at the last step
        (200, 0.0),  # and stays there
    ],
)
def test_cosine_with_warmup(step, multiplier):
    assert cosine_with_warmup(step, warmup=10, total=110) == pytest.approx(multiplier, abs=1e-12)


def test_cosine_without_warmup_starts_at_the_full_rate():
    assert cosine_with_warmup(0, warmup=0, total=100) == 1.0


# Checkpoints ------------------------------------------------------------------------


def test_checkpoint_round_trip(tmp_path):
    state = {"model": {"w": torch.arange(6.0).view(2, 3)}, "step": 42, "rng": torch.tensor([1, 2])}
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", state)
    loaded = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert loaded["step"] == 42
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert torch.equal(loaded["rng"], state["rng"])


def test_saving_replaces_the_old_checkpoint_without_leftovers(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})
    save_checkpoint(path, {"step": 2})
    assert load_checkpoint(path)["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_missing_checkpoint_is_a_codec_error(tmp_path):
    with pytest.raises(CodecError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_corrupt_checkpoint_is_a_codec_error(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"w": torch.ones(100)})
    path.write_bytes(path.read_bytes()[:200])  # truncated, as by a full disk
    with pytest.raises(CodecError, match="cannot read checkpoint"):
        load_checkpoint(path)


class _Payload:
    """Any Python object: loading it would mean unpickling arbitrary code."""


def test_checkpoint_with_arbitrary_objects_is_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"payload": _Payload()}, path)
    with pytest.raises(CodecError, match="cannot read checkpoint"):
        load_checkpoint(path)
