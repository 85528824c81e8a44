"""Compute the hybrid spectrograms of a cycle table once, keep them on disk, reuse them (DESIGN §4).

``cached_features`` returns a read-only float16 ``np.memmap`` (N, 3, 84, 688) in the table's row
order. A full ICBHI set (6,898 cycles) is about 2.3 GB: it is written batch by batch and never
held in memory. The cache folder is named by a hash of everything the numbers depend on:

- the :class:`~cyclelib.features.FeatureConfig` and :data:`CACHE_FORMAT`;
- each recording's path, size and modification time (a changed file gives a new key);
- each cycle's recording, start and end, in order.

A folder holds ``features.f16`` (the raw array) and ``manifest.json``, written last, after the
array is flushed, by an atomic rename. A folder without a valid manifest, with a file of the
wrong size, or whose sampled rows do not match the manifest's checksum is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cyclelib.data.audio import iter_cycle_waveforms
from cyclelib.device import resolve_device
from cyclelib.features import FeatureConfig, HybridSpectrogram
from cyclelib.paths import cache_dir

CACHE_FORMAT = 3  # bump when HybridSpectrogram's numbers change: old caches are then ignored
#   (2: the folded STFT basis, float32 rounding-level changes; 3: unbiased row std, x0.99927)
DATA_FILE = "features.f16"
MANIFEST = "manifest.json"
CHECKSUM_ROWS = 16  # rows (evenly spaced, first and last included) hashed into the manifest


def cache_key(cycles: pd.DataFrame, data_dir: str | Path, config: FeatureConfig) -> str:
    """Hex sha256 of the config, the recordings' files (path, size, mtime) and the cycle rows."""
    data_dir = Path(data_dir).expanduser().resolve()
    files = []
    for recording in pd.unique(cycles["recording"]):
        path = data_dir / f"{recording}.wav"
        stat = path.stat() if path.is_file() else None
        files.append([str(path), stat.st_size if stat else -1, stat.st_mtime_ns if stat else -1])
    rows = [
        cycles["recording"].astype(str).tolist(),
        cycles["start"].astype(float).tolist(),
        cycles["end"].astype(float).tolist(),
    ]
    text = json.dumps([CACHE_FORMAT, asdict(config), files, rows], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def cached_features(
    cycles: pd.DataFrame,
    data_dir: str | Path,
    config: FeatureConfig | None = None,
    cache_root: str | Path | None = None,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> np.memmap:
    """Hybrid spectrograms of every row of ``cycles``: read-only float16 (N, 3, n_bins, n_frames).

    Built once (batched, on ``device``: None picks CUDA when available) into
    ``cache_root`` (default ``cache_dir("features")``), reused while nothing it depends on
    changes. ``cycles`` needs ``recording``, ``start`` and ``end``; every recording must have its
    ``.wav`` in ``data_dir`` (filter on ``has_audio`` first), else :class:`AudioError`.
    """
    config = config or FeatureConfig()
    if len(cycles) == 0:
        raise ValueError("cached_features needs at least one cycle, got an empty table")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    key = cache_key(cycles, data_dir, config)
    folder = Path(cache_root or cache_dir("features")).expanduser() / key[:24]
    shape = (len(cycles), 3, config.n_bins, config.n_frames)
    features = open_cache(folder, key, shape)
    if features is None:
        _build(folder, key, shape, cycles, data_dir, config, batch_size, device, progress)
        features = open_cache(folder, key, shape)
        if features is None:  # only if the disk lies about what was just written and flushed
            raise OSError(f"the feature cache written to {folder} does not verify")
    return features


def open_cache(folder: Path, key: str, shape: tuple[int, ...]) -> np.memmap | None:
    """The cached array if ``folder`` holds a complete, matching, uncorrupted one, else None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        size = (folder / DATA_FILE).stat().st_size
    except (OSError, ValueError):
        return None
    expected = {"key": key, "shape": list(shape), "dtype": "float16"}
    if not isinstance(manifest, dict) or any(manifest.get(k) != v for k, v in expected.items()):
        return None
    if size != np.prod(shape) * 2:
        return None
    features = np.memmap(folder / DATA_FILE, dtype=np.float16, mode="r", shape=shape)
    if _checksum(features) != manifest.get("checksum"):
        return None
    return features


def _checksum(features: np.ndarray) -> str:
    """sha256 of ``CHECKSUM_ROWS`` evenly spaced rows (the first and the last among them)."""
    rows = np.unique(np.linspace(0, len(features) - 1, CHECKSUM_ROWS).round().astype(int))
    digest = hashlib.sha256()
    for row in rows:
        digest.update(np.ascontiguousarray(features[row]).tobytes())
    return digest.hexdigest()


def _build(
    folder: Path,
    key: str,
    shape: tuple[int, ...],
    cycles: pd.DataFrame,
    data_dir: str | Path,
    config: FeatureConfig,
    batch_size: int,
    device: str | torch.device | None,
    progress: bool,
) -> None:
    """Write the features into a new file, flush it, rename it into place, then the manifest.

    The manifest goes first out of the way and comes back last (atomic rename), so an
    interrupted build leaves a folder that :func:`open_cache` rejects.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)
    # a new file renamed into place: arrays already mapped from an old one stay valid
    partial = folder / f"{DATA_FILE}.{os.getpid()}.partial"
    try:
        out = np.memmap(partial, dtype=np.float16, mode="w+", shape=shape)
        _featurise(out, cycles, data_dir, config, batch_size, device, progress)
        out.flush()
        checksum = _checksum(out)
        del out
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, folder / DATA_FILE)
    finally:
        partial.unlink(missing_ok=True)
    manifest = {"key": key, "shape": list(shape), "dtype": "float16", "checksum": checksum,
                "config": asdict(config), "format": CACHE_FORMAT}
    manifest_partial = folder / f"{MANIFEST}.{os.getpid()}.partial"
    manifest_partial.write_text(json.dumps(manifest, indent=1))
    os.replace(manifest_partial, folder / MANIFEST)


def _featurise(
    out: np.ndarray,
    cycles: pd.DataFrame,
    data_dir: str | Path,
    config: FeatureConfig,
    batch_size: int,
    device: str | torch.device | None,
    progress: bool,
) -> None:
    """Fill ``out`` (N, 3, F, T) with the spectrograms of ``cycles``, ``batch_size`` at a time
    (batches span recordings), each row written exactly once."""
    device = resolve_device(device)
    module = HybridSpectrogram(config).to(device).eval()
    written = np.zeros(len(cycles), dtype=bool)
    pending: list[tuple[np.ndarray, np.ndarray]] = []

    def run(rows: int) -> None:
        positions = np.concatenate([p for p, _ in pending])
        waves = np.concatenate([w for _, w in pending])
        pending[:] = [(positions[rows:], waves[rows:])] if len(positions) > rows else []
        with torch.inference_mode():
            spec = module(torch.from_numpy(waves[:rows]).to(device))
        out[positions[:rows]] = spec.to(torch.float16).cpu().numpy()
        written[positions[:rows]] = True

    waveforms = iter_cycle_waveforms(
        cycles, data_dir, config.sample_rate, config.n_samples, progress=progress
    )
    for positions, waves in waveforms:
        pending.append((positions, waves))
        while sum(len(p) for p, _ in pending) >= batch_size:
            run(batch_size)
    if pending:
        run(sum(len(p) for p, _ in pending))
    if not written.all():
        raise RuntimeError(f"{np.count_nonzero(~written)} cycles were never featurised")
