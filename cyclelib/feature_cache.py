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

``cached_waveforms`` keeps the fitted 8 s waveforms (N, 176000) float32 the same way (about
704 KB a cycle: 2.9 GB for ICBHI's train split), for training with waveform effects (DESIGN §6)
without holding them in memory. :func:`read_rows` reads rows of either file with plain file
reads: an epoch that reads every row then never makes the whole file resident in the process.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
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
WAVE_FILE = "waveforms.f32"  # the waveform cache's data file
MANIFEST = "manifest.json"
Writer = Callable[[np.ndarray, np.ndarray], None]  # write(positions (k,), rows (k, ...))
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
    def fill(write: Writer) -> None:
        _featurise(write, len(cycles), cycles, data_dir, config, batch_size, device, progress)

    return _cached(folder, key, shape, np.float16, DATA_FILE, fill,
                   {"config": asdict(config), "format": CACHE_FORMAT})


def cached_waveforms(
    cycles: pd.DataFrame,
    data_dir: str | Path,
    config: FeatureConfig | None = None,
    cache_root: str | Path | None = None,
    progress: bool = True,
) -> np.memmap:
    """The fitted waveforms of every row of ``cycles``: read-only float32 (N, n_samples) at
    ``config.sample_rate`` (DESIGN §3), cached like :func:`cached_features` (default root
    ``cache_dir("waveforms")``). Read batches with :func:`read_rows`."""
    config = config or FeatureConfig()
    if len(cycles) == 0:
        raise ValueError("cached_waveforms needs at least one cycle, got an empty table")
    key = hashlib.sha256(f"waveforms {cache_key(cycles, data_dir, config)}".encode()).hexdigest()
    folder = Path(cache_root or cache_dir("waveforms")).expanduser() / key[:24]

    def fill(write: Writer) -> None:
        for positions, waves in iter_cycle_waveforms(
                cycles, data_dir, config.sample_rate, config.n_samples, progress=progress):
            write(positions, waves)

    shape = (len(cycles), config.n_samples)
    return _cached(folder, key, shape, np.float32, WAVE_FILE, fill, {"format": CACHE_FORMAT})


def _cached(folder: Path, key: str, shape: tuple[int, ...], dtype: type, data_file: str,
            fill: Callable[[Writer], None], about: dict) -> np.memmap:
    """The array of ``folder``, built first by ``fill(write)`` (``_build``) if it is not valid."""
    array = open_cache(folder, key, shape, dtype, data_file)
    if array is None:
        _build(folder, key, shape, dtype, data_file, fill, about)
        array = open_cache(folder, key, shape, dtype, data_file)
        if array is None:  # only if the disk lies about what was just written and flushed
            raise OSError(f"the cache written to {folder} does not verify")
    return array


def open_cache(
    folder: Path, key: str, shape: tuple[int, ...], dtype: type = np.float16,
    data_file: str = DATA_FILE,
) -> np.memmap | None:
    """The cached array if ``folder`` holds a complete, matching, uncorrupted one, else None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        size = (folder / data_file).stat().st_size
    except (OSError, ValueError):
        return None
    expected = {"key": key, "shape": list(shape), "dtype": np.dtype(dtype).name}
    if not isinstance(manifest, dict) or any(manifest.get(k) != v for k, v in expected.items()):
        return None
    if size != np.prod(shape) * np.dtype(dtype).itemsize:
        return None
    array = np.memmap(folder / data_file, dtype=dtype, mode="r", shape=shape)
    if _checksum(array) != manifest.get("checksum"):
        return None
    return array


def read_rows(array: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``array[index]`` as a new array; rows of an ``np.memmap`` are read with file reads, so
    however many rows an epoch reads, none stays resident in this process (the OS's page cache
    keeps them, shared and reclaimable). ``index`` (k,) int, best sorted (sequential reads)."""
    index = np.asarray(index, dtype=np.int64)
    if not isinstance(array, np.memmap) or array.filename is None:
        return np.asarray(array[index])
    out = np.empty((len(index), *array.shape[1:]), dtype=array.dtype)
    row_bytes = out[0].nbytes if len(index) else 0
    with open(array.filename, "rb", buffering=0) as handle:
        for i, row in enumerate(index):
            handle.seek(array.offset + int(row) * row_bytes)
            if handle.readinto(memoryview(out[i]).cast("B")) != row_bytes:
                raise OSError(f"{array.filename}: short read at row {row}")
    return out


def _checksum(features: np.ndarray) -> str:
    """sha256 of ``CHECKSUM_ROWS`` evenly spaced rows (the first and the last among them)."""
    rows = np.unique(np.linspace(0, len(features) - 1, CHECKSUM_ROWS).round().astype(int))
    digest = hashlib.sha256()
    for row in rows:
        digest.update(np.ascontiguousarray(features[row]).tobytes())
    return digest.hexdigest()


def _build(
    folder: Path, key: str, shape: tuple[int, ...], dtype: type, data_file: str,
    fill: Callable[[Writer], None], about: dict,
) -> None:
    """Write the array into a new file, sync it, rename it into place, then the manifest
    (``about`` adds its fields). ``fill(write)`` calls ``write(positions, rows)`` with rows
    (k, ...) for positions (k,): file writes, so the array is never resident in this process.

    The manifest goes first out of the way and comes back last (atomic rename), so an
    interrupted build leaves a folder that :func:`open_cache` rejects.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)
    # a new file renamed into place: arrays already mapped from an old one stay valid
    partial = folder / f"{data_file}.{os.getpid()}.partial"
    row_bytes = int(np.prod(shape[1:])) * np.dtype(dtype).itemsize
    try:
        with open(partial, "wb", buffering=0) as handle:
            handle.truncate(shape[0] * row_bytes)

            def write(positions: np.ndarray, rows: np.ndarray) -> None:
                for position, row in zip(positions, rows, strict=True):
                    os.pwrite(handle.fileno(), np.ascontiguousarray(row, dtype).tobytes(),
                              int(position) * row_bytes)

            fill(write)
            os.fsync(handle.fileno())
        checksum = _checksum(np.memmap(partial, dtype=dtype, mode="r", shape=shape))
        os.replace(partial, folder / data_file)
    finally:
        partial.unlink(missing_ok=True)
    manifest = {"key": key, "shape": list(shape), "dtype": np.dtype(dtype).name,
                "checksum": checksum, **about}
    manifest_partial = folder / f"{MANIFEST}.{os.getpid()}.partial"
    manifest_partial.write_text(json.dumps(manifest, indent=1))
    os.replace(manifest_partial, folder / MANIFEST)


def _featurise(
    write: Writer,
    n: int,
    cycles: pd.DataFrame,
    data_dir: str | Path,
    config: FeatureConfig,
    batch_size: int,
    device: str | torch.device | None,
    progress: bool,
) -> None:
    """Write (``write(positions, rows)``, see ``_build``) the (n, 3, F, T) spectrograms of the n
    rows of ``cycles``, ``batch_size`` at a time (batches span recordings), each row once."""
    device = resolve_device(device)
    module = HybridSpectrogram(config).to(device).eval()
    written = np.zeros(n, dtype=bool)
    pending: list[tuple[np.ndarray, np.ndarray]] = []

    def run(rows: int) -> None:
        positions = np.concatenate([p for p, _ in pending])
        waves = np.concatenate([w for _, w in pending])
        pending[:] = [(positions[rows:], waves[rows:])] if len(positions) > rows else []
        with torch.inference_mode():
            spec = module(torch.from_numpy(waves[:rows]).to(device))
        write(positions[:rows], spec.to(torch.float16).cpu().numpy())
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
