"""Prosody latents: sequential VAEs over pitch, energy and voicing, and their objectives.

Every model takes `x [B, T, 3]` (log-F0, voicing, log energy; see `base.py`) and a mask,
and has `elbo()`, `iwae(k)`, `reconstruct()` and `sample()`.
"""

from codec.models.prosody.base import BoundOutput, Emission
from codec.models.prosody.ladder import LadderConfig, LadderVAE
from codec.models.prosody.objectives import (
    Gaussian,
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
from codec.models.prosody.rnn import RNNGauss, RNNGaussConfig
from codec.models.prosody.srnn import SRNN, SRNNConfig
from codec.models.prosody.vrae import VRAE, VRAEConfig
from codec.models.prosody.vrnn import VRNN, VRNNConfig

__all__ = [
    "SRNN",
    "VRAE",
    "VRNN",
    "BoundOutput",
    "Emission",
    "Gaussian",
    "LadderConfig",
    "LadderVAE",
    "RNNGauss",
    "RNNGaussConfig",
    "SRNNConfig",
    "VRAEConfig",
    "VRNNConfig",
    "bernoulli_log_prob",
    "cosine",
    "cyclical",
    "elbo_from_log_weights",
    "free_bits",
    "gaussian_kl",
    "gaussian_log_prob",
    "iwae_bound",
    "kl_weight",
    "linear",
    "log_importance_weights",
    "per_layer_warmup",
    "precision_weighted_fusion",
]
