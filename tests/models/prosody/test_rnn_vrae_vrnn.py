"""RNN-Gauss, VRAE and VRNN on tiny padded prosody batches: bounds, padding, IWAE, training."""

from __future__ import annotations

import math

import pytest
import torch

from codec.models.prosody.rnn import RNNGauss, RNNGaussConfig
from codec.models.prosody.vrae import VRAE, VRAEConfig
from codec.models.prosody.vrnn import VRNN, VRNNConfig

LATENT = 4
MODELS = {
    "rnn": lambda: RNNGauss(RNNGaussConfig(hidden=12)),
    "vrae": lambda: VRAE(VRAEConfig(hidden=12, latent=LATENT)),
    "vrnn": lambda: VRNN(VRNNConfig(hidden=12, latent=LATENT, features=8)),
}
LATENT_MODELS = ["vrae", "vrnn"]


def _model(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return MODELS[name]()


def _batch(lengths: tuple[int, ...] = (12, 7, 10, 3), seed: int = 0):
    """Random frames `[B, T, 3]` (voicing in {0, 1}) and a right-padding mask `[B, T]`."""
    g = torch.Generator().manual_seed(seed)
    b, t = len(lengths), max(lengths)
    x = torch.randn(b, t, 3, generator=g)
    x[..., 1] = (torch.rand(b, t, generator=g) > 0.4).float()
    mask = torch.arange(t) < torch.tensor(lengths).unsqueeze(1)
    return x, mask


def _sinusoids(n: int = 8, t: int = 16):
    """A tiny deterministic dataset: sinusoidal log-F0, a voicing pattern, a ramp of energy."""
    steps = torch.arange(t, dtype=torch.float32)
    phase = torch.linspace(0, math.pi, n).unsqueeze(1)
    voiced = ((steps + torch.arange(n).unsqueeze(1)) % 6 < 4).float()
    f0 = torch.sin(0.5 * steps + phase) * voiced
    energy = 0.1 * steps.expand(n, t) - 0.5 + 0.5 * voiced
    return torch.stack([f0, voiced, energy], -1), torch.ones(n, t, dtype=torch.bool)


@pytest.mark.parametrize("name", list(MODELS))
def test_bound_output_shapes_and_finite(name: str) -> None:
    model = _model(name)
    x, mask = _batch()
    out = model.elbo(x, mask)
    for field in (out.bound, out.rec, out.kl, out.frames):
        assert field.shape == (4,) and torch.isfinite(field).all()
    assert out.loss.shape == () and torch.isfinite(out.loss)
    assert torch.equal(out.frames, torch.tensor([12.0, 7.0, 10.0, 3.0]))
    torch.testing.assert_close(out.bound, out.rec - out.kl)
    if name == "rnn":
        assert out.kl_per_dim is None and (out.kl == 0).all()
    else:
        assert out.kl_per_dim.shape == (LATENT,) and (out.kl >= 0).all()


@pytest.mark.parametrize("name", list(MODELS))
def test_padded_frames_do_not_change_the_bound(name: str) -> None:
    model = _model(name)
    x, mask = _batch()
    garbage = x.clone()
    garbage[~mask] = 1e3 * torch.randn_like(garbage[~mask]).abs()
    torch.manual_seed(1)
    clean = model.elbo(x, mask)
    torch.manual_seed(1)
    noisy = model.elbo(garbage, mask)
    torch.testing.assert_close(clean.bound, noisy.bound)
    torch.testing.assert_close(clean.loss, noisy.loss)


@pytest.mark.parametrize("name", LATENT_MODELS)
def test_iwae_rises_with_k_above_the_elbo(name: str) -> None:
    model = _model(name)
    with torch.no_grad():  # larger weights make the decoder lean on z: well-separated bounds
        for p in model.parameters():
            p.mul_(2.0)
    x, mask = _batch(lengths=(8, 5))
    torch.manual_seed(0)
    with torch.no_grad():
        elbo = torch.stack([model.elbo(x, mask).bound for _ in range(20)]).mean(0)
        iwae = {
            k: torch.stack([model.iwae(x, mask, k) for _ in range(5)]).mean(0) for k in (1, 10, 100)
        }
    assert all(bound.shape == (2,) for bound in iwae.values())
    assert elbo.sum() < iwae[10].sum() < iwae[100].sum()
    assert iwae[1].sum() < iwae[100].sum()


@pytest.mark.parametrize("name", LATENT_MODELS)
def test_iwae_handles_large_k_in_chunks(name: str) -> None:
    model = _model(name)
    x, mask = _batch(lengths=(5, 3))
    with torch.no_grad():
        bound = model.iwae(x, mask, 500, chunk=128) if name == "vrae" else model.iwae(x, mask, 130)
    assert bound.shape == (2,) and torch.isfinite(bound).all()


def test_rnn_iwae_is_the_exact_log_likelihood_for_every_k() -> None:
    model = _model("rnn")
    x, mask = _batch()
    rec = model.elbo(x, mask).rec
    for k in (1, 10, 500):
        torch.testing.assert_close(model.iwae(x, mask, k), rec)


@pytest.mark.parametrize("name", list(MODELS))
def test_gradient_reaches_every_parameter(name: str) -> None:
    model = _model(name)
    x, mask = _batch()
    model.elbo(x, mask).loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", LATENT_MODELS)
def test_large_free_bits_replace_the_kl_with_threshold_times_dims(name: str) -> None:
    model = _model(name)
    x, mask = _batch()
    threshold, kl_weight = 50.0, 0.5
    torch.manual_seed(3)
    plain = model.elbo(x, mask, kl_weight=kl_weight)
    torch.manual_seed(3)
    freed = model.elbo(x, mask, kl_weight=kl_weight, free_bits=threshold)
    kl_term = threshold * LATENT  # per sequence
    expected = -(freed.rec.sum() - kl_weight * 4 * kl_term) / freed.frames.sum()
    torch.testing.assert_close(freed.loss, expected)
    torch.testing.assert_close(freed.kl, plain.kl)  # the reported KL is the true one
    assert freed.loss > plain.loss
    expected_plain = -(plain.rec.sum() - kl_weight * plain.kl.sum()) / plain.frames.sum()
    torch.testing.assert_close(plain.loss, expected_plain)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_training_raises_the_elbo_per_frame(name: str) -> None:
    x, mask = _sinusoids()
    model = _model(name)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)

    def elbo_per_frame() -> float:
        torch.manual_seed(0)
        with torch.no_grad():
            out = model.elbo(x, mask)
        return (out.bound.sum() / out.frames.sum()).item()

    before = elbo_per_frame()
    for _ in range(150):
        optimiser.zero_grad()
        model.elbo(x, mask).loss.backward()
        optimiser.step()
    after = elbo_per_frame()
    assert after > before + 1.0, (before, after)


@pytest.mark.parametrize("name", list(MODELS))
def test_sample_and_reconstruct_shapes(name: str) -> None:
    model = _model(name)
    x, mask = _batch()
    recon = model.reconstruct(x, mask)
    samples = model.sample(3, 9, generator=torch.Generator().manual_seed(0))
    assert recon.shape == x.shape and samples.shape == (3, 9, 3)
    for frames in (recon, samples):
        assert torch.isfinite(frames).all()
        assert set(frames[..., 1].unique().tolist()) <= {0.0, 1.0}
    assert (samples[..., 0][samples[..., 1] == 0] == 0).all()  # no pitch when unvoiced
