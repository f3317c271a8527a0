"""Prosody latents: sequential VAEs over pitch, energy and voicing, and their objectives."""

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

__all__ = [
    "Gaussian",
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
