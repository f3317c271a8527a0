"""Residual VQ: coarse-to-fine codes, encode/decode with fewer codebooks, quantizer dropout."""

import pytest
import torch
import torch.nn.functional as F

from codec.quantize.rvq import ResidualVectorQuantizer

DIM, N_CODEBOOKS, CODEBOOK_SIZE = 4, 4, 16


def latents(batch: int = 2, frames: int = 32, seed: int = 0) -> torch.Tensor:
    """Random latents `[B, D, F]`."""
    return torch.randn(batch, DIM, frames, generator=torch.Generator().manual_seed(seed))


def trained_rvq(x: torch.Tensor, steps: int = 5, **kwargs) -> ResidualVectorQuantizer:
    """An RVQ fitted to `x` by a few training passes (k-means init, then EMA), in eval."""
    rvq = ResidualVectorQuantizer(DIM, N_CODEBOOKS, CODEBOOK_SIZE, quantizer_dropout=0.0, **kwargs)
    rvq.train()
    with torch.random.fork_rng():
        torch.manual_seed(0)  # k-means starts and code restarts use the global RNG
        for _ in range(steps):
            rvq(x)
    return rvq.eval()


def test_each_extra_codebook_refines_the_reconstruction():
    x = latents()
    rvq = trained_rvq(x)
    errors = [F.mse_loss(rvq.decode(rvq.encode(x, n)), x).item() for n in range(1, N_CODEBOOKS + 1)]
    assert all(finer <= coarser for coarser, finer in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < errors[0] / 2, errors


@pytest.mark.parametrize("n", [1, 2, N_CODEBOOKS])
def test_encode_and_decode_with_the_first_n_codebooks(n):
    x = latents(batch=3, frames=5)
    rvq = trained_rvq(latents())
    codes = rvq.encode(x, n)
    assert codes.shape == (3, n, 5)
    assert codes.dtype == torch.int64
    assert 0 <= codes.min() and codes.max() < CODEBOOK_SIZE
    assert rvq.decode(codes).shape == x.shape


def test_encode_defaults_to_every_codebook():
    rvq = trained_rvq(latents())
    assert rvq.encode(latents(frames=5)).shape == (2, N_CODEBOOKS, 5)


def test_forward_in_eval_equals_decode_of_encode():
    rvq = trained_rvq(latents())
    x = latents(seed=1)
    out = rvq(x)
    assert torch.equal(out.codes, rvq.encode(x))
    assert torch.allclose(out.quantized, rvq.decode(out.codes), atol=1e-5)
    assert out.n_codebooks.tolist() == [N_CODEBOOKS, N_CODEBOOKS]
    assert out.commitment_loss == 0


def test_forward_in_eval_with_fewer_codebooks_matches_encode():
    rvq = trained_rvq(latents())
    x = latents(seed=1)
    out = rvq(x, n_codebooks=2)
    assert torch.equal(out.codes, rvq.encode(x, 2))
    assert torch.allclose(out.quantized, rvq.decode(out.codes), atol=1e-5)


def test_quantizer_dropout_sums_only_each_items_first_codebooks():
    rvq = ResidualVectorQuantizer(DIM, N_CODEBOOKS, CODEBOOK_SIZE, quantizer_dropout=1.0).train()
    x = latents(batch=16, frames=3)
    out = rvq(x, generator=torch.Generator().manual_seed(0))
    n = out.n_codebooks
    assert 1 <= n.min() and n.max() <= N_CODEBOOKS
    assert len(n.unique()) > 1
    # each layer learnt once, before quantising, so its final codebook is the one used
    expected = torch.stack(
        [
            sum(rvq.layers[i].lookup(out.codes[b : b + 1, i])[0] for i in range(n[b]))
            for b in range(len(x))
        ]
    )
    assert torch.allclose(out.quantized, expected, atol=1e-5)


def test_quantizer_dropout_is_reproducible_from_its_generator():
    rvq = ResidualVectorQuantizer(DIM, N_CODEBOOKS, CODEBOOK_SIZE, quantizer_dropout=0.5).train()
    x = latents(batch=16, frames=3)
    first = rvq(x, generator=torch.Generator().manual_seed(7)).n_codebooks
    again = rvq(x, generator=torch.Generator().manual_seed(7)).n_codebooks
    assert torch.equal(first, again)
    assert (first < N_CODEBOOKS).any() and (first == N_CODEBOOKS).any()


def test_quantizer_dropout_respects_a_requested_number_of_codebooks():
    rvq = ResidualVectorQuantizer(DIM, N_CODEBOOKS, CODEBOOK_SIZE, quantizer_dropout=1.0).train()
    generator = torch.Generator().manual_seed(0)
    out = rvq(latents(batch=16, frames=3), n_codebooks=2, generator=generator)
    assert set(out.n_codebooks.tolist()) == {1, 2}
    assert out.codes.shape == (16, 2, 3)


def test_no_dropout_uses_every_codebook_in_training():
    rvq = ResidualVectorQuantizer(DIM, N_CODEBOOKS, CODEBOOK_SIZE, quantizer_dropout=0.0).train()
    out = rvq(latents(batch=8, frames=3), generator=torch.Generator().manual_seed(0))
    assert out.n_codebooks.tolist() == [N_CODEBOOKS] * 8


def test_eval_mode_never_drops_codebooks():
    rvq = ResidualVectorQuantizer(DIM, N_CODEBOOKS, CODEBOOK_SIZE, quantizer_dropout=1.0).eval()
    out = rvq(latents(batch=8, frames=3), generator=torch.Generator().manual_seed(0))
    assert out.n_codebooks.tolist() == [N_CODEBOOKS] * 8


def test_usage_reports_perplexity_and_restarts_per_codebook():
    rvq = ResidualVectorQuantizer(DIM, 2, CODEBOOK_SIZE, kmeans_iters=0)
    usage = rvq.usage()  # fresh random codebooks count as evenly used
    assert usage["perplexity"] == pytest.approx([CODEBOOK_SIZE, CODEBOOK_SIZE])
    assert usage["dead_codes"] == [0.0, 0.0]

    rvq.layers[1].cluster_size.copy_(torch.nn.functional.one_hot(torch.tensor(3), CODEBOOK_SIZE))
    assert rvq.usage()["perplexity"] == pytest.approx([CODEBOOK_SIZE, 1.0])


def test_the_encoder_gets_one_straight_through_gradient_whatever_the_codebook_count():
    rvq = ResidualVectorQuantizer(DIM, N_CODEBOOKS, CODEBOOK_SIZE, quantizer_dropout=0.0).train()
    rvq(latents(batch=2, frames=8))  # k-means init
    for n in (1, N_CODEBOOKS):
        x = latents(batch=2, frames=8).requires_grad_()
        rvq(x, n_codebooks=n).quantized.sum().backward()
        assert torch.equal(x.grad, torch.ones_like(x)), n
