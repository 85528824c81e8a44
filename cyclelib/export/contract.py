"""What an export folder holds and every exported file takes and returns (DESIGN §8).

The contract: one 8 s respiratory cycle of raw mono audio at 22,000 Hz, float32 (1, 176000), in;
class probabilities (1, 4) in :data:`cyclelib.CLASS_NAMES` order, out. Its numbers come from the
model's :class:`~cyclelib.features.FeatureConfig` (sample rate, cycle length).

Beside each exported file, ``<file>.json`` (:func:`write_sidecar`) holds the contract, the class
names, the model's configuration, the sha256 of the checkpoint it came from and its own size;
the runtimes read the contract back from it (:func:`read_contract`). The files of a folder
are named by :data:`FILES`; :data:`REPORT` describes them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import torch

from cyclelib.constants import CLASS_NAMES
from cyclelib.features import FeatureConfig
from cyclelib.model import ModelConfig

FILES = {  # artefact -> file name in an export folder (cyclelib export --out DIR)
    "pte_fp32": "cycleguardian_fp32.pte",
    "pte_int8": "cycleguardian_int8.pte",
    "onnx": "cycleguardian_fp32.onnx",
}
REPORT = "export_report.json"  # sizes, parity and figures of the files of an export folder


def input_contract(feature_config: FeatureConfig | None = None) -> dict:
    """What every exported file takes and returns (DESIGN §8), as stored in its sidecar JSON."""
    features = feature_config or FeatureConfig()
    length, rate = features.n_samples, features.sample_rate
    return {
        "input": {
            "shape": [1, length],
            "dtype": "float32",
            "sample_rate": rate,
            "length": length,
            "meaning": f"one respiratory cycle of raw mono audio, {length / rate:g} s at "
            f"{rate:,} Hz (longer cycles keep their tail, shorter ones are tiled: "
            "cyclelib.data.fit_length)",
        },
        "output": {
            "shape": [1, len(CLASS_NAMES)],
            "dtype": "float32",
            "meaning": "class probabilities (softmax), summing to 1",
        },
        "class_names": list(CLASS_NAMES),
    }


def sidecar_path(path: str | Path) -> Path:
    """The JSON written beside an exported file: ``model.pte`` -> ``model.pte.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def read_contract(path: str | Path) -> dict:
    """The contract in the sidecar of the exported file ``path`` when there is one, else the
    package's default (:func:`input_contract`)."""
    side = sidecar_path(path)
    return json.loads(side.read_text()) if side.is_file() else input_contract()


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_sidecar(
    path: str | Path, model_config: ModelConfig, checkpoint: str | Path | None, **details: object
) -> Path:
    """Write ``<path>.json``: contract, class names, model config, checkpoint sha256, own size.

    ``details`` (format, precision, quantisation, ...) are stored as given.
    """
    path = Path(path)
    record = {
        "file": path.name,
        "size_bytes": path.stat().st_size,
        **details,
        **input_contract(model_config.features),
        "model_config": asdict(model_config),
        "checkpoint": None if checkpoint is None else {
            "file": Path(checkpoint).name, "sha256": file_sha256(checkpoint)},
        "torch": torch.__version__,
    }
    side = sidecar_path(path)
    side.write_text(json.dumps(record, indent=2))
    return side
