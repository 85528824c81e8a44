"""Size and single-thread CPU latency of the mobile files (DESIGN §8, issue 6).

For each configuration (small, faithful) the raw-audio-to-probabilities module
(:class:`cyclelib.export.CycleGuardianInference`) is exported to ExecuTorch fp32 and int8
(XNNPACK) and to ONNX, then timed on one 8 s cycle: eager PyTorch fp32, ``.pte`` fp32, ``.pte``
int8 and onnxruntime, each on ONE thread (a phone app gets a core, not the machine), median
over ``--repeats`` runs after 2 warm-up runs.

The weights are UNTRAINED (seeded): size and latency do not depend on their values. The int8
file is calibrated on a few synthetic cycles, which is enough for timing but not for accuracy
(``cyclelib export`` calibrates a trained checkpoint on hundreds of cycles).

Targets: the faithful int8 ``.pte`` under 8 MB; its latency under half of eager fp32 PyTorch.

    python benchmarks/bench_export.py [--configs small faithful] [--repeats 10] [--calibration 16]

Prints a table, then one JSON object as the last line. Needs the export extra (executorch,
onnxruntime).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch

from cyclelib.device import use_huge_pages

use_huge_pages()  # before the first CPU tensor, which importing torchaudio makes (cyclelib.device)

from cyclelib.data import sample_cycles, synthetic_dir  # noqa: E402
from cyclelib.export import (  # noqa: E402
    FILES,
    ORIGINAL_WEIGHTS_MB,
    CycleGuardianInference,
    export_files,
    latency_ms,
)
from cyclelib.model import CycleGuardian, ModelConfig  # noqa: E402

THREADS = 1  # latency on one core, every runtime
TARGET_INT8_MB = 8.0  # faithful int8 .pte
TARGET_INT8_SPEEDUP = 2.0  # eager fp32 latency / int8 .pte latency, at least


def measure(config_name: str, calibration, repeats: int, folder: Path) -> dict:
    """Export one configuration into ``folder``; its file sizes (MB) and latencies (ms)."""
    torch.manual_seed(0)
    config = getattr(ModelConfig, config_name)()
    inference = CycleGuardianInference(CycleGuardian(config))
    began = time.perf_counter()
    export_files(inference, folder, int8=True, onnx=True, calibration=calibration,
                 progress=False)
    export_seconds = time.perf_counter() - began
    weights = sum(p.numel() for p in inference.network.parameters())
    sizes = {"weights_fp32": 4 * weights / 1e6}
    sizes.update({key: (folder / name).stat().st_size / 1e6 for key, name in FILES.items()})
    latency = latency_ms(inference, folder, calibration[:1], repeats=repeats, threads=THREADS)
    return {"config": config_name, "parameters": weights, "size_mb": sizes,
            "latency_ms": latency, "export_seconds": export_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["small", "faithful"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--calibration", type=int, default=16,
                        help="synthetic train-split cycles calibrating int8 (timing only)")
    args = parser.parse_args()
    calibration, _ = sample_cycles(synthetic_dir(), "train", args.calibration)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            rows.append(measure(name, calibration, args.repeats, Path(tmp) / name))

    print(f"single-thread CPU latency per 8 s cycle (median of {args.repeats}), untrained "
          f"weights; the original's fp32 weights: {ORIGINAL_WEIGHTS_MB} MB")
    print(f"{'config':<10}{'runtime':<22}{'file (MB)':>10}{'latency (ms)':>14}{'vs eager':>10}")
    labels = {"eager_fp32": "eager PyTorch fp32", "pte_fp32": "ExecuTorch fp32",
              "pte_int8": "ExecuTorch int8", "onnx": "onnxruntime fp32",
              "eager_frontend": "(front end alone)"}
    for row in rows:
        eager = row["latency_ms"]["eager_fp32"]
        for key, label in labels.items():
            size = row["size_mb"].get("weights_fp32" if key == "eager_fp32" else key)
            ms = row["latency_ms"][key]
            size_text = f"{size:>10.2f}" if size is not None else f"{'':>10}"
            print(f"{row['config']:<10}{label:<22}{size_text}{ms:>14.1f}{eager / ms:>9.2f}x")
    faithful = next((r for r in rows if r["config"] == "faithful"), None)
    targets = {}
    if faithful is not None:
        speedup = faithful["latency_ms"]["eager_fp32"] / faithful["latency_ms"]["pte_int8"]
        latency = faithful["latency_ms"]
        targets = {
            "faithful_int8_mb": faithful["size_mb"]["pte_int8"],
            # the front end stays fp32: even a free network leaves eager / front end at most
            "faithful_speedup_bound_fp32_front_end": latency["eager_fp32"] / latency[
                "eager_frontend"],
            "faithful_int8_under_8mb": faithful["size_mb"]["pte_int8"] < TARGET_INT8_MB,
            "faithful_int8_speedup_vs_eager": speedup,
            "faithful_int8_under_half_of_eager": speedup > TARGET_INT8_SPEEDUP,
        }
        print(f"targets: faithful int8 {targets['faithful_int8_mb']:.2f} MB (< {TARGET_INT8_MB}),"
              f" {speedup:.2f}x faster than eager fp32 (> {TARGET_INT8_SPEEDUP}x); with the fp32"
              f" front end the bound is {targets['faithful_speedup_bound_fp32_front_end']:.2f}x")
    print(json.dumps({
        "benchmark": "export", "threads": THREADS, "repeats": args.repeats,
        "weights": "untrained", "calibration_cycles": len(calibration),
        "original_weights_mb": ORIGINAL_WEIGHTS_MB, "rows": rows, "targets": targets,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch": torch.__version__, "platform": platform.platform(),
    }))


if __name__ == "__main__":
    main()
