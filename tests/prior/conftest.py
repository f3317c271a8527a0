"""A small prior and a corpus of codes with structure it can learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codec.config import PriorConfig
from codec.prior.model import CodePrior

SMALL = PriorConfig(
    n_codebooks=4, codebook_size=32, dim=32, n_layers=2, n_heads=2, depth_dim=16, window=16
)


def markov_codes(n_frames: int, seed: int = 0, config: PriorConfig = SMALL) -> np.ndarray:
    """Codes `[Q, F]` that a prior can predict: codebook 0 drifts slowly in time, and
    each deeper codebook is a noisy function of the one above it."""
    rng = np.random.default_rng(seed)
    k, q = config.codebook_size, config.n_codebooks
    codes = np.empty((q, n_frames), dtype=np.int64)
    codes[0] = np.cumsum(rng.integers(-1, 2, size=n_frames)) % k
    for i in range(1, q):
        noise = rng.integers(0, 3, size=n_frames) * (rng.random(n_frames) < 0.3)
        codes[i] = (codes[i - 1] * 3 + 1 + noise) % k
    return codes


def random_prior(seed: int = 0, config: PriorConfig = SMALL) -> CodePrior:
    """A prior with random weights, its norm gains perturbed so none is trivially 1."""
    torch.manual_seed(seed)
    prior = CodePrior(config)
    with torch.no_grad():
        for name, p in prior.named_parameters():
            if name.endswith("norm.weight") or ".norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    return prior.eval()


@pytest.fixture(scope="session")
def trained_prior() -> CodePrior:
    """SMALL trained for 150 steps on `markov_codes`: a few seconds on a CPU."""
    torch.manual_seed(0)
    prior = CodePrior(SMALL)
    opt = torch.optim.AdamW(prior.parameters(), lr=3e-3)
    data = torch.from_numpy(markov_codes(4000))
    rng = np.random.default_rng(0)
    for _ in range(150):
        starts = rng.integers(0, data.shape[1] - 33, size=16)
        batch = torch.stack([data[:, s : s + 33] for s in starts])
        loss = prior.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return prior.eval()
