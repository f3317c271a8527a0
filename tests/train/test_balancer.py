"""EnCodec's loss balancer: weights are fractions of the gradient on the decoded audio."""

import pytest
import torch
import torch.distributed as dist

from codec.errors import ConfigError
from codec.train import balancer as balancer_module
from codec.train.balancer import Balancer


def audio(batch: int = 2, length: int = 8) -> torch.Tensor:
    """A stand-in for the decoded audio `[B, 1, T]`, with a graph behind it."""
    weight = torch.ones((), requires_grad=True)
    g = torch.Generator().manual_seed(0)
    return weight * torch.randn(batch, 1, length, generator=g)


def item_norms(grad: torch.Tensor) -> torch.Tensor:
    return grad.flatten(1).norm(dim=1)


def test_weights_are_fractions_of_the_gradient_whatever_the_loss_scales():
    """A loss 1000x larger still gets only its share: here 3:1, on separate halves."""
    out = audio()
    big = 1000 * out[..., :4].sum()  # gradient 1000 on the first half of each item
    small = out[..., 4:].sum()  # gradient 1 on the second half
    grad = Balancer({"big": 3.0, "small": 1.0})({"big": big, "small": small}, out)
    big_part, small_part = item_norms(grad[..., :4]), item_norms(grad[..., 4:])
    assert torch.allclose(big_part, torch.full((2,), 0.75))
    assert torch.allclose(small_part, torch.full((2,), 0.25))


def test_gradients_in_one_direction_add_up_to_the_total_norm():
    out = audio()
    direction = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    losses = {"mel": 1000 * (out * direction).sum(), "adversarial": (out * direction).sum()}
    balancer = Balancer({"mel": 1.0, "adversarial": 4.0}, total_norm=2.0)
    grad = balancer(losses, out)
    # Norms are per batch item, averaged over the batch (EnCodec's per_batch_item).
    assert item_norms(grad).mean().item() == pytest.approx(2.0)


def test_norms_are_averaged_over_the_batch_and_logged():
    out = audio(batch=2, length=4)
    scale = torch.tensor([1.0, 3.0]).view(2, 1, 1)  # item norms 2 and 6
    balancer = Balancer({"l1": 1.0})
    balancer({"l1": (out * scale).sum()}, out)
    assert balancer.last_norms == {"l1": pytest.approx(4.0)}


def test_scales_follow_a_bias_corrected_moving_average_of_the_norms():
    balancer = Balancer({"l1": 1.0}, ema_decay=0.5)
    out = audio(batch=1, length=4)
    first = balancer({"l1": 0.5 * out.sum()}, out)  # norm 1: the first step is exact
    assert item_norms(first).item() == pytest.approx(1.0)
    second = balancer({"l1": 2.0 * out.sum()}, out)  # norm 4, average (0.5 * 1 + 4) / 1.5
    assert item_norms(second).item() == pytest.approx(4.0 / 3.0)


def test_zero_weights_are_skipped_without_differentiating():
    out = audio()
    unrelated = torch.ones((), requires_grad=True) * 2  # not a function of the audio
    balancer = Balancer({"mel": 1.0, "adversarial": 0.0})
    grad = balancer({"mel": (3 * out).sum(), "adversarial": unrelated}, out)
    assert torch.allclose(item_norms(grad), torch.ones(2))
    assert set(balancer.last_norms) == {"mel"}


def test_loss_without_a_weight_is_a_config_error():
    out = audio()
    with pytest.raises(ConfigError, match="stft"):
        Balancer({"mel": 1.0})({"mel": out.sum(), "stft": out.sum()}, out)


def test_the_gradient_goes_to_the_model_through_backward():
    """How the trainer uses it, with a second loss that bypasses the balancer."""
    weight = torch.tensor(2.0, requires_grad=True)
    signal = torch.arange(4.0).view(1, 1, 4)
    out = weight * signal
    commitment = weight**2
    grad = Balancer({"l1": 1.0})({"l1": out.sum()}, out)
    assert grad.shape == out.shape and grad.dtype == out.dtype and not grad.requires_grad
    torch.autograd.backward([out, commitment], [grad, None])
    assert weight.grad.item() == pytest.approx((grad * signal).sum().item() + 2 * 2.0)


def test_bf16_audio_gets_a_bf16_gradient():
    out = audio().bfloat16()
    grad = Balancer({"l1": 1.0})({"l1": (out * 100).float().sum()}, out)
    assert grad.dtype == torch.bfloat16
    assert torch.allclose(item_norms(grad.float()), torch.ones(2), rtol=1e-2)


def test_state_dict_round_trip_through_a_weights_only_checkpoint(tmp_path):
    balancer = Balancer({"mel": 1.0, "stft": 1.0}, ema_decay=0.9)
    for scale in (1.0, 5.0):
        out = audio()
        balancer({"mel": scale * out.sum(), "stft": out.pow(2).sum()}, out)
    torch.save({"balancer": balancer.state_dict()}, tmp_path / "checkpoint.pt")
    restored = Balancer({"mel": 1.0, "stft": 1.0}, ema_decay=0.9)
    restored.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["balancer"])
    out = audio()
    losses = {"mel": 7 * out.sum(), "stft": out.pow(2).sum()}
    assert torch.equal(balancer(losses, out), restored(losses, out))


def test_norms_are_averaged_over_ranks(monkeypatch):
    """Another rank saw norm 6 where this one saw 2: both use 4."""

    def all_reduce(tensor, op):
        tensor.add_(6.0)  # the other rank's norm

    monkeypatch.setattr(balancer_module.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(balancer_module.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(balancer_module.dist, "all_reduce", all_reduce)
    out = audio(batch=1, length=4)
    balancer = Balancer({"l1": 1.0})
    grad = balancer({"l1": out.sum()}, out)  # local norm 2
    assert balancer.last_norms == {"l1": pytest.approx(4.0)}
    assert item_norms(grad).item() == pytest.approx(0.5)


def test_runs_in_a_real_process_group():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        out = audio()
        grad = Balancer({"l1": 1.0})({"l1": 5 * out.sum()}, out)
        assert torch.allclose(item_norms(grad), torch.ones(2))
    finally:
        dist.destroy_process_group()
