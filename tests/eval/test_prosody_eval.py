"""Prosody evaluation metrics on hand-made inputs with known answers and on tiny models."""

import math

import pytest
import torch

from codec.eval import prosody
from codec.models.prosody import (
    VRAE,
    BoundOutput,
    LadderConfig,
    LadderVAE,
    RNNGauss,
    RNNGaussConfig,
    VRAEConfig,
)


def _batch(b: int = 3, t: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Prosody frames `[B, T, 3]` with random voicing and a mask with ragged lengths."""
    g = torch.Generator().manual_seed(seed)
    voiced = (torch.rand(b, t, generator=g) > 0.4).float()
    x = torch.stack([torch.randn(b, t, generator=g) * voiced, voiced, torch.randn(b, t)], -1)
    mask = torch.arange(t) < torch.tensor([t - 3 * i for i in range(b)]).unsqueeze(1)
    return x, mask


def test_nll_per_frame_of_rnn_gauss_is_its_exact_likelihood():
    torch.manual_seed(0)
    model = RNNGauss(RNNGaussConfig(hidden=8))
    batches = [_batch(seed=0), _batch(b=2, t=7, seed=1)]
    with torch.no_grad():
        log_p = sum(model.log_likelihood(x, m).sum().item() for x, m in batches)
    frames = sum(m.sum().item() for _, m in batches)
    assert prosody.nll_per_frame(model, batches, k=5) == pytest.approx(-log_p / frames, rel=1e-6)


def test_nll_per_frame_of_a_latent_model_is_finite():
    torch.manual_seed(0)
    model = VRAE(VRAEConfig(hidden=8, latent=2))
    assert math.isfinite(prosody.nll_per_frame(model, [_batch()], k=6, chunk=4))


def test_f0_rmse_in_cents_of_a_known_ratio():
    std = 0.25
    x = torch.tensor([[[0.0, 1, 0], [0.4, 1, 0], [0.0, 0, 0], [0.8, 1, 0]]])
    x_hat = x.clone()
    x_hat[..., 0] += math.log(2.0) / std  # one octave up in ln F0
    x_hat[0, 3, 1] = 0.0  # unvoiced in the reconstruction: not counted
    mask = torch.ones(1, 4, dtype=torch.bool)
    assert prosody.f0_rmse_cents(x, x_hat, mask, (5.0, std)) == pytest.approx(1200.0)
    x_hat[0, 1, 0] = x[0, 1, 0]  # one of the two counted frames exact
    assert prosody.f0_rmse_cents(x, x_hat, mask, (5.0, std)) == pytest.approx(1200 / 2**0.5)


def test_voicing_error_counts_real_frames_only():
    x = torch.zeros(2, 5, 3)
    x_hat = torch.zeros(2, 5, 3)
    x_hat[0, :2, 1] = 1.0  # two real mismatches
    x_hat[1, 4, 1] = 1.0  # a mismatch on a padded frame
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    assert prosody.voicing_error(x, x_hat, mask) == pytest.approx(2 / 8)


def test_active_units_counts_dimensions_with_varying_means():
    g = torch.Generator().manual_seed(0)
    scales = torch.tensor([1.0, 0.5, 0.01, 0.0])  # variances 1, 0.25, 1e-4, 0
    means = torch.randn(2000, 4, generator=g) * scales + 3.0
    assert prosody.active_units(means) == 2
    assert prosody.active_units(means, threshold=1e-5) == 3


def test_mutual_information_is_zero_when_the_posterior_ignores_x():
    mean = torch.randn(1, 3).expand(50, 3)
    log_var = torch.zeros(50, 3)
    assert prosody.mutual_information(mean, log_var) == pytest.approx(0.0, abs=1e-5)


def test_mutual_information_is_log_n_for_separated_deterministic_posteriors():
    n = 20
    mean = torch.arange(n, dtype=torch.float32).unsqueeze(1) * 10.0
    log_var = torch.full((n, 1), -6.0)
    assert prosody.mutual_information(mean, log_var) == pytest.approx(math.log(n), abs=1e-3)


def test_posterior_means_of_vrae_and_ladder():
    torch.manual_seed(0)
    batches = [_batch(seed=0), _batch(b=2, seed=1)]
    vrae = VRAE(VRAEConfig(hidden=8, latent=3))
    assert prosody.posterior_means(vrae, batches).shape == (5, 3)
    ladder = LadderVAE(LadderConfig(hidden=8, latents=(4, 2), deterministic=(8, 4)))
    means = prosody.posterior_means(ladder, batches)
    assert {k: tuple(v.shape) for k, v in means.items()} == {"layer0": (5, 4), "layer1": (5, 2)}


def test_kl_summary_weights_batches_and_sums_steps():
    def out(b: int, frames: float, kl: float, per_dim: list[float]) -> BoundOutput:
        zeros, kl_b, frames_b = torch.zeros(b), torch.full((b,), kl), torch.full((b,), frames)
        return BoundOutput(zeros, zeros, kl_b, frames_b, zeros[0], torch.tensor(per_dim))

    a, c = out(1, 10.0, 3.0, [1.0, 2.0]), out(3, 5.0, 1.0, [3.0, 0.0])
    summary = prosody.kl_summary([a, c])
    assert summary["kl_per_frame"] == pytest.approx((3 + 3) / (10 + 15))
    assert summary["kl_per_dim"] == pytest.approx([2.5, 0.5])
    assert summary["kl_per_dim_total"] == pytest.approx(3.0)
    a.kl_per_dim = {"layer0": torch.ones(4, 2)}  # per-step [T, D] is summed over T
    assert prosody.kl_summary([a])["layer0"] == pytest.approx([4.0, 4.0])


def test_traversal_shape_and_png(tmp_path):
    torch.manual_seed(0)
    model = VRAE(VRAEConfig(hidden=8, latent=3))
    values = [-2.0, 0.0, 2.0]
    frames = prosody.traversal(model, torch.zeros(3), dim=1, values=values, T=15)
    assert frames.shape == (3, 15, 3)
    assert ((frames[..., 1] == 0) | (frames[..., 1] == 1)).all()
    assert (frames[..., 0][frames[..., 1] == 0] == 0).all()
    path = prosody.plot_traversal(frames, tmp_path / "traversal.png", values=values)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cluster_purity_of_separated_and_of_random_labels():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 3, generator=g) * 20.0
    latents = centres.repeat_interleave(25, 0) + torch.randn(100, 3, generator=g)
    speakers = [f"spk{i}" for i in range(4) for _ in range(25)]
    assert prosody.cluster_purity(latents, speakers) == 1.0
    shuffled = [speakers[i] for i in torch.randperm(100, generator=g)]
    assert prosody.cluster_purity(latents, shuffled) < 0.5


def test_kl_active_units_does_not_depend_on_how_a_model_normalises_kl_per_dim():
    from codec.eval.prosody_report import kl_active_units
    from codec.models.prosody.base import BoundOutput

    # 2 sequences of 10 and 30 frames; per frame, dims carry 0.5, 0.02, 0.005, 0 nats
    per_frame = torch.tensor([0.5, 0.02, 0.005, 0.0])
    frames = torch.tensor([10.0, 30.0])
    kl = frames * per_frame.sum()
    zero = torch.zeros(2)
    per_step = per_frame * torch.tensor([1.0] * 10 + [0.5] * 20)[:, None]  # [T, D] batch mean
    as_vrnn = BoundOutput(zero, zero, kl, frames, zero.sum(), kl_per_dim=per_frame)
    as_srnn = BoundOutput(zero, zero, kl, frames, zero.sum(), kl_per_dim=per_step)
    assert kl_active_units([as_vrnn]) == kl_active_units([as_srnn]) == 2
    assert kl_active_units([as_vrnn], threshold=0.001) == 3
