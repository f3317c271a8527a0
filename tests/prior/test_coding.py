"""Entropy coding with a prior: lossless, smaller when the prior has learnt, and
sampling that a seed reproduces."""

from __future__ import annotations

import math

import numpy as np
import pytest

from codec.errors import CodecError
from codec.prior.coding import EntropyEncoder, decode_codes, sample_codes, sampler
from codec.prior.exact import ExactPrior
from tests.prior.conftest import markov_codes, random_prior


def round_trip(exact: ExactPrior, codes: np.ndarray, pieces: list[int]) -> tuple[bytes, np.ndarray]:
    enc = EntropyEncoder(exact, codes.shape[0], chunk_frames=7)
    edges = [0, *pieces, codes.shape[1]]
    for a, b in zip(edges, edges[1:], strict=False):
        enc.push(codes[:, a:b])
    payload = enc.finish()
    chunks = list(decode_codes(exact, payload, codes.shape[0], codes.shape[1], chunk_frames=10))
    return payload, np.concatenate(chunks, axis=1)


@pytest.mark.parametrize("n_q", [1, 2, 4])
def test_decodes_exactly_what_was_encoded(n_q: int) -> None:
    exact = ExactPrior(random_prior())
    codes = np.random.default_rng(n_q).integers(0, 32, (n_q, 53))
    _, decoded = round_trip(exact, codes, [1, 20, 21])
    assert np.array_equal(decoded, codes)


def test_a_learnt_prior_makes_the_codes_smaller(trained_prior) -> None:
    codes = markov_codes(500, seed=5)
    payload, decoded = round_trip(ExactPrior(trained_prior), codes, [250])
    assert np.array_equal(decoded, codes)
    plain_bytes = codes.size * math.log2(32) / 8
    assert len(payload) < 0.5 * plain_bytes, (len(payload), plain_bytes)


def test_another_prior_never_decodes_the_codes_silently() -> None:
    """The header's prior id stops this in practice; the coder itself either notices
    unused bytes or yields other codes."""
    codes = np.random.default_rng(0).integers(0, 32, (4, 40))
    enc = EntropyEncoder(ExactPrior(random_prior(seed=1)), 4)
    enc.push(codes)
    payload = enc.finish()
    try:
        decoded = np.concatenate(
            list(decode_codes(ExactPrior(random_prior(seed=2)), payload, 4, 40))
        )
    except CodecError as e:
        assert "another prior" in str(e)
        return
    assert not np.array_equal(decoded, codes)


def test_codes_outside_the_codebooks_are_refused() -> None:
    enc = EntropyEncoder(ExactPrior(random_prior()), 4)
    with pytest.raises(ValueError, match="outside"):
        enc.push(np.full((4, 3), 32))


def test_sampling_is_reproducible_with_a_seed(trained_prior) -> None:
    exact = ExactPrior(trained_prior)

    def draw(seed: int, **kw) -> np.ndarray:
        choose = sampler(np.random.default_rng(seed), **kw)
        return np.concatenate(list(sample_codes(exact, 30, 4, choose, chunk_frames=8)), axis=1)

    assert draw(1).shape == (4, 30)
    assert np.array_equal(draw(1), draw(1))
    assert not np.array_equal(draw(1), draw(2))
    assert np.array_equal(draw(1, top_k=1), draw(2, temperature=0.0))  # both greedy


def test_a_prompt_is_continued(trained_prior) -> None:
    exact = ExactPrior(trained_prior)
    prompt = markov_codes(40, seed=6)
    greedy = sampler(np.random.default_rng(0), temperature=0.0)
    cont = np.concatenate(list(sample_codes(exact, 10, 4, greedy, prompt=prompt)), axis=1)
    # the markov structure carries on: codebook 1 follows codebook 0 as in the data
    assert np.mean(cont[1] == (cont[0] * 3 + 1) % 32) > 0.5


def test_nucleus_keeps_only_the_likeliest_codes() -> None:
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    choose = sampler(np.random.default_rng(0), top_p=0.7)
    assert {choose(0, logits) for _ in range(200)} == {0, 1}


def test_bad_sampling_settings_are_refused() -> None:
    with pytest.raises(CodecError):
        sampler(np.random.default_rng(0), top_p=0.0)
