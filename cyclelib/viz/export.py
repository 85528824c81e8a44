"""Tables and pictures of the mobile export for notebook 05 (DESIGN §8).

:func:`size_latency_table` puts file sizes and single-thread latencies side by side;
:func:`plot_size_latency` draws them; :func:`plot_dynamic_range` shows why the front end stays
fp32 when the network is quantised to int8; :func:`int8_changes` says what int8 does to each
class; :func:`quiet_runtimes` keeps the runtimes' logs out of the notebook and counts them.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cyclelib.constants import CLASS_NAMES, MAP_NAMES

INT8_RANGE_DB = 20 * np.log10(127)  # amplitude range one symmetric int8 scale resolves: 42 dB
RUNTIMES = {  # key in the report / latency dicts -> label
    "eager_fp32": "eager PyTorch fp32",
    "pte_fp32": "ExecuTorch .pte fp32",
    "pte_int8": "ExecuTorch .pte int8",
    "onnx": "onnxruntime fp32",
    "eager_frontend": "front end alone (eager fp32), not a runtime",
}


def size_latency_table(
    report: dict, latency: dict[str, float], weights_mb: float, original_mb: float
) -> pd.DataFrame:
    """One row per runtime: file size (MB), median latency per cycle (ms), speed-up vs eager
    (the front end's row, a part of every file and not a runtime of its own, has none).

    ``weights_mb`` is the eager model's fp32 weights; the original's weights (``original_mb``)
    get a row of their own, without latency (it published no inference code); the front end's
    row has a latency only.
    """
    rows = [{"runtime": "original CycleGuardian weights (fp32)", "size (MB)": original_mb}]
    for key, label in RUNTIMES.items():
        if key not in latency:
            continue
        size = {"eager_fp32": weights_mb, "eager_frontend": None}.get(key)
        if key in report["files"]:
            size = report["files"][key]["size_bytes"] / 1e6
        rows.append({"runtime": label, "size (MB)": size, "latency (ms)": latency[key],
                     "speed-up vs eager": None if key == "eager_frontend"
                     else latency["eager_fp32"] / latency[key]})
    return pd.DataFrame(rows).set_index("runtime").round(2)


def plot_size_latency(table: pd.DataFrame) -> plt.Figure:
    """Bar charts of :func:`size_latency_table`: size (MB, log scale: the sizes span two orders
    of magnitude) and latency per cycle (ms), each bar labelled with its value."""
    fig, (ax_size, ax_time) = plt.subplots(1, 2, figsize=(12, 3.4))
    table["size (MB)"].dropna().plot.barh(ax=ax_size, color="tab:blue", logx=True)
    ax_size.set_xlabel("MB (log scale)")
    ax_size.set_title("file size")
    timed = table["latency (ms)"].dropna()
    timed.plot.barh(ax=ax_time, color="tab:orange")
    ax_time.set_xlabel("ms per 8 s cycle, one thread (median)")
    ax_time.set_title("CPU latency")
    ax_time.set_ylabel("")
    for ax, unit in ((ax_size, "MB"), (ax_time, "ms")):
        ax.invert_yaxis()
        ax.bar_label(ax.containers[0], fmt=f"%.2f {unit}", fontsize=8, padding=2)
        ax.set_xlim(right=ax.get_xlim()[1] * (3 if ax is ax_size else 1.25))
    fig.tight_layout()
    return fig


def plot_dynamic_range(maps_db: np.ndarray) -> plt.Figure:
    """Histograms of one cycle's three dB maps (3, 84, 688) against what int8 resolves.

    The shaded band is the top :data:`INT8_RANGE_DB` dB below each map's maximum: a single int8
    scale per tensor on the front end's filter outputs keeps only values inside it.
    """
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3), sharey=True)
    for ax, name, values in zip(axes, MAP_NAMES, maps_db, strict=True):
        values = values.ravel()
        top = values.max()
        lost = (values < top - INT8_RANGE_DB).mean()
        ax.hist(values, bins=60, color="tab:gray")
        ax.axvspan(top - INT8_RANGE_DB, top, color="tab:green", alpha=0.2,
                   label=f"int8 range ({INT8_RANGE_DB:.0f} dB)")
        ax.set_title(f"{name}\n{values.max() - values.min():.0f} dB spread, "
                     f"{100 * lost:.0f}% below int8", fontsize=10)
        ax.set_xlabel("dB")
    axes[0].set_ylabel("time-frequency bins")
    axes[0].legend(loc="upper left")
    fig.tight_layout()
    return fig


def int8_changes(fp32: np.ndarray, int8: np.ndarray) -> pd.DataFrame:
    """What int8 does to each class, over the same cycles: fp32 and int8 probabilities (N, 4).
    Per class: how many cycles each format predicts as it, and the largest and the mean absolute
    change of its probability."""
    change = np.abs(int8 - fp32)
    classes = np.arange(fp32.shape[1])
    return pd.DataFrame({
        "fp32 predicts": (fp32.argmax(1)[:, None] == classes).sum(0),
        "int8 predicts": (int8.argmax(1)[:, None] == classes).sum(0),
        "largest |change|": change.max(0),
        "mean |change|": change.mean(0),
    }, index=list(CLASS_NAMES)).round(3)


@contextmanager
def quiet_runtimes() -> Iterator[dict[str, list[str]]]:
    """Keep the export's library chatter out of a notebook, and say what was kept out.

    Inside the block, the native stderr (file descriptor 2: ExecuTorch's CPU probing, "Failed to
    open midr file" on x86), Python's ``sys.stderr`` (library logs) and Python warnings are
    caught instead of shown. The yielded dict fills in on exit: ``"native"`` and ``"python"``,
    the non-empty lines each wrote, and ``"warnings"``, one ``Category: message`` per warning.
    """
    said: dict[str, list[str]] = {"native": [], "python": [], "warnings": []}
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings(record=True) as caught, \
            contextlib.redirect_stderr(io.StringIO()) as python:
        warnings.simplefilter("always")
        os.dup2(sink.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            said["native"] = [line for line in sink.read().decode(errors="replace").splitlines()
                              if line.strip()]
            said["python"] = [line for line in python.getvalue().splitlines() if line.strip()]
            said["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
