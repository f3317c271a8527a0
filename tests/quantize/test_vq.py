"""One EMA codebook: hand-computed EMA steps, k-means init, dead-code restarts,
straight-through gradients and the commitment loss."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from codec.config import load_recipe
from codec.quantize.vq import EMAVectorQuantizer, kmeans

RECIPE = Path(__file__).parents[2] / "recipes" / "speech16k" / "codec16k.yaml"
CENTRES = torch.tensor([[5.0, 5.0], [5.0, -5.0], [-5.0, 5.0], [-5.0, -5.0]])


def frames(*rows: list[float]) -> torch.Tensor:
    """Vectors given as rows `[N, D]`, as a one-item batch of latents `[1, D, N]`."""
    return torch.tensor(rows, dtype=torch.float32).T[None]


def quantizer_with(codebook, cluster_size, **kwargs) -> EMAVectorQuantizer:
    """A training-mode codebook with known statistics; `embed_sum` is consistent with
    them (codeword * cluster size) and k-means init is skipped."""
    codebook = torch.tensor(codebook, dtype=torch.float32)
    cluster_size = torch.tensor(cluster_size, dtype=torch.float32)
    vq = EMAVectorQuantizer(codebook.shape[1], codebook.shape[0], kmeans_iters=0, **kwargs)
    vq.codebook.copy_(codebook)
    vq.cluster_size.copy_(cluster_size)
    vq.embed_sum.copy_(codebook * cluster_size[:, None])
    return vq.train()


def blobs(centres: torch.Tensor, per_blob: int, seed: int) -> torch.Tensor:
    """`per_blob` points around each centre (std 0.1), as latents `[1, D, N]`."""
    g = torch.Generator().manual_seed(seed)
    rows = centres.repeat_interleave(per_blob, 0)
    return (rows + 0.1 * torch.randn(rows.shape, generator=g)).T[None]


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_nearest_is_the_closest_codeword_by_euclidean_distance():
    vq = EMAVectorQuantizer(8, 64, kmeans_iters=0)
    x = randn(500, 8, seed=1) * 2
    brute = torch.cdist(x, vq.codebook).argmin(dim=1)
    assert torch.equal(vq.nearest(x), brute)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as in bf16 training
        assert torch.equal(vq.nearest(x), brute)


# EMA update ---------------------------------------------------------------------------


def test_ema_step_matches_hand_computation():
    vq = quantizer_with(
        [[0, 0], [10, 10]], [2, 2], decay=0.5, epsilon=0.0, threshold_ema_dead_code=0
    )
    # [1, 0] and [0, 1] go to code 0, [9, 11] to code 1: counts [2, 1], sums [1, 1], [9, 11]
    out = vq(frames([1, 0], [0, 1], [9, 11]))
    # cluster_size = 0.5 * [2, 2] + 0.5 * [2, 1]
    assert torch.allclose(vq.cluster_size, torch.tensor([2.0, 1.5]))
    # embed_sum = 0.5 * [[0, 0], [20, 20]] + 0.5 * [[1, 1], [9, 11]]
    assert torch.allclose(vq.embed_sum, torch.tensor([[0.5, 0.5], [14.5, 15.5]]))
    # codebook = embed_sum / cluster_size (no smoothing with epsilon 0)
    assert torch.allclose(vq.codebook, torch.tensor([[0.25, 0.25], [29 / 3, 31 / 3]]))
    assert out.codes.tolist() == [[0, 0, 1]]


def test_laplace_smoothing_matches_hand_computation():
    vq = quantizer_with(
        [[0, 0], [10, 10]], [2, 2], decay=0.5, epsilon=1.0, threshold_ema_dead_code=0
    )
    vq(frames([1, 0], [0, 1], [9, 11]))
    # n = 3.5; smoothed = (cluster_size + 1) / (n + 2 * 1) * n = [21/11, 35/22]
    assert torch.allclose(vq.cluster_size, torch.tensor([2.0, 1.5]))  # stored unsmoothed
    expected = torch.tensor([[0.5 * 11 / 21, 0.5 * 11 / 21], [14.5 * 22 / 35, 15.5 * 22 / 35]])
    assert torch.allclose(vq.codebook, expected)


def test_laplace_smoothing_keeps_an_unused_code_finite():
    vq = quantizer_with([[0, 0], [10, 10]], [4, 0], decay=0.5, threshold_ema_dead_code=0)
    vq(frames([1, 0], [0, 1], [1, 1]))  # nothing goes to code 1, whose cluster size stays 0
    assert vq.cluster_size[1] == 0
    assert torch.isfinite(vq.codebook).all()


def test_training_updates_only_from_items_in_the_mask():
    vq = quantizer_with([[0, 0], [10, 10]], [2, 2], decay=0.5, threshold_ema_dead_code=0)
    x = torch.stack([frames([1, 0], [0, 1])[0], frames([9, 9], [11, 11])[0]])  # [2, 2, 2]
    before = vq.codebook.clone()
    out = vq(x, mask=torch.tensor([True, False]))
    # only item 0 counted: code 0 gets 2 vectors, code 1 none
    assert torch.allclose(vq.cluster_size, torch.tensor([2.0, 1.0]))
    # the loss is to the codewords the step quantised with, before its update
    expected = 0.25 * F.mse_loss(x[0], before[out.codes[0]].T)
    assert torch.allclose(out.commitment_loss, expected)


# k-means initialisation ---------------------------------------------------------------


def test_kmeans_finds_separated_clusters_and_counts_members():
    samples = blobs(CENTRES[:2], per_blob=10, seed=0)[0].T
    generator = torch.Generator().manual_seed(0)
    centroids, counts = kmeans(samples, k=2, iters=5, generator=generator)
    order = centroids[:, 0].argsort(descending=True)  # [5, 5] first, then [5, -5]
    assert torch.allclose(centroids[order], CENTRES[:2], atol=0.1)
    assert counts.tolist() == [10.0, 10.0]


def test_kmeans_with_fewer_samples_than_codes_draws_centroids_from_the_samples():
    samples = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    centroids, _ = kmeans(samples, k=4, iters=0, generator=torch.Generator().manual_seed(0))
    assert centroids.shape == (4, 2)
    assert all(any(torch.equal(c, s) for s in samples) for c in centroids)


def test_first_training_batch_initialises_the_codebook_by_kmeans_once():
    vq = EMAVectorQuantizer(2, 4).train()
    assert not vq.initialized
    with torch.random.fork_rng():
        # k-means draws its starting rows from the global RNG; plain Lloyd from random
        # rows can leave two codewords in one blob, so pin a start that does not
        torch.manual_seed(0)
        vq(blobs(CENTRES, per_blob=16, seed=0))
    assert vq.initialized
    assert torch.cdist(CENTRES, vq.codebook).min(dim=1).values.max() < 0.2

    # a second batch, shifted by 3: EMA moves each codeword by (1 - decay) * 3 = 0.03,
    # whereas re-running k-means would jump to the new blobs
    vq(blobs(CENTRES + 3.0, per_blob=16, seed=1))
    assert torch.cdist(CENTRES, vq.codebook).min(dim=1).values.max() < 0.2


# Dead-code restart --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("threshold", "restart_count"),
    [(1.5, 2.25), (2.5, 2.5)],  # mean cluster size (3 + 3 + 3 + 0) / 4, floored at threshold
)
def test_dead_code_restarts_from_a_batch_vector_with_fresh_statistics(threshold, restart_count):
    vq = quantizer_with(
        [[0, 0], [10, 0], [0, 10], [50, 50]],
        [4, 4, 4, 0],
        decay=0.5,
        threshold_ema_dead_code=threshold,
    )
    batch = frames([1, 0], [0, 1], [9, 0], [11, 0], [0, 9], [0, 11])
    vq(batch)
    # codes 0-2 each got 2 vectors: 0.5 * 4 + 0.5 * 2 = 3 >= threshold; code 3 stayed at 0
    assert vq.last_restarted == 1
    assert any(torch.equal(vq.codebook[3], row) for row in batch[0].T)
    assert vq.cluster_size[3] == restart_count
    assert torch.equal(vq.embed_sum[3], vq.codebook[3] * restart_count)
    assert torch.allclose(vq.cluster_size[:3], torch.tensor([3.0, 3.0, 3.0]))


def test_threshold_zero_disables_dead_code_restart():
    vq = quantizer_with(
        [[0, 0], [10, 0], [0, 10], [50, 50]], [4, 4, 4, 0], decay=0.5, threshold_ema_dead_code=0
    )
    batch = frames([1, 0], [0, 1], [9, 0], [11, 0], [0, 9], [0, 11])
    vq(batch)
    assert vq.last_restarted == 0
    assert vq.cluster_size[3] == 0
    assert not any(torch.equal(vq.codebook[3], row) for row in batch[0].T)


# Straight-through estimator, commitment loss, eval mode -------------------------------


def test_gradient_passes_straight_through_the_quantiser():
    vq = EMAVectorQuantizer(4, 8, kmeans_iters=0).train()
    x = randn(2, 4, 5).requires_grad_()
    vq(x).quantized.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_quantized_values_are_the_chosen_codewords():
    vq = EMAVectorQuantizer(4, 8, kmeans_iters=0).eval()
    x = randn(2, 4, 5)
    out = vq(x)
    nearest = torch.cdist(x.permute(0, 2, 1).reshape(-1, 4), vq.codebook).argmin(dim=1)
    assert torch.equal(out.codes.flatten(), nearest)
    assert torch.allclose(out.quantized, vq.codebook[out.codes].permute(0, 2, 1), atol=1e-6)


def test_commitment_loss_is_beta_times_mse_to_the_codewords_in_training():
    vq = EMAVectorQuantizer(4, 8, kmeans_iters=0, commitment_weight=0.3).train()
    x = randn(2, 4, 5)
    before = vq.codebook.clone()
    out = vq(x)
    expected = 0.3 * F.mse_loss(x, before[out.codes].permute(0, 2, 1))
    assert out.commitment_loss > 0
    assert torch.allclose(out.commitment_loss, expected)


def test_eval_mode_neither_learns_nor_charges_commitment():
    vq = EMAVectorQuantizer(4, 8).train()
    vq(randn(2, 4, 16, seed=0))  # k-means init and a first EMA step
    vq.eval()
    before = {name: value.clone() for name, value in vq.state_dict().items()}
    out = vq(randn(2, 4, 16, seed=1) + 3.0)
    assert out.commitment_loss == 0
    for name, value in vq.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_shipped_recipe_does_not_restart_most_codes_every_step():
    # the speech16k recipe feeds 8 items x 50 frames = 400 vectors to 1024 codes, so the
    # dead-code threshold must sit well below one assignment per step
    recipe = load_recipe(RECIPE)
    model = recipe.model
    frames_per_item = int(recipe.data.segment_seconds * model.frame_rate)
    vq = EMAVectorQuantizer(
        model.latent_dim,
        model.codebook_size,
        decay=model.ema_decay,
        threshold_ema_dead_code=model.threshold_ema_dead_code,
    ).train()
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for _ in range(5):
            vq(torch.randn(recipe.data.batch_size, model.latent_dim, frames_per_item, generator=g))
    assert vq.last_restarted < model.codebook_size // 10


# Known problems -----------------------------------------------------------------------


def test_training_step_quantises_with_the_codebook_before_its_update():
    vq = quantizer_with([[0, 0], [10, 10]], [4, 0], decay=0.5, threshold_ema_dead_code=1.0)
    out = vq(frames([1, 0], [0, 1]))
    assert vq.last_restarted == 1  # code 1 now holds a copy of [1, 0] or [0, 1]
    # before the step both vectors were nearest to [0, 0]
    assert out.codes.tolist() == [[0, 0]]
    assert torch.allclose(out.commitment_loss, torch.tensor(0.25 * 0.5))
