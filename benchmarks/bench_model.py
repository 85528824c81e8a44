"""Throughput and peak memory of the CycleGuardian network (DESIGN §5-6).

For each configuration (faithful, small) and batch size (8, 32), in a fresh subprocess so that
memory peaks do not mix:

- forward: inference (eval mode, no grad) on spectrograms (B, 3, 84, 688);
- train step: both passes (the encoder once, the group-mix pass from its embeddings), all
  losses, backward and an Adam step (:class:`cyclelib.losses.CycleGuardianObjective`);
- peak memory: the process's ``ru_maxrss`` (CPU; it includes the ~0.3-0.5 GB of the imported
  libraries) or ``torch.cuda.max_memory_allocated`` (CUDA).

CPU runs use 2 threads; CUDA runs too when a GPU is present. Targets (issue 4): the faithful
training step at most 64 ms per sample and peak memory under 2 GB at batch 32 on CPU.
Huge-page CPU tensors are on (``THP_MEM_ALLOC_ENABLE=1``, :func:`cyclelib.device.use_huge_pages`,
set before any tensor exists and inherited by the workers); run with ``THP_MEM_ALLOC_ENABLE=0``
to measure without them.

    python benchmarks/bench_model.py [--repeats 5] [--configs faithful small] [--batches 8 32]
        [--devices cpu cuda]

Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

from cyclelib.device import use_huge_pages
from cyclelib.losses import CycleGuardianObjective
from cyclelib.model import CycleGuardian, ModelConfig, count_flops

THREADS = 2  # the CI and teaching machines have 2 cores
TARGET_TRAIN_MS = 64.0  # faithful training step, ms per sample at batch 32 (CPU, 2 threads)
TARGET_PEAK_MB = 2048.0  # faithful peak memory at batch 32


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step, device: torch.device, repeats: int) -> float:
    """Seconds per call of ``step`` (one warm-up call, then the median of ``repeats``)."""
    step()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def measure(config_name: str, batch: int, device_name: str, repeats: int) -> dict:
    """One configuration at one batch size on one device (run inside a fresh process)."""
    torch.set_num_threads(THREADS)
    device = torch.device(device_name)
    torch.manual_seed(0)
    config = getattr(ModelConfig, config_name)()
    model = CycleGuardian(config)
    flops = count_flops(model, torch.randn(1, 3, 84, 688)) if device.type == "cpu" else None
    objective = CycleGuardianObjective(model).to(device)
    optimizer = torch.optim.Adam(objective.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 84, 688, device=device)
    labels = torch.arange(batch, device=device) % config.n_classes

    def forward() -> None:
        with torch.no_grad():
            model(x)

    def train_step() -> None:
        terms, _ = objective(x, labels, generator)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()

    model.eval()
    forward_s = _timed(forward, device, repeats)
    objective.train()
    train_s = _timed(train_step, device, repeats)
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "config": config_name,
        "device": device.type,
        "batch": batch,
        "params": sum(p.numel() for p in model.parameters()),
        "gflop_per_cycle": None if flops is None else flops / 1e9,
        "forward_ms_per_sample": forward_s / batch * 1e3,
        "forward_samples_per_s": batch / forward_s,
        "train_ms_per_sample": train_s / batch * 1e3,
        "train_samples_per_s": batch / train_s,
        "peak_mb": peak_mb,
        "thp_mem_alloc": os.environ.get("THP_MEM_ALLOC_ENABLE"),  # set by main
    }


def _in_subprocess(config: str, batch: int, device: str, repeats: int) -> dict:
    command = [sys.executable, __file__, "--worker", config, str(batch), device, str(repeats)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker {command[3:]} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    use_huge_pages()  # no tensor exists yet: the imports above make none
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["faithful", "small"])
    parser.add_argument("--batches", nargs="+", type=int, default=[8, 32])
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed calls after a warm-up (median)")
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], default=None,
                        help="default: cpu, and cuda when a GPU is visible")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        config, batch, device, repeats = args.worker
        print(json.dumps(measure(config, int(batch), device, int(repeats))))
        return

    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = [
        _in_subprocess(config, batch, device, args.repeats)
        for device in devices
        for config in args.configs
        for batch in args.batches
    ]
    header = (
        f"{'config':9} {'device':6} {'batch':>5} {'params':>10} {'GFLOP':>6} "
        f"{'fwd ms/s':>9} {'fwd s/s':>8} {'train ms/s':>10} {'train s/s':>9} {'peak MB':>8}"
    )
    print(
        f"CycleGuardian throughput ({THREADS} CPU threads; ms/s = ms per sample, s/s = "
        "samples per second; peak = ru_maxrss on CPU, max allocated on CUDA)"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        gflop = "" if r["gflop_per_cycle"] is None else f"{r['gflop_per_cycle']:.3f}"
        print(
            f"{r['config']:9} {r['device']:6} {r['batch']:>5} {r['params']:>10,} {gflop:>6} "
            f"{r['forward_ms_per_sample']:>9.2f} {r['forward_samples_per_s']:>8.1f} "
            f"{r['train_ms_per_sample']:>10.2f} {r['train_samples_per_s']:>9.1f} "
            f"{r['peak_mb']:>8.0f}"
        )
    targets = {}
    key = ("faithful", "cpu", 32)
    faithful = [r for r in rows if (r["config"], r["device"], r["batch"]) == key]
    if faithful:
        train_ms, peak = faithful[0]["train_ms_per_sample"], faithful[0]["peak_mb"]
        targets = {
            "faithful_train_ms_per_sample_b32": train_ms,
            "train_target_ms": TARGET_TRAIN_MS,
            "train_target_met": train_ms <= TARGET_TRAIN_MS,
            "faithful_peak_mb_b32": peak,
            "peak_target_mb": TARGET_PEAK_MB,
            "peak_target_met": peak < TARGET_PEAK_MB,
        }
        print(
            f"targets: faithful train step {train_ms:.1f} ms/sample (<= {TARGET_TRAIN_MS:.0f}: "
            f"{'met' if targets['train_target_met'] else 'NOT met'}), peak {peak:.0f} MB "
            f"(< {TARGET_PEAK_MB:.0f}: {'met' if targets['peak_target_met'] else 'NOT met'})"
        )
    print(f"huge-page allocation (THP_MEM_ALLOC_ENABLE): {rows[0]['thp_mem_alloc']}")
    print(json.dumps({"benchmark": "model", "threads": THREADS, "results": rows, **targets}))


if __name__ == "__main__":
    main()
