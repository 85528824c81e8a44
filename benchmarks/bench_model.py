"""Throughput and peak memory of the CycleGuardian network (DESIGN §5-6).

For each configuration (faithful, small) and batch size (8, 32), in a fresh subprocess so that
memory peaks do not mix:

- forward: inference (eval mode, no grad) on spectrograms (B, 3, 84, 688);
- train step: both passes (the encoder once, the group-mix pass from its embeddings), all
  losses, backward and an Adam step (:class:`cyclelib.losses.CycleGuardianObjective`);
- peak memory: the process's ``ru_maxrss`` (CPU; it includes the ~0.3-0.5 GB of the imported
  libraries) or ``torch.cuda.max_memory_allocated`` (CUDA).

CPU runs use 2 threads (``--threads``); CUDA runs too when a GPU is present. Targets (issue 4):
the faithful training step at most 64 ms per sample and peak memory under 2 GB at batch 32 on CPU.
Huge-page CPU tensors are on (``THP_MEM_ALLOC_ENABLE=1``, :func:`cyclelib.device.use_huge_pages`,
set before any tensor exists and inherited by the workers); run with ``THP_MEM_ALLOC_ENABLE=0``
to measure without them.

    python benchmarks/bench_model.py [--repeats 5] [--configs faithful small] [--batches 8 32]
        [--devices cpu cuda] [--window-stats on off] [--threads 2]

``--window-stats on off`` compares the encoder's per-window BatchNorm statistics
(``ModelConfig.window_stats``) with pooled ones: both networks (same weights) are built in one
process and their calls alternate (on, off, on, off, ...), so a load that comes and goes on the
machine slows both alike; besides the wall time, the process's CPU time per step is reported
(steadier on a busy machine); the peak memory of each comes from a fresh process of its own.
Without the flag each configuration keeps its own default.

Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time

import torch

from cyclelib.device import use_huge_pages
from cyclelib.losses import CycleGuardianObjective
from cyclelib.model import CycleGuardian, ModelConfig
from cyclelib.model_size import count_flops

THREADS = 2  # the CI and teaching machines have 2 cores (--threads changes it)
THREADS_ENV = "BENCH_MODEL_THREADS"  # how main passes --threads to its workers
TARGET_TRAIN_MS = 64.0  # faithful training step, ms per sample at batch 32 (CPU, 2 threads)
TARGET_PEAK_MB = 2048.0  # faithful peak memory at batch 32


def _threads() -> int:
    return int(os.environ.get(THREADS_ENV, THREADS))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step, device: torch.device, repeats: int) -> float:
    """Seconds per call of ``step`` (one warm-up call, then the median of ``repeats``; NaN for
    none)."""
    step()
    if repeats == 0:
        return float("nan")
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _setup(config_name: str, batch: int, device: torch.device, window_stats: bool | None):
    """Model, objective, optimiser, input and labels, the weights drawn from seed 0."""
    torch.manual_seed(0)
    config = getattr(ModelConfig, config_name)()
    if window_stats is not None:
        config = dataclasses.replace(config, window_stats=window_stats)
    model = CycleGuardian(config)
    objective = CycleGuardianObjective(model).to(device)
    optimizer = torch.optim.Adam(objective.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 84, 688, device=device)
    labels = torch.arange(batch, device=device) % config.n_classes

    def forward() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    def train_step() -> None:
        objective.train()
        terms, _ = objective(x, labels, generator)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()

    return model, config, forward, train_step


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _row(config_name, device, batch, model, config, forward_s, train_s, peak_mb) -> dict:
    flops = count_flops(model, torch.randn(1, 3, 84, 688)) if device.type == "cpu" else None
    return {
        "config": config_name,
        "window_stats": config.window_stats,
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


def measure(
    config_name: str, batch: int, device_name: str, repeats: int, window_stats: bool | None = None
) -> dict:
    """One configuration at one batch size on one device (run inside a fresh process)."""
    torch.set_num_threads(_threads())
    device = torch.device(device_name)
    model, config, forward, train_step = _setup(config_name, batch, device, window_stats)
    forward_s = _timed(forward, device, repeats)
    train_s = _timed(train_step, device, repeats)
    peak_mb = _peak_mb(device)
    return _row(config_name, device, batch, model, config, forward_s, train_s, peak_mb)


def measure_interleaved(
    config_name: str, batch: int, device_name: str, repeats: int, settings: list[bool]
) -> list[dict]:
    """The same configuration with each ``window_stats`` setting, calls alternating in one
    process (a warm-up call each, then ``repeats`` rounds of one timed call per setting; the
    median of each). The peak memory here is that of all of them: :func:`main` replaces it."""
    torch.set_num_threads(_threads())
    device = torch.device(device_name)
    built = [_setup(config_name, batch, device, s) for s in settings]
    times = {kind: [[] for _ in settings] for kind in ("forward", "train", "train_cpu")}
    for kind, index in (("forward", 2), ("train", 3)):
        for b in built:
            b[index]()  # warm-up
        for _ in range(repeats):
            for i, b in enumerate(built):
                _sync(device)
                start, start_cpu = time.perf_counter(), time.process_time()
                b[index]()
                _sync(device)
                times[kind][i].append(time.perf_counter() - start)
                if kind == "train":
                    times["train_cpu"][i].append(time.process_time() - start_cpu)
    median = lambda ts: sorted(ts)[len(ts) // 2]  # noqa: E731
    peak_mb = _peak_mb(device)
    rows = []
    for i, b in enumerate(built):
        row = _row(config_name, device, batch, b[0], b[1], median(times["forward"][i]),
                   median(times["train"][i]), peak_mb)
        # CPU time of the process (all its threads): what the step costs, less the time spent
        # waiting for a core on a busy machine
        row["train_cpu_ms_per_sample"] = median(times["train_cpu"][i]) / batch * 1e3
        rows.append(row)
    return rows


def _worker(args: list[str]) -> list[dict] | dict:
    mode, config, batch, device, repeats, settings = args
    flags = [None] if settings == "default" else [s == "on" for s in settings.split(",")]
    if mode == "interleaved":
        return measure_interleaved(config, int(batch), device, int(repeats), flags)
    return measure(config, int(batch), device, int(repeats), flags[0])


def _in_subprocess(
    config: str, batch: int, device: str, repeats: int, settings: str = "default",
    mode: str = "single",
):
    worker = [mode, config, str(batch), device, str(repeats), settings]
    command = [sys.executable, __file__, "--worker", *worker]
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
    parser.add_argument("--window-stats", nargs="+", choices=["on", "off"], default=None,
                        help="per-window BatchNorm statistics on and/or off (default: each "
                        "config's own); two settings alternate in one process")
    parser.add_argument("--threads", type=int, default=None,
                        help=f"CPU threads (default {THREADS}; on a machine shared with other busy "
                        "processes, 1 is steadier)")
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker)))
        return
    if args.threads is not None:
        os.environ[THREADS_ENV] = str(args.threads)  # inherited by the workers

    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    cases = [(d, c, b) for d in devices for c in args.configs for b in args.batches]
    if args.window_stats is None or len(args.window_stats) == 1:
        settings = "default" if args.window_stats is None else args.window_stats[0]
        rows = [_in_subprocess(c, b, d, args.repeats, settings) for d, c, b in cases]
    else:
        rows = []
        for d, c, b in cases:
            both = _in_subprocess(c, b, d, args.repeats, ",".join(args.window_stats),
                                  "interleaved")
            for row, setting in zip(both, args.window_stats, strict=True):
                row["peak_mb"] = _in_subprocess(c, b, d, 0, setting)["peak_mb"]  # alone
            rows += both
    header = (
        f"{'config':9} {'window':6} {'device':6} {'batch':>5} {'params':>10} {'GFLOP':>6} "
        f"{'fwd ms/s':>9} {'fwd s/s':>8} {'train ms/s':>10} {'train s/s':>9} {'peak MB':>8}"
    )
    print(
        f"CycleGuardian throughput ({_threads()} CPU threads; ms/s = ms per sample, s/s = "
        "samples per second; peak = ru_maxrss on CPU, max allocated on CUDA)"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        gflop = "" if r["gflop_per_cycle"] is None else f"{r['gflop_per_cycle']:.3f}"
        print(
            f"{r['config']:9} {'on' if r['window_stats'] else 'off':6} {r['device']:6} "
            f"{r['batch']:>5} {r['params']:>10,} {gflop:>6} "
            f"{r['forward_ms_per_sample']:>9.2f} {r['forward_samples_per_s']:>8.1f} "
            f"{r['train_ms_per_sample']:>10.2f} {r['train_samples_per_s']:>9.1f} "
            f"{r['peak_mb']:>8.0f}"
        )
    targets = {}
    for d, c, b in cases:  # on versus off, when both were measured
        pair = {r["window_stats"]: r for r in rows if (r["device"], r["config"], r["batch"])
                == (d, c, b)}
        if len(pair) < 2:
            continue
        on, off = pair[True], pair[False]
        cost = {kind: on[f"{kind}_ms_per_sample"] / off[f"{kind}_ms_per_sample"] - 1
                for kind in ("train", "train_cpu")}
        targets[f"window_stats_cost_{c}_{d}_b{b}"] = cost
        print(
            f"per-window statistics, {c} {d} batch {b}: train step "
            f"{on['train_ms_per_sample']:.1f} vs {off['train_ms_per_sample']:.1f} ms/sample "
            f"pooled ({cost['train']:+.1%}); CPU time {on['train_cpu_ms_per_sample']:.1f} vs "
            f"{off['train_cpu_ms_per_sample']:.1f} ({cost['train_cpu']:+.1%}); peak "
            f"{on['peak_mb']:.0f} vs {off['peak_mb']:.0f} MB"
        )
    key = ("faithful", "cpu", 32)
    faithful = [r for r in rows if (r["config"], r["device"], r["batch"]) == key]
    faithful.sort(key=lambda r: r["window_stats"] != ModelConfig.faithful().window_stats)
    if faithful:
        train_ms, peak = faithful[0]["train_ms_per_sample"], faithful[0]["peak_mb"]
        targets |= {
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
    print(json.dumps({"benchmark": "model", "threads": _threads(), "results": rows, **targets}))


if __name__ == "__main__":
    main()
