"""Numerical checks of the prosody VAE objectives against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from codec.errors import ConfigError
from codec.models.prosody import (
    bernoulli_log_prob,
    cosine,
    cyclical,
    elbo_from_log_weights,
    free_bits,
    gaussian_kl,
    gaussian_log_prob,
    iwae_bound,
    kl_weight,
    linear,
    log_importance_weights,
    per_layer_warmup,
    precision_weighted_fusion,
)

F64 = torch.float64


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


# Gaussian and Bernoulli densities


def test_gaussian_log_prob_matches_torch_normal():
    x, mean, log_var = _randn(3, 5, seed=0), _randn(3, 5, seed=1), _randn(3, 5, seed=2)
    expected = torch.distributions.Normal(mean, torch.exp(0.5 * log_var)).log_prob(x)
    torch.testing.assert_close(gaussian_log_prob(x, mean, log_var), expected)
    torch.testing.assert_close(gaussian_log_prob(x, mean, log_var, dim=-1), expected.sum(-1))


def test_bernoulli_log_prob_matches_torch_bernoulli():
    logits = _randn(4, 6, seed=3)
    x = (_randn(4, 6, seed=4) > 0).to(F64)
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x)
    torch.testing.assert_close(bernoulli_log_prob(x, logits), expected)
    torch.testing.assert_close(bernoulli_log_prob(x, logits, dim=-1), expected.sum(-1))


@pytest.mark.parametrize("standard_prior", [True, False])
def test_gaussian_kl_matches_monte_carlo(standard_prior: bool):
    d, n = 4, 100_000
    mean_q, log_var_q = _randn(d, seed=5), 0.5 * _randn(d, seed=6)
    if standard_prior:
        mean_p, log_var_p, prior = None, None, (torch.zeros(d, dtype=F64),) * 2
    else:
        mean_p, log_var_p = _randn(d, seed=7), 0.5 * _randn(d, seed=8)
        prior = (mean_p, log_var_p)
    z = mean_q + torch.exp(0.5 * log_var_q) * _randn(n, d, seed=9)
    log_ratio = gaussian_log_prob(z, mean_q, log_var_q) - gaussian_log_prob(z, *prior)
    standard_error = log_ratio.std(0) / math.sqrt(n)
    analytic = gaussian_kl(mean_q, log_var_q, mean_p, log_var_p)
    assert analytic.shape == (d,)
    assert ((log_ratio.mean(0) - analytic).abs() < 4 * standard_error).all()


def test_gaussian_kl_is_zero_for_identical_and_positive_otherwise():
    mean, log_var = _randn(8, seed=10), _randn(8, seed=11)
    torch.testing.assert_close(gaussian_kl(mean, log_var, mean, log_var), torch.zeros(8, dtype=F64))
    assert (gaussian_kl(mean, log_var, mean + 0.1, log_var) > 0).all()
    assert (gaussian_kl(mean, log_var, mean, log_var - 0.1) > 0).all()
    assert (gaussian_kl(mean, log_var) > 0).all()


# Ladder VAE precision-weighted fusion


def test_fusion_is_the_product_of_two_gaussians():
    m_a, lv_a, m_b, lv_b = (_randn(6, seed=s) for s in range(12, 16))
    v_a, v_b = lv_a.exp(), lv_b.exp()
    mean, log_var = precision_weighted_fusion(m_a, lv_a, m_b, lv_b)
    torch.testing.assert_close(mean, (m_a / v_a + m_b / v_b) / (1 / v_a + 1 / v_b))
    torch.testing.assert_close(log_var.exp(), 1 / (1 / v_a + 1 / v_b))

    # N(x; a) N(x; b) = N(m_a; m_b, v_a + v_b) N(x; fused), for every x.
    x = torch.linspace(-5, 5, 101, dtype=F64)[:, None]
    product = gaussian_log_prob(x, m_a, lv_a) + gaussian_log_prob(x, m_b, lv_b)
    normaliser = gaussian_log_prob(m_a, m_b, torch.log(v_a + v_b))
    torch.testing.assert_close(product - normaliser, gaussian_log_prob(x, mean, log_var))


def test_fusion_is_stable_for_extreme_variances():
    mean, log_var = precision_weighted_fusion(
        torch.tensor([1.0]), torch.tensor([-200.0]), torch.tensor([5.0]), torch.tensor([200.0])
    )
    torch.testing.assert_close(mean, torch.tensor([1.0]))
    torch.testing.assert_close(log_var, torch.tensor([-200.0]))


# Free bits


def test_free_bits_per_dimension_clamps_the_batch_mean_exactly():
    # Batch means per dim: 0.1, 0.9, 2.0 with threshold 0.5.
    kl = torch.tensor([[0.0, 0.8, 1.0], [0.2, 1.0, 3.0]], requires_grad=True)
    term = free_bits(kl, threshold=0.5)
    torch.testing.assert_close(term, torch.tensor(0.5 + 0.9 + 2.0))
    term.backward()
    torch.testing.assert_close(kl.grad, torch.tensor([[0.0, 0.5, 0.5], [0.0, 0.5, 0.5]]))


def test_free_bits_per_group_clamps_the_group_sum():
    # [B=2, T=2, D=2]; groups are time steps, KL summed over D: means 0.3 and 1.5.
    kl = torch.tensor([[[0.1, 0.1], [0.5, 1.0]], [[0.2, 0.2], [1.0, 0.5]]], requires_grad=True)
    term = free_bits(kl, threshold=1.0, mode="group", dims=(-1,))
    torch.testing.assert_close(term, torch.tensor(1.0 + 1.5))
    term.backward()
    assert (kl.grad[:, 0] == 0).all() and (kl.grad[:, 1] == 0.5).all()


def test_free_bits_rejects_bad_arguments():
    kl = torch.ones(2, 3)
    with pytest.raises(ConfigError):
        free_bits(kl, 0.5, mode="sample")
    with pytest.raises(ConfigError):
        free_bits(kl, -1.0)
    with pytest.raises(ValueError):
        free_bits(kl, 0.5, mode="group")
    with pytest.raises(ValueError):
        free_bits(kl, 0.5, mode="group", dims=(0,))


# Importance-weighted bound on a linear Gaussian model


def _linear_gaussian_log_weights(k: int, repeats: int, seed: int):
    """z ~ N(0, 1), x | z ~ N(z, s^2), with a deliberately poor q. Returns `[R, K, B]`, log p(x)."""
    s2 = 0.25
    x = torch.tensor([0.5, 1.5, 3.0], dtype=F64)
    mean_q = 0.5 * x / (1 + s2) - 0.5  # true posterior: N(x / (1 + s^2), s^2 / (1 + s^2))
    log_var_q = torch.full_like(x, math.log(0.5 * s2 / (1 + s2)))
    z = mean_q + torch.exp(0.5 * log_var_q) * _randn(repeats, k, len(x), seed=seed)
    log_w = log_importance_weights(
        gaussian_log_prob(x, z, torch.full_like(z, math.log(s2))),
        gaussian_log_prob(z, torch.zeros_like(z), torch.zeros_like(z)),
        gaussian_log_prob(z, mean_q, log_var_q),
    )
    log_px = gaussian_log_prob(x, torch.zeros_like(x), torch.full_like(x, math.log(1 + s2)))
    return log_w, log_px


def test_iwae_bound_tightens_with_k_and_stays_below_log_px():
    repeats = 1000
    means, errors = [], []
    for i, k in enumerate((1, 5, 50, 500)):
        log_w, log_px = _linear_gaussian_log_weights(k, repeats, seed=20 + i)
        bounds = torch.stack([iwae_bound(lw) for lw in log_w])  # [R, B]
        means.append(bounds.mean(0))
        errors.append(bounds.std(0) / math.sqrt(repeats))
        assert (means[-1] <= log_px + 4 * errors[-1]).all()
    for lo, hi, e_lo, e_hi in zip(means, means[1:], errors, errors[1:], strict=False):
        assert (hi - lo > 3 * torch.sqrt(e_lo**2 + e_hi**2)).all()


def test_iwae_with_one_sample_is_the_elbo():
    log_w, _ = _linear_gaussian_log_weights(1, 1, seed=30)
    torch.testing.assert_close(iwae_bound(log_w[0]), elbo_from_log_weights(log_w[0]))


def test_elbo_matches_its_closed_form():
    n = 100_000
    log_w, log_px = _linear_gaussian_log_weights(n, 1, seed=31)
    s2, x = 0.25, torch.tensor([0.5, 1.5, 3.0], dtype=F64)
    mean_q = 0.5 * x / (1 + s2) - 0.5
    log_var_q = torch.full_like(x, math.log(0.5 * s2 / (1 + s2)))
    expected_recon = -0.5 * (
        math.log(2 * math.pi * s2) + ((x - mean_q) ** 2 + log_var_q.exp()) / s2
    )
    closed_form = expected_recon - gaussian_kl(mean_q, log_var_q)
    standard_error = log_w[0].std(0) / math.sqrt(n)
    assert ((elbo_from_log_weights(log_w[0]) - closed_form).abs() < 4 * standard_error).all()
    assert (closed_form < log_px).all()


def test_iwae_bound_is_finite_for_very_negative_log_weights():
    log_w = -1e4 + _randn(500, 3, seed=32)
    bound = iwae_bound(log_w)
    assert torch.isfinite(bound).all()
    assert not torch.isfinite(torch.log(log_w.exp().mean(0))).any()  # the naive form fails
    torch.testing.assert_close(bound, iwae_bound(log_w + 1e4) - 1e4)


# KL-annealing schedules


def test_linear_and_cosine_schedules_at_known_steps():
    assert [linear(s, 100) for s in (0, 25, 100, 500)] == [0.0, 0.25, 1.0, 1.0]
    assert linear(7, 0) == 1.0
    assert cosine(0, 100) == 0.0
    assert cosine(50, 100) == pytest.approx(0.5)
    assert cosine(100, 100) == cosine(1000, 100) == 1.0


def test_cyclical_schedule_rises_holds_and_repeats():
    values = [cyclical(s, period=100, ratio=0.5) for s in (0, 25, 50, 99)]
    assert values == [0.0, 0.5, 1.0, 1.0]
    assert all(cyclical(s, 100) == cyclical(s + 300, 100) for s in range(0, 100, 7))


def test_per_layer_warmup_starts_deeper_layers_later():
    assert per_layer_warmup(50, layer=0, n_layers=2, warmup=100) == linear(50, 100) == 0.5
    assert per_layer_warmup(50, layer=1, n_layers=2, warmup=100) == 0.0
    assert per_layer_warmup(75, layer=1, n_layers=2, warmup=100) == 0.5
    assert all(per_layer_warmup(100, layer, 3, 100) == 1.0 for layer in range(3))


def test_kl_weight_factory_dispatches_and_rejects_unknown_names():
    assert kl_weight("linear", 25, warmup=100) == 0.25
    assert kl_weight("cyclical", 125, period=100, ratio=0.5) == 0.5
    assert kl_weight("per_layer_warmup", 75, layer=1, n_layers=2, warmup=100) == 0.5
    with pytest.raises(ConfigError, match="unknown KL schedule"):
        kl_weight("sigmoid", 10, warmup=100)
    with pytest.raises(ConfigError):
        cyclical(10, period=0)
