"""From a trained checkpoint to verified mobile files: ``cyclelib export`` (DESIGN §8).

:func:`export_checkpoint` rebuilds the model, wraps it as
:class:`~cyclelib.export.CycleGuardianInference` (raw audio -> probabilities), captures it with
``torch.export`` and writes, into one folder:

- ``cycleguardian_fp32.pte``: ExecuTorch, XNNPACK-lowered, fp32 (when ExecuTorch is installed);
- ``cycleguardian_int8.pte``: the same with the network in int8 (``int8=True``);
- ``cycleguardian_fp32.onnx``: the ONNX cross-check (``onnx=True``; needs no ExecuTorch);
- ``<file>.json`` beside each: contract, class names, configs, checkpoint sha256, size;
- ``export_report.json``: sizes, parity with eager PyTorch, ICBHI figures of each file.

Parity is measured on held-out cycles (the official test split of the data folder), each file
run by its own runtime (:mod:`cyclelib.mobile`), against the eager module: the max abs
difference of the probabilities and the fraction of cycles with the same predicted class.
The int8 file is calibrated on train-split cycles of the same folder. :func:`latency_ms` times
the runtimes on one thread.
"""

from __future__ import annotations

import json
import platform
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cyclelib.audio import iter_cycle_waveforms
from cyclelib.checkpoint import load_model
from cyclelib.constants import CYCLE_SAMPLES
from cyclelib.export import (
    CycleGuardianInference,
    capture,
    export_onnx,
    export_pte,
    file_sha256,
    write_sidecar,
)
from cyclelib.icbhi import load_icbhi
from cyclelib.metrics import icbhi_scores
from cyclelib.mobile import MobileClassifier, OnnxClassifier, median_latency_ms
from cyclelib.quantize import QUANTISED_PART, layer_precision, quantize_int8
from cyclelib.synthetic import resolve_data_dir

FILES = {  # artefact -> file name in the output folder
    "pte_fp32": "cycleguardian_fp32.pte",
    "pte_int8": "cycleguardian_int8.pte",
    "onnx": "cycleguardian_fp32.onnx",
}
REPORT = "export_report.json"


def sample_cycles(
    data_dir: str | Path, split: str, count: int, seed: int = 0, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` cycles of ``split`` (with audio), drawn at random (seeded).

    Returns waveforms (n, 176000) float32 at 22 kHz and labels (n,) int64, in recording order.
    """
    cycles = load_icbhi(data_dir).cycles
    pool = cycles[cycles["has_audio"] & (cycles["split"] == split)].reset_index(drop=True)
    if pool.empty:
        raise ValueError(f"{data_dir}: no {split} cycle has audio")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(pool), size=min(count, len(pool)), replace=False))
    chosen = pool.iloc[rows].reset_index(drop=True)
    waves = np.empty((len(chosen), CYCLE_SAMPLES), dtype=np.float32)
    for positions, batch in iter_cycle_waveforms(chosen, data_dir, progress=progress):
        waves[positions] = batch
    return waves, chosen["label"].to_numpy(np.int64)


def probabilities(module: nn.Module, waves: np.ndarray) -> np.ndarray:
    """Eager probabilities (N, 4) of ``module`` on waveforms (N, 176000), one cycle at a time
    (the exported shape)."""
    with torch.no_grad():
        return np.concatenate([module(torch.from_numpy(w[None])).numpy() for w in waves])


def parity(reference: np.ndarray, probs: np.ndarray) -> dict[str, float | int]:
    """Agreement of ``probs`` (N, 4) with ``reference`` (N, 4): max abs difference of the
    probabilities and the fraction of cycles with the same predicted class."""
    return {
        "cycles": len(probs),
        "max_abs_prob_diff": float(np.abs(probs - reference).max()),
        "class_agreement": float((probs.argmax(1) == reference.argmax(1)).mean()),
    }


def _scores(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    figures = icbhi_scores(labels, probs.argmax(1))
    return {k: figures[k] for k in ("sp", "se", "score", "acc")}


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
    model, feature_config, meta = load_model(checkpoint)
    trained_on = meta.get("data", {})
    if data_dir is None and trained_on.get("folder") and Path(trained_on["folder"]).is_dir():
        folder, synthetic = Path(trained_on["folder"]), bool(trained_on.get("synthetic"))
    else:
        folder, synthetic = resolve_data_dir(data_dir)
    inference = CycleGuardianInference(model, feature_config)
    waves, labels = sample_cycles(folder, "test", check_cycles, seed, progress)
    calibration = None
    if pte and int8:
        calibration, _ = sample_cycles(folder, "train", calibration_cycles, seed, progress)
    written = export_files(inference, out, pte=pte, int8=int8, onnx=onnx,
                           calibration=calibration, progress=progress)
    reference = probabilities(inference, waves)
    report: dict = {
        "checkpoint": {"path": str(checkpoint), "sha256": file_sha256(checkpoint),
                       "epoch": meta.get("epoch")},
        "data": {"folder": str(folder), "synthetic": synthetic, "check_split": "test",
                 "check_cycles": len(waves), "calibration_split": "train"},
        "files": {}, "parity": {}, "scores": {"eager": _scores(labels, reference)},
    }
    for key, details in written.items():
        path = out / FILES[key]
        write_sidecar(path, model, feature_config, checkpoint, **details,
                      data={"folder": str(folder), "synthetic": synthetic})
        runner = OnnxClassifier if key == "onnx" else MobileClassifier
        probs = runner.load(path).predict_proba(waves, feature_config.sample_rate)
        report["files"][key] = {"file": path.name, "size_bytes": path.stat().st_size, **details}
        report["parity"][key] = {"reference": "eager_fp32", **parity(reference, probs)}
        report["scores"][key] = _scores(labels, probs)
    report["versions"] = {"torch": torch.__version__, "executorch": _version("executorch"),
                          "onnxruntime": _version("onnxruntime"),
                          "python": platform.python_version()}
    report["wall_seconds"] = time.perf_counter() - began
    (out / REPORT).write_text(json.dumps(report, indent=2))
    return report


def latency_ms(
    inference: CycleGuardianInference, out_dir: str | Path, audio: np.ndarray, repeats: int = 10,
    threads: int = 1,
) -> dict[str, float]:
    """Median latency in ms per cycle of eager PyTorch and of each file in ``out_dir``.

    ``audio`` (1, 176000) float32; every runtime gets ``threads`` CPU threads (1: the single
    core a phone app may get) and they take turns (:func:`cyclelib.mobile.median_latency_ms`).
    ``eager_frontend`` is the hybrid spectrogram alone (fp32 in every file: it bounds the gain
    of quantising the network). Note: this resets ExecuTorch's process-wide thread pool.
    """
    runs = {"eager_fp32": lambda a: inference(torch.from_numpy(a)),
            "eager_frontend": lambda a: inference.frontend(torch.from_numpy(a))}
    for key, name in FILES.items():
        if (Path(out_dir) / name).is_file():
            runner = OnnxClassifier if key == "onnx" else MobileClassifier
            runs[key] = runner.load(Path(out_dir) / name, threads=threads).run
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            return median_latency_ms(runs, audio, repeats)
    finally:
        torch.set_num_threads(previous)


def report_markdown(report: dict) -> str:
    """The export report as a markdown table: size, parity with eager PyTorch, ICBHI figures."""
    data = report["data"]
    kind = "SYNTHETIC teaching set" if data["synthetic"] else "ICBHI data"
    lines = [
        f"Checked on {data['check_cycles']} {data['check_split']}-split cycles of the {kind} "
        f"({data['folder']}); parity is against eager PyTorch fp32.",
        "",
        "| file | size (MB) | max abs prob diff | class agreement | Sp | Se | Score |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    eager = report["scores"]["eager"]
    lines.append(f"| eager PyTorch (fp32) | | | | {eager['sp']:.3f} | {eager['se']:.3f} "
                 f"| {eager['score']:.3f} |")
    for key, entry in report["files"].items():
        check, scores = report["parity"][key], report["scores"][key]
        lines.append(
            f"| {entry['file']} | {entry['size_bytes'] / 1e6:.2f} "
            f"| {check['max_abs_prob_diff']:.2e} | {check['class_agreement']:.3f} "
            f"| {scores['sp']:.3f} | {scores['se']:.3f} "
            f"| {scores['score']:.3f} |"
        )
    return "\n".join(lines)
