"""SEANet blocks: lengths are kept exactly, causal layers never look ahead, centred ones do;
the fast inference paths compute what the training paths compute."""

import pytest
import torch

from codec.errors import ConfigError
from codec.nn.activation import ELU, Snake, activation
from codec.nn.conv import Conv1d, ConvTranspose1d, set_streaming
from codec.nn.seanet import ResidualUnit, SEANetDecoder, SEANetEncoder

SMALL = dict(channels=4, latent_dim=8, ratios=(2, 4), dilations=(1, 3))
HOP = 8


def noise(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def support(layer: torch.nn.Module, length: int, position: int) -> list[int]:
    """Output steps that an impulse at input `position` changes."""
    with torch.no_grad():
        impulse = torch.zeros(1, 1, length)
        impulse[..., position] = 1.0
        delta = layer(impulse) - layer(torch.zeros(1, 1, length))
    return delta[0].abs().sum(0).nonzero().flatten().tolist()


@pytest.mark.parametrize("causal", [True, False])
def test_encoder_and_decoder_keep_whole_frames(causal):
    encoder, decoder = SEANetEncoder(**SMALL, causal=causal), SEANetDecoder(**SMALL, causal=causal)
    audio = noise(2, 1, 5 * HOP)
    latents = encoder(audio)
    assert latents.shape == (2, 8, 5)
    assert decoder(latents).shape == audio.shape


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize(("kernel_size", "stride", "dilation"), [(7, 1, 1), (3, 1, 3), (8, 4, 1)])
def test_conv_maps_length_to_length_over_stride(causal, kernel_size, stride, dilation):
    conv = Conv1d(2, 3, kernel_size, stride=stride, dilation=dilation, causal=causal)
    assert conv(noise(1, 2, 24)).shape == (1, 3, 24 // stride)


@pytest.mark.parametrize("causal", [True, False])
def test_transposed_conv_maps_length_to_length_times_stride(causal):
    conv = ConvTranspose1d(2, 3, 8, stride=4, causal=causal)
    assert conv(noise(1, 2, 6)).shape == (1, 3, 24)


def test_causal_conv_sees_only_the_past():
    assert support(Conv1d(1, 1, 3, causal=True), 12, position=5) == [5, 6, 7]


def test_non_causal_conv_is_centred():
    assert support(Conv1d(1, 1, 3, causal=False), 12, position=5) == [4, 5, 6]


def test_causal_transposed_conv_never_reaches_earlier_steps():
    conv = ConvTranspose1d(1, 1, 8, stride=4, causal=True)
    # input step 2 covers outputs 8..11 and spills into the next step, never the previous
    assert support(conv, 6, position=2) == list(range(8, 16))


def test_causal_encoder_output_ignores_later_audio():
    encoder = SEANetEncoder(**SMALL, causal=True)
    audio = noise(1, 1, 6 * HOP)
    changed = audio.clone()
    changed[..., 3 * HOP :] = noise(3 * HOP, seed=1)
    assert torch.equal(encoder(audio)[..., :3], encoder(changed)[..., :3])


def test_non_causal_encoder_looks_ahead():
    encoder = SEANetEncoder(**SMALL, causal=False)
    audio = noise(1, 1, 6 * HOP)
    changed = audio.clone()
    changed[..., 3 * HOP :] = noise(3 * HOP, seed=1)
    assert not torch.equal(encoder(audio)[..., 2], encoder(changed)[..., 2])


def test_elu_outside_autograd_matches_torch_elu():
    x = torch.cat([noise(10_000) * 4, torch.tensor([-1e30, -100.0, -1e-8, 0.0, 1e-8, 1e30])])
    with torch.no_grad():
        fast = ELU()(x)
    torch.testing.assert_close(fast, torch.nn.functional.elu(x), atol=2e-7, rtol=1e-6)
    assert ELU()(torch.tensor([float("-inf"), float("inf")])).tolist() == [-1.0, float("inf")]


def test_elu_trains_with_the_exact_function():
    x, x_ref = noise(100).requires_grad_(), noise(100).requires_grad_()
    y, y_ref = ELU()(x), torch.nn.functional.elu(x_ref)
    (y.sum() + y_ref.sum()).backward()
    assert torch.equal(y, y_ref)
    assert torch.equal(x.grad, x_ref.grad)


def test_snake_adds_a_periodic_term_per_channel():
    snake = Snake(2)
    with torch.no_grad():
        snake.alpha.copy_(torch.tensor([[1.0], [3.0]]))
    x = noise(1, 2, 50)
    expected = x + torch.sin(x * snake.alpha) ** 2 / snake.alpha
    with torch.no_grad():
        torch.testing.assert_close(snake(x), expected)
    # trains alpha, and the fast inference path computes the same as the training one
    trained = snake(x)
    trained.sum().backward()
    assert snake.alpha.grad.abs().min() > 0
    torch.testing.assert_close(trained.detach(), expected)
    # bf16 in, bf16 out, the sine taken in float32
    half = snake(x.bfloat16())
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), snake(x.bfloat16().float()).bfloat16().float())
    assert snake(torch.zeros(1, 2, 3)).abs().max() == 0


@pytest.mark.parametrize("causal", [True, False])
def test_a_snake_seanet_keeps_whole_frames_and_causality(causal):
    encoder = SEANetEncoder(**SMALL, causal=causal, activation="snake")
    decoder = SEANetDecoder(**SMALL, causal=causal, activation="snake")
    assert any(isinstance(m, Snake) for m in encoder.modules())
    assert not any(isinstance(m, ELU) for m in decoder.modules())
    audio = noise(2, 1, 6 * HOP)
    assert decoder(encoder(audio)).shape == audio.shape
    if causal:
        changed = audio.clone()
        changed[..., 3 * HOP :] = noise(3 * HOP, seed=1)
        assert torch.equal(encoder(audio)[..., :3], encoder(changed)[..., :3])


def test_an_unknown_activation_is_refused():
    with pytest.raises(ConfigError, match="unknown activation 'relu'"):
        activation("relu", 4)


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize(
    ("out_channels", "dilation"), [(1, 1), (2, 3), (3, 1), (5, 4), (8, 2), (16, 1)]
)
def test_inference_conv_matches_torch(batch, causal, out_channels, dilation):
    # at most 8 output channels, or dilated on a small input: computed by matrix products
    conv = Conv1d(6, out_channels, 3 if out_channels > 2 else 7, dilation=dilation, causal=causal)
    x = noise(batch, 6, 50)
    training_path = conv(x)  # autograd on: torch's convolution
    with torch.no_grad():
        torch.testing.assert_close(conv(x), training_path, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize(("out_channels", "dilation"), [(3, 1), (8, 9), (24, 3)])
def test_a_streamed_conv_equals_the_whole_signal_in_pieces_of_any_length(
    batch, out_channels, dilation
):
    # narrow layers read their history in place (no concatenation); pieces shorter than
    # the history (2 * dilation steps) included
    conv = Conv1d(6, out_channels, 3, dilation=dilation)
    x = noise(batch, 6, 120)
    with torch.no_grad():
        whole = conv(x)
        set_streaming(conv, batch_size=batch)
        bounds = [0, 1, 3, 4, 30, 31, 80, 120]
        pieces = [conv(x[..., a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    torch.testing.assert_close(torch.cat(pieces, -1), whole, atol=1e-5, rtol=1e-5)


def test_outer_dilations_set_the_residual_units_of_the_full_rate_stages_only():
    def dilations(module: torch.nn.Module) -> list[int]:
        return [m.dilation for m in module.model if isinstance(m, ResidualUnit)]

    encoder = SEANetEncoder(**SMALL, outer_dilations=(1,))
    decoder = SEANetDecoder(**SMALL, outer_dilations=(1,))
    assert dilations(encoder) == [1, 1, 3]  # the first stage runs at the sample rate
    assert dilations(decoder) == [1, 3, 1]  # the last one does
    assert decoder(encoder(noise(1, 1, 5 * HOP))).shape == (1, 1, 5 * HOP)
    assert dilations(SEANetEncoder(**SMALL)) == [1, 3, 1, 3]
