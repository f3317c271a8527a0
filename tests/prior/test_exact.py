"""The integer-exact prior: close to the float one, and the same numbers however it runs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

from codec.prior.exact import FREQ_TOTAL, ExactPrior, frequencies
from tests.prior.conftest import markov_codes, random_prior


def log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def test_predicts_what_the_float_model_predicts(trained_prior) -> None:
    codes = markov_codes(40, seed=2)
    with torch.no_grad():
        ref = torch.log_softmax(trained_prior(torch.from_numpy(codes)[None]), -1)[0].numpy()
    exact = ExactPrior(trained_prior)
    got = log_softmax(exact.logits(exact.start(4), codes))
    p = np.exp(ref)
    kl_bits = (p * (ref - got)).sum(-1).mean() / np.log(2)
    assert kl_bits < 0.01, kl_bits
    assert np.abs(got - ref).max() < 0.5


def test_all_at_once_equals_frame_by_frame_bit_for_bit() -> None:
    exact = ExactPrior(random_prior())
    codes = np.random.default_rng(0).integers(0, 32, (4, 45))
    whole = exact.logits(exact.start(4), codes)
    state = exact.start(4)
    pieces = [exact.logits(state, codes[:, a:b]) for a, b in [(0, 1), (1, 17), (17, 18), (18, 45)]]
    assert np.array_equal(whole, np.concatenate(pieces))
    state = exact.start(4)  # one codebook at a time, as a decoder runs
    for t in range(codes.shape[1]):
        summary = exact.next_summary(state)
        for q in range(4):
            offset = exact.depth_offset(q, codes[:q, t])
            assert np.array_equal(exact.depth_logits(summary, offset, q)[0], whole[t, q])
        state.last = codes[:, t]


def test_fewer_codebooks_are_a_separate_stream() -> None:
    exact = ExactPrior(random_prior())
    codes = np.random.default_rng(1).integers(0, 32, (2, 20))
    assert exact.logits(exact.start(2), codes).shape == (20, 2, 32)


def test_frequencies_are_positive_and_bounded() -> None:
    logits = np.random.default_rng(0).normal(0, 30, (50, 1024))
    logits[0] = 0.0
    logits[1, 3] = 1e4
    freq = frequencies(logits)
    assert freq.dtype == np.int64 and freq.min() >= 1
    assert (freq.sum(-1) <= FREQ_TOTAL).all()
    assert freq[1, 3] > FREQ_TOTAL - 1100


SCRIPT = """
import sys, numpy as np, torch
sys.path.insert(0, {root!r})
from codec.prior.exact import ExactPrior
from tests.prior.conftest import random_prior
exact = ExactPrior(random_prior(seed=3))
codes = np.random.default_rng(4).integers(0, 32, (4, 300))
import hashlib; print(hashlib.sha256(exact.logits(exact.start(4), codes).tobytes()).hexdigest())
"""


def test_same_numbers_with_any_number_of_threads() -> None:
    import os
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    digests = set()
    for threads in ("1", "2", "4"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
               "MKL_NUM_THREADS": threads}  # fmt: skip
        run = subprocess.run(
            [sys.executable, "-c", SCRIPT.format(root=root)],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        digests.add(run.stdout.strip())
    assert len(digests) == 1
