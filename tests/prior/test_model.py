"""The float prior: causal in time and in depth, windowed, and it learns."""

from __future__ import annotations

import math

import numpy as np
import torch

from codec.prior.model import CodePrior, window_bias
from tests.prior.conftest import SMALL, markov_codes, random_prior


def test_logits_have_one_distribution_per_code() -> None:
    codes = torch.randint(0, 32, (2, 4, 10))
    assert random_prior()(codes).shape == (2, 10, 4, 32)


def test_a_frame_depends_only_on_earlier_frames_and_shallower_codebooks() -> None:
    prior = random_prior()
    codes = torch.randint(0, 32, (1, 4, 12))
    changed = codes.clone()
    changed[0, 2, 6] = (changed[0, 2, 6] + 1) % 32  # codebook 2 of frame 6
    with torch.no_grad():
        a, b = prior(codes), prior(changed)
    assert torch.equal(a[:, :6], b[:, :6])  # earlier frames
    assert torch.equal(a[:, 6, :3], b[:, 6, :3])  # codebooks 0-2 of the same frame
    assert not torch.equal(a[:, 6, 3], b[:, 6, 3])  # codebook 3 sees codebook 2
    assert not torch.equal(a[:, 7], b[:, 7])  # the next frame sees it


def test_frames_beyond_the_reach_of_the_windows_are_forgotten() -> None:
    prior = random_prior()
    codes = torch.randint(0, 32, (1, 4, 40))
    changed = codes.clone()
    changed[0, :, 0] = (changed[0, :, 0] + 5) % 32
    with torch.no_grad():
        a, b = prior(codes), prior(changed)
    # frame 1 reads frame 0's codes; each layer looks window - 1 frames further back
    reach = 1 + SMALL.n_layers * (SMALL.window - 1)
    assert torch.equal(a[:, reach + 1 :], b[:, reach + 1 :])
    assert not torch.allclose(a[:, reach], b[:, reach])


def test_window_bias_hides_the_future_and_the_distant_past() -> None:
    bias = window_bias(n_heads=2, n_queries=3, n_keys=5, window=2)
    visible = torch.isfinite(bias[0])
    assert visible.tolist() == [
        [False, True, True, False, False],
        [False, False, True, True, False],
        [False, False, False, True, True],
    ]


def test_fewer_codebooks_ignore_the_deeper_ones() -> None:
    prior = random_prior()
    codes = torch.randint(0, 32, (1, 4, 8))
    changed = codes.clone()
    changed[0, 2:] = (changed[0, 2:] + 1) % 32
    n_q = torch.tensor([2])
    with torch.no_grad():
        assert torch.equal(prior(codes, n_q)[:, :, :2], prior(changed, n_q)[:, :, :2])


def test_bos_frames_and_masked_frames_do_not_count() -> None:
    prior = random_prior()
    codes = torch.randint(0, 32, (1, 4, 6))
    codes[0, :, 3] = SMALL.bos
    mask = torch.ones(1, 6, dtype=torch.bool)
    mask[0, 0] = False
    counted = prior.counted(codes, None, mask)
    assert counted[0, :, 0].tolist() == [0, 1, 1, 0, 1, 1]


def test_loss_falls_on_a_small_corpus(trained_prior: CodePrior) -> None:
    codes = torch.from_numpy(markov_codes(600, seed=1))[None]  # held out
    with torch.no_grad():
        bits = trained_prior.loss(codes).item() / math.log(2)
        untrained = CodePrior(SMALL).eval().loss(codes).item() / math.log(2)
    assert untrained > 4.5  # about log2(32) = 5 bits at initialisation
    assert bits < 2.5, bits


def test_unigram_baseline_is_beaten(trained_prior: CodePrior) -> None:
    codes = markov_codes(600, seed=1)
    counts = np.stack([np.bincount(c, minlength=32) + 1 for c in codes])
    unigram = -np.mean([np.log2(counts[q, codes[q]] / counts[q].sum()).mean() for q in range(4)])
    with torch.no_grad():
        bits = trained_prior.loss(torch.from_numpy(codes)[None]).item() / math.log(2)
    assert bits < unigram - 1.0
