"""SRNN and Ladder VAE: bounds on padded batches, IWAE, fusion, KL weights, training."""

from __future__ import annotations

import math

import pytest
import torch

from codec.errors import ConfigError
from codec.models.prosody.base import LOG_VAR_RANGE
from codec.models.prosody.ladder import LadderConfig, LadderVAE
from codec.models.prosody.objectives import gaussian_kl, precision_weighted_fusion
from codec.models.prosody.srnn import SRNN, SRNNConfig, reverse_padded


def _srnn() -> SRNN:
    torch.manual_seed(0)
    return SRNN(SRNNConfig(hidden=12, latent=4))


def _ladder() -> LadderVAE:
    torch.manual_seed(0)
    return LadderVAE(LadderConfig(hidden=12, latents=(6, 4, 2), deterministic=(12, 8, 4)))


MODELS = {"srnn": _srnn, "ladder": _ladder}


def _prosody(n: int, T: int, seed: int = 0) -> torch.Tensor:
    """Sinusoidal log-F0 with a voicing pattern and a smooth energy, `[n, T, 3]`."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(T, dtype=torch.float32)
    phase = torch.rand(n, 1, generator=g) * 2 * math.pi
    f0 = torch.sin(0.5 * t + phase)
    voiced = ((t.long() // 3 + torch.arange(n).unsqueeze(1)) % 3 != 0).float()
    energy = 0.5 * torch.cos(0.3 * t + phase) + 0.3 * voiced
    return torch.stack([f0 * voiced, voiced, energy], dim=-1)


def _padded(lengths: tuple[int, ...] = (12, 9, 5), T: int = 12) -> tuple[torch.Tensor, ...]:
    mask = torch.arange(T) < torch.tensor(lengths).unsqueeze(1)
    return _prosody(len(lengths), T) * mask.unsqueeze(-1), mask


@pytest.mark.parametrize("name", MODELS)
def test_bound_fields_are_finite_with_the_documented_shapes(name: str) -> None:
    model = MODELS[name]()
    x, mask = _padded()
    out = model.elbo(x, mask, kl_weight=0.5, free_bits=0.1)
    for field in (out.bound, out.rec, out.kl, out.frames):
        assert field.shape == (3,) and torch.isfinite(field).all()
    assert out.loss.shape == () and torch.isfinite(out.loss)
    assert torch.equal(out.frames, torch.tensor([12.0, 9.0, 5.0]))
    assert torch.allclose(out.bound, out.rec - out.kl)
    assert (out.kl >= 0).all()
    if name == "srnn":
        assert out.kl_per_dim.shape == (12, 4)
    else:
        assert {k: v.shape for k, v in out.kl_per_dim.items()} == {
            "layer0": (6,),
            "layer1": (4,),
            "layer2": (2,),
        }


@pytest.mark.parametrize("name", MODELS)
def test_padded_frames_do_not_change_the_bound(name: str) -> None:
    model = MODELS[name]()
    x, mask = _padded()
    garbage = torch.where(mask.unsqueeze(-1), x, torch.full_like(x, 7.0))
    clean = model.elbo(x, mask, generator=torch.Generator().manual_seed(1))
    noisy = model.elbo(garbage, mask, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(clean.bound, noisy.bound, atol=1e-5)
    assert torch.allclose(clean.loss, noisy.loss, atol=1e-6)
    iwae_clean = model.iwae(x, mask, 5, generator=torch.Generator().manual_seed(2))
    iwae_noisy = model.iwae(garbage, mask, 5, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(iwae_clean, iwae_noisy, atol=1e-5)


def test_srnn_reconstructs_a_padded_sequence_like_the_unpadded_one() -> None:
    """The smoothing GRU reverses only the real frames, so padding is invisible."""
    model = _srnn().eval()
    x, mask = _padded(lengths=(12, 7))
    short = x[1:, :7]
    # along the path of posterior means the output depends on the real frames only
    padded = model.reconstruct(x, mask)[1, :7]
    alone = model.reconstruct(short, torch.ones(1, 7, dtype=torch.bool))[0]
    assert torch.allclose(padded, alone, atol=1e-5)


def test_reverse_padded_flips_only_the_real_frames() -> None:
    x = torch.arange(8.0).view(2, 4, 1)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    assert reverse_padded(x, mask)[..., 0].tolist() == [[3, 2, 1, 0], [5, 4, 6, 7]]
    assert torch.equal(reverse_padded(reverse_padded(x, mask), mask), x)


@pytest.mark.parametrize("name", MODELS)
def test_iwae_tightens_with_k(name: str) -> None:
    model = MODELS[name]()
    x, mask = _padded()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        elbo = torch.stack([model.elbo(x, mask, generator=g).bound for _ in range(4)]).mean(0)
    iwae = {
        k: torch.stack([model.iwae(x, mask, k, generator=g) for _ in range(4)]).mean(0)
        for k in (1, 10, 100)
    }
    assert torch.allclose(iwae[1].sum(), elbo.sum(), rtol=0.05)
    assert iwae[1].sum() < iwae[10].sum() < iwae[100].sum()
    assert (iwae[100] >= elbo).all()


@pytest.mark.parametrize("name", MODELS)
def test_iwae_with_many_samples_is_chunked_and_finite(name: str) -> None:
    model = MODELS[name]()
    x, mask = _padded(lengths=(6, 4), T=6)
    bound = model.iwae(x, mask, 500, chunk=128)
    assert bound.shape == (2,) and torch.isfinite(bound).all()


def test_ladder_posterior_is_the_precision_weighted_fusion() -> None:
    model = _ladder()
    x, mask = _padded()
    inf = model.infer(x, mask, generator=torch.Generator().manual_seed(0))
    # layer 1: bottom-up estimate fused with the prior given the sampled z_2
    prior = model.top_down[1](inf.z[2]).chunk(2, -1)
    prior_log_var = prior[1].clamp(*LOG_VAR_RANGE)
    fused = precision_weighted_fusion(*inf.bottom_up[1], prior[0], prior_log_var)
    assert torch.allclose(inf.q[1].mean, fused.mean, atol=1e-6)
    assert torch.allclose(inf.q[1].log_var, fused.log_var, atol=1e-6)
    var = 1 / (1 / inf.bottom_up[1].log_var.exp() + 1 / prior_log_var.exp())
    mean = var * (
        inf.bottom_up[1].mean / inf.bottom_up[1].log_var.exp() + prior[0] / prior_log_var.exp()
    )
    assert torch.allclose(inf.q[1].mean, mean, atol=1e-5)
    assert torch.allclose(inf.q[1].log_var.exp(), var, atol=1e-5)
    # the top layer's prior is N(0, I) and its posterior the bottom-up estimate
    assert torch.equal(inf.p[2].mean, torch.zeros_like(inf.z[2]))
    assert torch.equal(inf.q[2].mean, inf.bottom_up[2].mean)


def test_ladder_layer_kl_weight_zero_removes_that_layers_kl() -> None:
    model = _ladder()
    x, mask = _padded()
    full = model.elbo(x, mask, generator=torch.Generator().manual_seed(4))
    skip = model.elbo(
        x, mask, layer_kl_weights=[1.0, 0.0, 1.0], generator=torch.Generator().manual_seed(4)
    )
    inf = model.infer(x, mask, generator=torch.Generator().manual_seed(4))
    layer1_kl = gaussian_kl(*inf.q[1], *inf.p[1]).sum()
    assert torch.allclose(full.loss - skip.loss, layer1_kl / full.frames.sum(), atol=1e-5)
    assert torch.allclose(full.bound, skip.bound)  # the bound itself is unweighted
    with pytest.raises(ConfigError):
        model.elbo(x, mask, layer_kl_weights=[1.0, 1.0])


@pytest.mark.parametrize("name", MODELS)
def test_gradient_reaches_every_parameter(name: str) -> None:
    model = MODELS[name]()
    x, mask = _padded()
    model.elbo(x, mask).loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", MODELS)
def test_training_raises_the_elbo_per_frame(name: str) -> None:
    model = MODELS[name]()
    x = _prosody(8, 16, seed=5)
    mask = torch.ones(8, 16, dtype=torch.bool)
    g = torch.Generator().manual_seed(6)

    def per_frame() -> float:
        with torch.no_grad():
            out = model.elbo(x, mask, generator=g)
        return (out.bound.sum() / out.frames.sum()).item()

    before = per_frame()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        model.elbo(x, mask, generator=g).loss.backward()
        opt.step()
    after = per_frame()
    assert after > before + 2.0, (before, after)


@pytest.mark.parametrize("name", MODELS)
def test_sample_and_reconstruct_give_frames_with_binary_voicing(name: str) -> None:
    model = MODELS[name]()
    x, mask = _padded()
    samples = model.sample(2, 7, generator=torch.Generator().manual_seed(7))
    recon = model.reconstruct(x, mask)
    assert samples.shape == (2, 7, 3) and recon.shape == (3, 12, 3)
    for frames in (samples, recon):
        assert torch.isfinite(frames).all()
        assert set(frames[..., 1].unique().tolist()) <= {0.0, 1.0}


def test_configs_reject_bad_sizes() -> None:
    with pytest.raises(ConfigError):
        LadderConfig(latents=(4, 2), deterministic=(8,))
    with pytest.raises(ConfigError):
        SRNNConfig(latent=0)
