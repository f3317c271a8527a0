"""The codec model: shapes of encode/decode/forward, bitrates, causality, receptive field."""

import copy
import dataclasses
import math

import pytest
import torch

from codec.config import CodecConfig
from codec.errors import CodecError
from codec.models.codec import CodecModel, transfer_weights
from codec.nn.seanet import ResidualUnit

# two stages instead of four keep each call a few ms on a busy CPU; the structure
# (strided and transposed convolutions, dilated residual units) is the same
SMALL = CodecConfig(
    channels=4, latent_dim=8, n_codebooks=2, codebook_size=16, ratios=(2, 4), dilations=(1, 3)
)
HOP = SMALL.hop_length  # 8


def noise(*shape: int, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def model() -> CodecModel:
    """A small untrained codec whose codebooks were initialised by one training pass."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        m = CodecModel(SMALL)
        m.train()(noise(2, 1, 16 * HOP))  # k-means init of every codebook
    return m.eval()


@pytest.fixture(scope="module")
def default_model() -> CodecModel:
    return CodecModel(CodecConfig())


# Shapes -------------------------------------------------------------------------------


def test_encode_one_waveform_gives_codebooks_by_frames(model):
    length = 3 * HOP + 5
    codes = model.encode(noise(length))
    assert codes.shape == (SMALL.n_codebooks, math.ceil(length / HOP))
    assert codes.dtype == torch.int64
    assert 0 <= codes.min() and codes.max() < SMALL.codebook_size


def test_encode_a_batch(model):
    codes = model.encode(noise(3, 2 * HOP))
    assert codes.shape == (3, SMALL.n_codebooks, 2)


def test_encode_at_a_lower_bitrate_keeps_the_first_codebooks(model):
    wav = noise(2 * HOP)
    low = model.encode(wav, bitrate=model.bitrates()[0])
    assert low.shape == (1, 2)
    assert torch.equal(low, model.encode(wav)[:1])


def test_decode_gives_hop_samples_per_frame(model):
    codes = model.encode(noise(3 * HOP + 5))
    assert model.decode(codes).shape == (4 * HOP,)
    assert model.decode(codes[None].expand(2, -1, -1)).shape == (2, 4 * HOP)
    assert model.decode(codes[:1]).shape == (4 * HOP,)  # fewer codebooks, lower bitrate


def test_decode_refuses_more_codebooks_than_the_model_has(model):
    codes = torch.zeros(SMALL.n_codebooks + 1, 4, dtype=torch.long)
    with pytest.raises(CodecError, match="codebooks"):
        model.decode(codes)


def test_forward_reconstructs_audio_of_the_input_length(model):
    audio = noise(2, 1, 2 * HOP + 3)
    out = model(audio)
    assert out.audio.shape == audio.shape
    assert out.codes.shape == (2, SMALL.n_codebooks, 3)
    assert out.commitment_loss == 0  # eval mode
    assert out.n_codebooks.tolist() == [SMALL.n_codebooks] * 2


# Bitrates -----------------------------------------------------------------------------


def test_default_bitrates_are_half_kbps_steps_up_to_6(default_model):
    assert default_model.bitrates() == [0.5 * n for n in range(1, 13)]


@pytest.mark.parametrize(("bitrate", "n"), [(6.0, 12), (3.0, 6), (1.5, 3), (0.5, 1), (None, 12)])
def test_codebooks_for_a_bitrate(default_model, bitrate, n):
    assert default_model.n_codebooks_for(bitrate) == n


@pytest.mark.parametrize("bitrate", [7.0, 1.2, 0.0, -0.5])
def test_unavailable_bitrate_names_the_choices(default_model, bitrate):
    with pytest.raises(CodecError, match=r"choose one of 0\.5, 1, 1\.5, .*, 6$"):
        default_model.n_codebooks_for(bitrate)


# Causality and receptive field ---------------------------------------------------------


def test_later_samples_do_not_change_earlier_codes(model):
    wav = noise(8 * HOP)
    cut = 5 * HOP + 3  # frames 0-4 end before the cut
    changed = wav.clone()
    changed[cut:] = noise(8 * HOP - cut, seed=1)
    codes, changed_codes = model.encode(wav), model.encode(changed)
    assert torch.equal(codes[:, :5], changed_codes[:, :5])
    latents = model.encoder(wav[None, None]), model.encoder(changed[None, None])
    assert torch.equal(latents[0][..., :5], latents[1][..., :5])
    assert not torch.equal(latents[0][..., 5:], latents[1][..., 5:])


def test_later_codes_do_not_change_earlier_audio(model):
    codes = model.encode(noise(6 * HOP))
    changed = codes.clone()
    changed[:, 4:] = (changed[:, 4:] + 1) % SMALL.codebook_size
    assert torch.equal(model.decode(codes)[: 4 * HOP], model.decode(changed)[: 4 * HOP])


def test_encoder_receptive_field_bounds_the_history_of_a_frame(model):
    encoder_field, _ = model.receptive_field()
    frames = encoder_field // HOP + 3
    wav = noise(1, 1, frames * HOP)
    last = frames - 1
    # frame `last` ends at sample frames * HOP - 1 and reads at most encoder_field samples
    start = frames * HOP - encoder_field
    changed = wav.clone()
    changed[..., :start] = noise(start, seed=1)
    z, z_changed = model.encoder(wav), model.encoder(changed)
    assert torch.allclose(z[..., last], z_changed[..., last], atol=1e-6, rtol=0)
    assert not torch.allclose(z[..., 0], z_changed[..., 0])  # the change does reach frame 0


def test_decoder_receptive_field_bounds_the_history_of_a_frame(model):
    _, decoder_field = model.receptive_field()
    frames = decoder_field + 3
    z = noise(1, SMALL.latent_dim, frames)
    last = frames - 1
    changed = z.clone()
    changed[..., : frames - decoder_field] = noise(SMALL.latent_dim, frames - decoder_field, seed=1)
    audio, changed_audio = model.decoder(z), model.decoder(changed)
    tail = slice(last * HOP, frames * HOP)
    assert torch.allclose(audio[..., tail], changed_audio[..., tail], atol=1e-6, rtol=0)
    assert not torch.allclose(audio[..., :HOP], changed_audio[..., :HOP])


# Pruning -------------------------------------------------------------------------------


def test_a_model_without_some_outer_residual_units_starts_from_the_full_ones_weights(model):
    """`transfer_weights` copies every layer the smaller model kept, so it computes what
    the full model computes with the dropped units' corrections left out."""
    pruned = CodecModel(dataclasses.replace(SMALL, outer_dilations=(1,)))
    transfer_weights(model, pruned)
    pruned.eval()
    full_without = copy.deepcopy(model)
    for part in (full_without.encoder, full_without.decoder):
        units = [i for i, m in enumerate(part.model) if isinstance(m, ResidualUnit)]
        outer = units[1] if part is full_without.encoder else units[-1]  # dilation 3
        part.model[outer] = torch.nn.Identity()
    x = noise(1, 1, 6 * HOP)
    with torch.inference_mode():
        codes = pruned.encode(x[0])
        assert torch.equal(codes, full_without.encode(x[0]))
        torch.testing.assert_close(pruned.decode(codes), full_without.decode(codes))


def test_weights_cannot_go_to_a_model_with_units_or_layers_the_source_lacks(model):
    pruned = CodecModel(dataclasses.replace(SMALL, outer_dilations=(1,)))
    with pytest.raises(CodecError, match="differ beyond dropped residual units"):
        transfer_weights(pruned, CodecModel(SMALL))
    with pytest.raises(CodecError, match="differ beyond dropped residual units"):
        transfer_weights(model, CodecModel(dataclasses.replace(SMALL, channels=8)))
