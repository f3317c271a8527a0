"""Discriminators for adversarial training: MS-STFT (EnCodec), MPD (HiFi-GAN), combined."""

import pytest
import torch

from codec.errors import ConfigError
from codec.train.discriminators import (
    CombinedDiscriminator,
    DiscriminatorOutput,
    MultiPeriodDiscriminator,
    MultiScaleSTFTDiscriminator,
    build_discriminator,
)
from codec.train.losses import AdversarialLoss, FeatureMatchingLoss

TINY_MPD = (2, 4, 8, 8, 8)  # HiFi-GAN's widths are (32, 128, 512, 1024, 1024)


def noise(length: int = 2048, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, 1, length, generator=g)


@pytest.fixture(scope="module")
def msstft() -> MultiScaleSTFTDiscriminator:
    torch.manual_seed(0)
    return MultiScaleSTFTDiscriminator(filters=4)


@pytest.fixture(scope="module")
def mpd() -> MultiPeriodDiscriminator:
    torch.manual_seed(0)
    return MultiPeriodDiscriminator(channels=TINY_MPD)


def test_msstft_gives_one_logits_map_and_five_feature_maps_per_scale(msstft):
    out = msstft(noise())
    assert isinstance(out, DiscriminatorOutput)
    assert len(out.logits) == len(out.features) == 3  # n_ffts 1024, 2048, 512
    for logits, features, n_fft in zip(out.logits, out.features, (1024, 2048, 512), strict=True):
        # [B, 1, frames, freq]: hop n_fft / 4, frequency halved by each of 3 strided blocks
        assert logits.shape == (2, 1, 2048 // (n_fft // 4) + 1, (n_fft // 2 + 1 + 7) // 8)
        assert len(features) == 5
        assert all(f.shape[:2] == (2, 4) for f in features)


def test_mpd_folds_the_waveform_by_each_period(mpd):
    out = mpd(noise(length=2050))  # not a multiple of any period: padded
    assert len(out.logits) == len(out.features) == 5
    for logits, features, period in zip(out.logits, out.features, (2, 3, 5, 7, 11), strict=True):
        assert logits.shape[:2] == (2, 1) and logits.shape[-1] == period
        assert [f.shape[1] for f in features] == list(TINY_MPD)


@pytest.mark.parametrize("length", [2048, 3001, 300])
def test_discriminators_accept_any_length(msstft, mpd, length):
    for disc in (msstft, mpd):
        out = disc(noise(length))
        assert all(torch.isfinite(lg).all() for lg in out.logits)


def test_combined_discriminator_concatenates_the_sub_discriminators(msstft, mpd):
    wav = noise()
    out = CombinedDiscriminator([msstft, mpd])(wav)
    assert len(out.logits) == len(out.features) == 3 + 5
    assert torch.equal(out.logits[3], mpd(wav).logits[0])


@pytest.mark.parametrize(("kind", "count"), [("msstft", 3), ("mpd", 5), ("msstft+mpd", 8)])
def test_build_discriminator(kind, count):
    out = build_discriminator(kind, filters=1)(noise())
    assert len(out.logits) == len(out.features) == count
    assert all(len(f) > 0 for f in out.features)


def test_build_discriminator_scales_the_mpd_widths_with_filters():
    disc = build_discriminator("mpd", filters=2)
    features = disc(noise()).features[0]
    assert [f.shape[1] for f in features] == [2, 8, 32, 64, 64]


def test_unknown_discriminator_is_a_config_error_naming_the_known_ones():
    with pytest.raises(ConfigError, match="'msd'.*msstft, mpd, msstft\\+mpd"):
        build_discriminator("msd")


def test_generator_losses_send_gradients_to_the_audio(msstft, mpd):
    wav = noise().requires_grad_()
    disc = CombinedDiscriminator([msstft, mpd])
    fake, real = disc(wav), disc(noise(seed=1))
    loss = AdversarialLoss().generator(fake.logits)
    loss = loss + FeatureMatchingLoss()(real.features, fake.features)
    loss.backward()
    assert torch.isfinite(wav.grad).all()
    assert wav.grad.abs().sum() > 0


def test_discriminator_loss_trains_every_parameter(msstft):
    real, fake = msstft(noise()), msstft(noise(seed=1))
    msstft.zero_grad()
    AdversarialLoss().discriminator(real.logits, fake.logits).backward()
    grads = {name: p.grad for name, p in msstft.named_parameters()}
    assert all(g is not None for g in grads.values())
    # The weight-norm directions; a last bias may get none, as hinge terms of real and
    # fake logits inside (-1, 1) pull it equally both ways.
    assert all(g.abs().sum() > 0 for name, g in grads.items() if name.endswith("original1"))
    msstft.zero_grad()


def test_different_audio_gives_different_logits(msstft, mpd):
    for disc in (msstft, mpd):
        a, b = disc(noise(seed=0)), disc(noise(seed=1))
        assert not torch.allclose(a.logits[0], b.logits[0])


def test_each_batch_item_is_judged_on_its_own(msstft):
    wav = noise(batch=3)
    together = msstft(wav).logits[0]
    alone = msstft(wav[1:2]).logits[0]
    assert torch.allclose(together[1:2], alone, atol=1e-5)
