"""How well the exported files agree with eager PyTorch, how fast they run (DESIGN §8).

- :func:`probabilities`, :func:`parity`, :func:`scores`: eager probabilities on held-out cycles,
  a file's agreement with them (max abs difference, same predicted class), ICBHI figures;
- :func:`latency_ms` and :func:`median_latency_ms`: single-thread latency of eager PyTorch and
  of each file's runtime, timed in turns;
- :func:`report_markdown`: the export report (``export_report.json``) as a table.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cyclelib.export.contract import FILES
from cyclelib.export.inference import CycleGuardianInference
from cyclelib.export.runtimes import load_classifier
from cyclelib.metrics import headline, icbhi_scores

ORIGINAL_WEIGHTS_MB = 27.2  # the original's fp32 weights (its README's "27M", DESIGN §5)


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


def scores(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Sp, Se, Score and accuracy (DESIGN §7) of the predicted classes of ``probs`` (N, 4)."""
    return headline(icbhi_scores(labels, probs.argmax(1)))


def median_latency_ms(
    runs: dict[str, Callable[[np.ndarray], object]], audio: np.ndarray, repeats: int = 10,
    warmup: int = 2,
) -> dict[str, float]:
    """Median wall time in ms of each ``runs[name](audio)`` over ``repeats`` calls.

    The runtimes take turns (round-robin, after ``warmup`` calls each), so a shared machine's
    changing load hits them alike and their ratios stay fair.
    """
    for run in runs.values():
        for _ in range(warmup):
            run(audio)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run(audio)
            times[name].append(time.perf_counter() - start)
    return {name: 1000.0 * float(np.median(t)) for name, t in times.items()}


def latency_ms(
    inference: CycleGuardianInference, out_dir: str | Path, audio: np.ndarray, repeats: int = 10,
    threads: int = 1,
) -> dict[str, float]:
    """Median latency in ms per cycle of eager PyTorch and of each file in ``out_dir``.

    ``audio`` (1, 176000) float32; every runtime gets ``threads`` CPU threads (1: the single
    core a phone app may get) and they take turns (:func:`median_latency_ms`).
    ``eager_frontend`` is the hybrid spectrogram alone (fp32 in every file: it bounds the gain
    of quantising the network). Note: this resets ExecuTorch's process-wide thread pool.
    """
    runs = {"eager_fp32": lambda a: inference(torch.from_numpy(a)),
            "eager_frontend": lambda a: inference.frontend(torch.from_numpy(a))}
    for key, name in FILES.items():
        if (Path(out_dir) / name).is_file():
            runs[key] = load_classifier(Path(out_dir) / name, threads=threads).run
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
    kind = "SYNTHETIC set (not ICBHI recordings)" if data["synthetic"] else "ICBHI data"
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
        check, figures = report["parity"][key], report["scores"][key]
        lines.append(
            f"| {entry['file']} | {entry['size_bytes'] / 1e6:.2f} "
            f"| {check['max_abs_prob_diff']:.2e} | {check['class_agreement']:.3f} "
            f"| {figures['sp']:.3f} | {figures['se']:.3f} "
            f"| {figures['score']:.3f} |"
        )
    return "\n".join(lines)
