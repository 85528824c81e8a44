"""Checkpoints and run folders that survive crashes (DESIGN §6-7).

- :func:`save_checkpoint` writes a temporary file in the target's folder, syncs it to disk and
  renames it over the target (``os.replace`` is atomic): a run killed mid-write leaves the
  previous checkpoint intact, never half a file.
- :func:`capture_rng` / :func:`restore_rng` carry the torch, CUDA, numpy and Python random states
  as plain tensors and numbers, so checkpoints load with ``torch.load(weights_only=True)``.
- :func:`prepare_run_dir` refuses to reuse a run folder unless asked to resume or overwrite.
- :func:`load_model` rebuilds a trained :class:`~cyclelib.model.CycleGuardian` from any
  checkpoint this package writes (``best.pt`` or ``last.pt``).

A checkpoint is a dict with at least ``format_version`` (:data:`FORMAT_VERSION`, checked on
load), ``model`` (state_dict), ``model_config`` (a plain dict; its ``features`` is the
FeatureConfig) and ``train_config``, ``epoch`` (epochs done, from 1) and ``metrics`` (validation
figures of that epoch); ``last.pt`` adds the training state.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from cyclelib.features import FeatureConfig
from cyclelib.model import CycleGuardian, ModelConfig

FORMAT_VERSION = 2  # bump when the checkpoint layout changes
#   (2: the FeatureConfig lives in model_config["features"]; 1 stored it beside, as feature_config)


class RunExistsError(FileExistsError):
    """A run folder already holds a run and neither resume nor overwrite was asked for."""


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format_version": FORMAT_VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"{path} is not a readable cyclelib checkpoint ({err})") from err
    if not isinstance(state, dict) or "model" not in state or "model_config" not in state:
        raise ValueError(f"{path} is not a cyclelib checkpoint (no model or model_config)")
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} is a checkpoint of format {state.get('format_version')}, but this cyclelib "
            f"reads format {FORMAT_VERSION}: load it with the cyclelib version that wrote it, or "
            "train it again"
        )
    return state


def capture_rng() -> dict:
    """The global random states (torch, CUDA, numpy, Python) as tensors and plain numbers."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (the legacy global state)
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": [version, list(internal), gauss_next],
    }


def restore_rng(state: dict) -> None:
    """Restore the random states captured by :func:`capture_rng` (from a checkpoint loaded onto
    any device: the states are CPU byte tensors again before they are set)."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    legacy = (kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, gauss)
    np.random.set_state(legacy)  # noqa: NPY002
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def prepare_run_dir(path: str | Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Create the run folder ``path``; an existing non-empty one needs ``resume`` or ``overwrite``.

    ``overwrite`` deletes the old run first; ``resume`` keeps it (the trainer continues from its
    ``last.pt``). Otherwise a :class:`RunExistsError` says what to do.
    """
    path = Path(path).expanduser()
    if resume and overwrite:
        raise ValueError("choose resume or overwrite, not both")
    if path.exists() and not path.is_dir():
        raise RunExistsError(f"run folder {path} exists and is a file")
    if path.is_dir() and any(path.iterdir()):
        if overwrite:
            shutil.rmtree(path)
        elif not resume:
            raise RunExistsError(
                f"run folder {path} already holds a run: pass resume=True (--resume) to continue "
                "it or overwrite=True (--overwrite) to replace it, or choose another folder"
            )
    path.mkdir(parents=True, exist_ok=True)
    return path


def _config(cls: type, values: dict):
    """Rebuild a config dataclass from its dict, tuples restored, unknown keys refused."""
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def load_model(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[CycleGuardian, FeatureConfig, dict]:
    """``(model in eval mode, the FeatureConfig it reads, meta)`` from a checkpoint.

    The FeatureConfig is ``model.config.features``. ``meta`` holds everything else a consumer
    may report: ``epoch``, ``metrics``, ``train_config``, ``model_config`` and, when present,
    ``protocol`` and ``data``.
    """
    state = load_checkpoint(path, map_location)
    values = dict(state["model_config"])
    features = _config(FeatureConfig, values.pop("features", {}))
    model = CycleGuardian(_config(ModelConfig, {**values, "features": features}))
    model.load_state_dict(state["model"])
    model.to(map_location).eval()
    keep = ("epoch", "metrics", "train_config", "model_config", "protocol", "data")
    return model, features, {k: state[k] for k in keep if k in state}
