"""Per-file cache of prosody features as plain `.npz` files (never pickle).

The key is a SHA-256 of the file's absolute path, size, mtime and the extraction
config, so editing the file or changing the config misses the cache. A cache file that
cannot be read back is recomputed and overwritten, never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from codec.atomic import atomic_path
from codec.audio import load_audio
from codec.features.prosody import ProsodyConfig, ProsodyFeatures, extract

_FIELDS = ("log_f0", "voiced_prob", "voiced", "log_energy")


def cache_key(path: str | os.PathLike[str], config: ProsodyConfig) -> str:
    """Hex SHA-256 of (absolute path, size, mtime_ns, config as JSON)."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    blob = json.dumps(
        {
            "path": str(resolved),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "config": asdict(config),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def cached_extract(
    path: str | os.PathLike[str],
    config: ProsodyConfig | None = None,
    cache_dir: str | os.PathLike[str] = ".prosody_cache",
) -> ProsodyFeatures:
    """Prosody features of an audio file, read from `cache_dir` or extracted and stored.

    `config` defaults to `ProsodyConfig()`.
    """
    config = config or ProsodyConfig()
    target = Path(cache_dir) / f"{cache_key(path, config)}.npz"
    if target.exists():
        cached = _load(target)
        if cached is not None:
            return cached
    features = extract(load_audio(path, config.sample_rate), config)
    _save(target, features)
    return features


def _save(target: Path, features: ProsodyFeatures) -> None:
    arrays = {name: getattr(features, name) for name in _FIELDS}
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        np.savez(f, frame_rate=np.float64(features.frame_rate), **arrays)


def _load(target: Path) -> ProsodyFeatures | None:
    """Features stored at `target`, or None if the file is unreadable or inconsistent."""
    try:
        with np.load(target, allow_pickle=False) as data:
            arrays = {name: data[name] for name in _FIELDS}
            frame_rate = float(data["frame_rate"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    lengths = {a.shape for a in arrays.values()}
    if len(lengths) != 1 or len(next(iter(lengths))) != 1 or arrays["voiced"].dtype != bool:
        return None
    return ProsodyFeatures(frame_rate=frame_rate, **arrays)
