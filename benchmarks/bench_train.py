"""Training speed (DESIGN §6): seconds per epoch and samples/s, small and faithful networks,
from cached features and with on-the-fly augmentation (waveform effects + batched hybrid
spectrogram on the training device), with peak memory.

Each case runs in its own subprocess (clean peak-memory figure): one warm-up epoch, then one
timed epoch of ``steps`` batches of random inputs (speed does not depend on the values). The
seconds per ICBHI epoch are extrapolated to the 4,142 official train cycles (less the
validation patients in practice). CPU runs use 2 threads; CUDA cases are added when a GPU is
visible. Prints a table, then one JSON object as the last line.

    python benchmarks/bench_train.py [--steps 2] [--cases small-cached faithful-cached ...]
        [--devices cpu cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace

ICBHI_TRAIN_CYCLES = 4142  # official train split (DESIGN §2)
CASES = ("small-cached", "small-augmented", "faithful-cached", "faithful-augmented")


def run_case(case: str, device: str, steps: int, batch: int | None) -> dict:
    """One case in this process: returns its figures."""
    import numpy as np
    import torch

    from cyclelib.model import CycleGuardian
    from cyclelib.prepare import SplitData
    from cyclelib.reproduction import CONFIGS
    from cyclelib.train import train

    torch.set_num_threads(2)
    name, mode = case.split("-")
    model_factory, train_factory = CONFIGS[name]
    config = replace(train_factory(), epochs=2, device=device, wave_effects=mode == "augmented",
                     circular_shift=True, spec_augment=True)
    if batch:
        config = replace(config, batch_size=batch)
    n = config.batch_size * steps
    rng = np.random.default_rng(0)
    features = rng.standard_normal((n, 3, 84, 688)).astype(np.float16)
    waves = (0.1 * rng.standard_normal((n, 176_000))).astype(np.float32) if mode == "augmented" \
        else None
    labels = np.arange(n) % 4
    data = SplitData(labels, features, np.arange(n), waves)
    val = SplitData(labels[:4], features, np.arange(4))
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        result = train(model_factory(), data, {"val": val}, config, f"{tmp}/run", progress=False)
    seconds = result.history[1]["seconds"]  # the second epoch: warm caches and kernels
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {
        "case": case, "device": device, "batch": config.batch_size, "samples": n,
        "epoch_seconds": seconds, "samples_per_s": n / seconds,
        "icbhi_epoch_s": ICBHI_TRAIN_CYCLES * seconds / n, "peak_mb": peak / 2**20,
        "params": sum(p.numel() for p in CycleGuardian(model_factory()).parameters()),
        "thp_mem_alloc": os.environ.get("THP_MEM_ALLOC_ENABLE"),  # set by main, inherited
    }


def main() -> None:
    from cyclelib.device import use_huge_pages

    use_huge_pages()  # before any tensor; each case's subprocess inherits it
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="batches per timed epoch")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--batch", type=int, default=None,
                        help="override the recipe's batch (faithful uses 128: 4.7 GB peak on CPU)")
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], default=None,
                        help="default: cpu, and cuda when a GPU is visible")
    parser.add_argument("--one", nargs=2, metavar=("CASE", "DEVICE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_case(args.one[0], args.one[1], args.steps, args.batch)))
        return
    import torch

    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for case in args.cases:
            began = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, __file__, "--one", case, device, "--steps", str(args.steps)]
                + (["--batch", str(args.batch)] if args.batch else []),
                capture_output=True, text=True,
            )
            if proc.returncode:
                rows.append({"case": case, "device": device, "error": proc.stderr[-400:]})
            else:
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            rows[-1]["wall_s"] = time.perf_counter() - began
    header = f"{'case':<20}{'device':<7}{'batch':>6}{'s/epoch':>9}{'samples/s':>11}" \
             f"{'ICBHI epoch s':>15}{'peak MB':>9}"
    print(header)
    for r in rows:
        if "error" in r:
            print(f"{r['case']:<20}{r['device']:<7} failed: {r['error'].splitlines()[-1:]}")
            continue
        print(f"{r['case']:<20}{r['device']:<7}{r['batch']:>6}{r['epoch_seconds']:>9.1f}"
              f"{r['samples_per_s']:>11.1f}{r['icbhi_epoch_s']:>15.0f}{r['peak_mb']:>9.0f}")
    print(json.dumps({"benchmark": "train", "threads": 2, "steps": args.steps,
                      "batch_override": args.batch, "rows": rows}))


if __name__ == "__main__":
    main()
