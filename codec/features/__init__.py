"""Frame-level features computed from audio (prosody), aligned with codec frames."""

from codec.features.cache import cached_extract
from codec.features.prosody import (
    Normalizer,
    ProsodyConfig,
    ProsodyFeatures,
    ProsodyStats,
    extract,
    num_frames,
)

__all__ = [
    "Normalizer",
    "ProsodyConfig",
    "ProsodyFeatures",
    "ProsodyStats",
    "cached_extract",
    "extract",
    "num_frames",
]
