"""From a trained checkpoint to verified mobile files: ``cyclelib export`` (DESIGN §8).

:func:`export_checkpoint` loads the checkpoint as a :class:`~cyclelib.export.CycleGuardianBundle`,
takes its inference module (raw audio -> probabilities), captures it with ``torch.export`` and
writes, into one folder (names: :data:`cyclelib.export.FILES`):

- ``cycleguardian_fp32.pte``: ExecuTorch, XNNPACK-lowered, fp32 (when ExecuTorch is installed);
- ``cycleguardian_int8.pte``: the same with the network in int8 (``int8=True``);
- ``cycleguardian_fp32.onnx``: the ONNX cross-check (``onnx=True``; needs no ExecuTorch);
- ``<file>.json`` beside each: contract, class names, configs, checkpoint sha256, size;
- ``export_report.json``: sizes, parity with eager PyTorch, ICBHI figures of each file.

Parity is measured on held-out cycles (the official test split of the data folder), each file
run by its own runtime (:mod:`cyclelib.export.runtimes`), against the eager module
(:mod:`cyclelib.export.report`). The int8 file is calibrated on train-split cycles of the same
folder.
"""

from __future__ import annotations

import json
import platform
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from cyclelib.data import resolve_data_dir, sample_cycles
from cyclelib.export.contract import FILES, REPORT, file_sha256, write_sidecar
from cyclelib.export.inference import CycleGuardianBundle, CycleGuardianInference
from cyclelib.export.lowering import capture, export_onnx, export_pte
from cyclelib.export.quantisation import QUANTISED_PART, layer_precision, quantize_int8
from cyclelib.export.report import parity, probabilities, scores
from cyclelib.export.runtimes import load_classifier


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def export_files(
    inference: CycleGuardianInference,
    out_dir: str | Path,
    *,
    pte: bool = True,
    int8: bool = False,
    onnx: bool = False,
    calibration: np.ndarray | None = None,
    progress: bool = True,
) -> dict[str, dict]:
    """Capture ``inference`` with ``torch.export`` and write the requested files into ``out_dir``.

    ``calibration`` (N, 176000) float32 waveforms are needed for ``int8``. Returns, per file
    written (keys of :data:`FILES`), the details its sidecar records (format, precision,
    lowering, quantisation).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, dict] = {}
    if onnx:
        export_onnx(capture(inference, rewrites=False), out / FILES["onnx"])
        written["onnx"] = {"format": "onnx", "precision": "fp32"}
    if pte:
        lowering = export_pte(capture(inference), out / FILES["pte_fp32"])
        written["pte_fp32"] = {"format": "executorch", "precision": "fp32", "backend": "xnnpack",
                               "lowering": lowering}
    if pte and int8:
        if calibration is None or not len(calibration):
            raise ValueError("int8 needs calibration waveforms (N, 176000)")
        quantised = quantize_int8(inference, calibration, progress)
        lowering = export_pte(capture(quantised), out / FILES["pte_int8"])
        written["pte_int8"] = {
            "format": "executorch", "precision": "int8", "backend": "xnnpack",
            "lowering": lowering, "quantisation": {
                "method": "PT2E static post-training quantisation, XNNPACKQuantizer",
                "weights": "int8 symmetric, per output channel",
                "activations": "int8 affine, per tensor (histogram observers)",
                "quantised": QUANTISED_PART, "kept_fp32": "frontend (hybrid spectrogram)",
                "layers": layer_precision(quantised), "calibration_cycles": len(calibration)}}
    return written


def export_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    pte: bool = True,
    int8: bool = False,
    onnx: bool = False,
    data_dir: str | Path | None = None,
    calibration_cycles: int = 256,
    check_cycles: int = 100,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Write the mobile files of ``checkpoint`` into ``out_dir`` and return the report.

    ``data_dir`` None: the folder the checkpoint was trained on when it still exists, else the
    synthetic set. ``check_cycles`` test-split cycles measure parity; ``calibration_cycles``
    train-split cycles calibrate int8. ``pte=False`` skips the ExecuTorch files (ONNX only).
    """
    began = time.perf_counter()
    checkpoint, out = Path(checkpoint), Path(out_dir)
    bundle = CycleGuardianBundle(checkpoint)
    folder, synthetic = resolve_data_dir(data_dir, bundle.trained_on)
    inference = bundle.get_model()
    waves, labels = sample_cycles(folder, "test", check_cycles, seed, progress)
    calibration = None
    if pte and int8:
        calibration, _ = sample_cycles(folder, "train", calibration_cycles, seed, progress)
    written = export_files(inference, out, pte=pte, int8=int8, onnx=onnx,
                           calibration=calibration, progress=progress)
    reference = probabilities(inference, waves)
    report: dict = {
        "checkpoint": {"path": str(checkpoint), "sha256": file_sha256(checkpoint),
                       "epoch": bundle.meta.get("epoch")},
        "data": {"folder": str(folder), "synthetic": synthetic, "check_split": "test",
                 "check_cycles": len(waves), "calibration_split": "train"},
        "files": {}, "parity": {}, "scores": {"eager": scores(labels, reference)},
    }
    for key, details in written.items():
        path = out / FILES[key]
        write_sidecar(path, bundle.model.config, checkpoint, **details,
                      data={"folder": str(folder), "synthetic": synthetic})
        probs = load_classifier(path).predict_proba(waves, bundle.sample_rate)
        report["files"][key] = {"file": path.name, "size_bytes": path.stat().st_size, **details}
        report["parity"][key] = {"reference": "eager_fp32", **parity(reference, probs)}
        report["scores"][key] = scores(labels, probs)
    report["versions"] = {"torch": torch.__version__, "executorch": _version("executorch"),
                          "onnxruntime": _version("onnxruntime"),
                          "python": platform.python_version()}
    report["wall_seconds"] = time.perf_counter() - began
    (out / REPORT).write_text(json.dumps(report, indent=2))
    return report
