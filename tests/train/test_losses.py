"""Training objectives and helpers: multi-scale mel, multi-resolution STFT and
compressed-magnitude losses, waveform L1, adversarial and feature-matching losses, the
learning-rate schedule and checkpoints."""

import math

import pytest
import torch

from codec.errors import CodecError, ConfigError
from codec.train.checkpoint import load_checkpoint, save_checkpoint
from codec.train.loop import cosine_with_warmup
from codec.train.losses import (
    AdversarialLoss,
    CompressedSpectralLoss,
    FeatureMatchingLoss,
    MultiResolutionSTFTLoss,
    MultiScaleMelLoss,
    WaveformL1,
    lowpass_taps,
    waveform_l1,
)

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


def test_waveform_l1_module_matches_the_function():
    estimate, target = tone() + 0.1 * white(), tone()
    assert WaveformL1()(estimate, target) == waveform_l1(estimate, target)


def sine(hz: float, length: int = 8000, amplitude: float = 0.5) -> torch.Tensor:
    return amplitude * torch.sin(2 * math.pi * hz * torch.arange(length) / SR)[None, None]


def test_low_passed_waveform_l1_sees_errors_below_the_cutoff_only():
    loss = WaveformL1(cutoff_hz=1000, sample_rate=SR)
    target = tone(8000)
    # a 200 Hz error counts in full (the mean |sin| is 2/pi), a 3.1 kHz one not at all
    assert loss(target + sine(200), target) == pytest.approx(0.5 * 2 / math.pi, rel=0.03)
    assert loss(target + sine(3100), target) < 0.002
    assert waveform_l1(target + sine(3100), target) == pytest.approx(0.5 * 2 / math.pi, rel=0.01)


def test_low_passed_waveform_l1_is_the_l1_of_the_error_convolved_with_the_low_pass():
    estimate, target = tone() + 0.3 * white(), tone()
    taps = lowpass_taps(1000, SR).view(1, 1, -1)
    low = torch.nn.functional.conv1d(estimate - target, taps, padding=taps.shape[-1] // 2)
    expected = low.abs().mean().item()
    assert WaveformL1(1000, SR)(estimate, target) == pytest.approx(expected, rel=1e-4)


def test_low_passed_waveform_l1_is_zero_for_identical_audio_and_trains_the_estimate():
    loss = WaveformL1(cutoff_hz=1500, sample_rate=SR)
    target = tone()
    assert loss(target, target) == 0
    estimate = (target + 0.1 * white()).requires_grad_()
    loss(estimate, target).backward()
    assert torch.isfinite(estimate.grad).all() and estimate.grad.abs().sum() > 0


def test_low_passed_waveform_l1_is_float32_under_bf16_autocast():
    loss = WaveformL1(cutoff_hz=1000, sample_rate=SR)
    estimate, target = tone() + 0.1 * white(), tone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(estimate.bfloat16(), target.bfloat16())
    assert value.dtype == torch.float32 and torch.isfinite(value)


@pytest.mark.parametrize("cutoff", [-100.0, 8000.0, 12000.0])
def test_waveform_cutoff_outside_the_band_is_a_config_error(cutoff):
    with pytest.raises(ConfigError, match="waveform_cutoff"):
        WaveformL1(cutoff_hz=cutoff, sample_rate=SR)


def test_mel_loss_is_float32_under_bf16_autocast(mel_loss):
    noisy = (tone() + 0.05 * white()).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = mel_loss(noisy, tone().bfloat16())
    assert loss.dtype == torch.float32
    assert loss == pytest.approx(mel_loss(noisy.float(), tone().bfloat16().float()).item())


# Multi-resolution STFT loss ---------------------------------------------------------


@pytest.fixture(scope="module")
def stft_loss() -> MultiResolutionSTFTLoss:
    return MultiResolutionSTFTLoss(fft_sizes=(128, 512), hop_sizes=(32, 128), win_lengths=(96, 512))


def test_stft_loss_is_zero_for_identical_audio(stft_loss):
    assert stft_loss(tone(), tone()) == 0
    assert MultiResolutionSTFTLoss()(tone(), tone()) == 0


def test_stft_loss_grows_with_distortion(stft_loss):
    clean = tone()
    slight = stft_loss(clean + 0.01 * white(), clean)
    strong = stft_loss(clean + 0.1 * white(), clean)
    assert 0 < slight < strong


def test_stft_loss_gives_finite_gradients_even_from_silence(stft_loss):
    estimate = torch.zeros(2, 1, 2048, requires_grad=True)
    loss = stft_loss(estimate, tone().expand(2, 1, -1))
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(estimate.grad).all()
    assert torch.isfinite(stft_loss(tone(), torch.zeros(1, 1, 2048)))


def test_stft_loss_spectral_convergence_of_a_scaled_signal():
    """Halving the audio halves every magnitude: convergence 0.5, log distance log 2
    (white noise, so that no bin is under the floor)."""
    loss = MultiResolutionSTFTLoss(fft_sizes=(256,), hop_sizes=(64,), win_lengths=(256,))
    expected = 0.5 + math.log(2)
    assert loss(0.5 * white(), white()) == pytest.approx(expected, rel=1e-4)


def test_stft_loss_accepts_bf16_under_autocast(stft_loss):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = stft_loss((tone() + 0.05 * white()).bfloat16(), tone().bfloat16())
    assert loss.dtype == torch.float32 and loss > 0


# Compressed-magnitude loss ------------------------------------------------------------


def two_tones(loud: float, quiet: float, length: int = 4096) -> torch.Tensor:
    """500 Hz at amplitude `loud` and 3 kHz at `quiet`, `[1, 1, T]`."""
    t = torch.arange(length) / SR
    wave = loud * torch.sin(2 * math.pi * 500 * t) + quiet * torch.sin(2 * math.pi * 3000 * t)
    return wave[None, None]


def test_compressed_loss_is_zero_for_identical_audio_and_grows_with_distortion():
    loss = CompressedSpectralLoss()
    assert loss(tone(), tone()) == 0
    assert 0 < loss(tone() + 0.01 * white(), tone()) < loss(tone() + 0.1 * white(), tone())


def test_compressed_loss_weighs_a_quiet_harmonic_as_loudness_does():
    """A partial 20 dB down costs about (10^-0.3)^2 = 1/4 of a loud one when it goes
    missing: a squared error of magnitudes would make it 1/100, a log loss about 1."""
    loss = CompressedSpectralLoss(fft_sizes=(512,))
    target = two_tones(0.5, 0.05)
    lose_quiet = loss(two_tones(0.5, 0.0), target)
    lose_loud = loss(two_tones(0.0, 0.05), target)
    assert 0.15 < lose_quiet / lose_loud < 0.4


@pytest.mark.parametrize("level", [0.0, 1e-6])
def test_compressed_loss_gives_finite_gradients_from_silence(level):
    """Finite at exact silence (where a magnitude has no direction to grow in) and
    pulling towards the target from a whisper."""
    estimate = (level * white()).expand(2, 1, -1).clone().requires_grad_(True)
    CompressedSpectralLoss()(estimate, tone().expand(2, 1, -1)).backward()
    assert torch.isfinite(estimate.grad).all()
    assert (estimate.grad.abs().sum() > 0) == (level > 0)


def test_compressed_loss_under_bf16_autocast_matches_float32():
    """The GPU recipes train under bf16 autocast; the spectra stay in float32."""
    loss = CompressedSpectralLoss()
    noisy, clean = tone() + 0.05 * white(), tone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = loss(noisy, clean)
    assert mixed.dtype == torch.float32
    assert mixed.item() == pytest.approx(loss(noisy, clean).item(), rel=1e-5)


@pytest.mark.parametrize("kwargs", [{"fft_sizes": ()}, {"compression": 0.0}, {"compression": 2.0}])
def test_compressed_loss_rejects_a_bad_shape(kwargs):
    with pytest.raises(ConfigError, match="compressed loss"):
        CompressedSpectralLoss(**kwargs)


# Adversarial losses ------------------------------------------------------------------


def full(*values: float) -> list[torch.Tensor]:
    """One logits map per sub-discriminator, each filled with one value."""
    return [torch.full((2, 1, 3, 4), v) for v in values]


def test_hinge_generator_loss_is_zero_once_fakes_score_one():
    hinge = AdversarialLoss("hinge")
    assert hinge.generator(full(1.0, 2.0)) == 0
    assert hinge.generator(full(0.0, -1.0)) == pytest.approx((1 + 2) / 2)


def test_hinge_discriminator_loss():
    hinge = AdversarialLoss("hinge")
    assert hinge.discriminator(full(1.0, 3.0), full(-1.0, -2.0)) == 0
    # real 0 costs 1, fake 0.5 costs 1.5; the other sub-discriminator is perfect
    assert hinge.discriminator(full(0.0, 1.0), full(0.5, -1.0)) == pytest.approx(2.5 / 2)


def test_lsgan_losses_are_squared_distances_to_one_and_zero():
    lsgan = AdversarialLoss("lsgan")
    assert lsgan.generator(full(1.0)) == 0
    assert lsgan.generator(full(3.0, 0.0)) == pytest.approx((4 + 1) / 2)
    assert lsgan.discriminator(full(1.0), full(0.0)) == 0
    assert lsgan.discriminator(full(0.0), full(2.0)) == pytest.approx(1 + 4)


def test_unknown_adversarial_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="wgan"):
        AdversarialLoss("wgan")


# Feature matching -------------------------------------------------------------------


def features(seed: int) -> list[list[torch.Tensor]]:
    """Two sub-discriminators of two and one layers, of different sizes."""
    g = torch.Generator().manual_seed(seed)
    return [
        [torch.randn(2, 4, 8, generator=g), 100 * torch.randn(2, 3, generator=g)],
        [torch.randn(2, 5, generator=g)],
    ]


def test_feature_matching_is_zero_for_identical_features():
    assert FeatureMatchingLoss()(features(0), features(0)) == 0


def test_feature_matching_is_the_mean_relative_l1_over_layers():
    real = [[torch.tensor([1.0, -1.0]), torch.tensor([4.0])], [torch.tensor([2.0, 2.0])]]
    fake = [[torch.tensor([0.0, -1.0]), torch.tensor([2.0])], [torch.tensor([2.0, 0.0])]]
    expected = (0.5 / 1 + 2 / 4 + 1 / 2) / 3
    assert FeatureMatchingLoss()(real, fake) == pytest.approx(expected)


def test_feature_matching_is_invariant_to_scaling_both_features():
    loss = FeatureMatchingLoss()
    real, fake = features(0), features(1)
    scaled = (
        [[1000 * f for f in layers] for layers in real],
        [[1000 * f for f in layers] for layers in fake],
    )
    assert loss(*scaled) == pytest.approx(loss(real, fake).item(), rel=1e-5)


def test_feature_matching_trains_only_the_fake_features():
    real = [[f.requires_grad_() for f in layers] for layers in features(0)]
    fake = [[f.requires_grad_() for f in layers] for layers in features(1)]
    FeatureMatchingLoss()(real, fake).backward()
    assert all(f.grad is None for layers in real for f in layers)
    assert all(f.grad.abs().sum() > 0 for layers in fake for f in layers)


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
