"""Waveform effects of a training batch: one batched call per effect against cycle by cycle.

Times :func:`cyclelib.augment.augment_waveforms` on (B, 176,000) waveforms (8 s at 22 kHz) with
every row given an effect (``p_wave = 1``, the worst case; training uses 0.5), with
all the rows of each effect in one call (:mod:`cyclelib.wave_effects`, the default on a GPU)
and one call per cycle (``rows_per_call=1``, the default on the CPU). The two settings draw the
same random numbers; their results agree to float32 rounding (printed). On a GPU the per-cycle
way pays a few dozen kernel launches per cycle; on a CPU the batched way pays for padding the
stretched rows to the longest.

    python benchmarks/bench_augment.py [--batches 64 128] [--repeats 3] [--devices cpu cuda]
        [--threads 2]

Prints the CPU model and flags, a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from bench_fullscale import _cpu

from cyclelib.augment import AugmentConfig, augment_waveforms

N = 176_000  # one 8 s cycle at 22 kHz (DESIGN §3)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(batch: int, device: torch.device, repeats: int) -> dict:
    """Seconds per batch for both settings (median of ``repeats``, after one warm-up each)."""
    config = AugmentConfig(p_wave=1.0)
    waves = (torch.randn(batch, N, generator=torch.Generator().manual_seed(0)) * 0.1).to(device)
    times: dict[str, list[float]] = {"batched": [], "per_cycle": []}
    outputs = {}
    for _ in range(repeats + 1):
        for name, rows in (("batched", batch), ("per_cycle", 1)):
            generator = torch.Generator().manual_seed(1)
            _sync(device)
            start = time.perf_counter()
            outputs[name] = augment_waveforms(waves, config, generator, rows_per_call=rows)
            _sync(device)
            times[name].append(time.perf_counter() - start)
    median = {k: sorted(v[1:])[len(v[1:]) // 2] for k, v in times.items()}
    return {"device": device.type, "batch": batch, "batched_s": median["batched"],
            "per_cycle_s": median["per_cycle"], "speedup": median["per_cycle"] / median["batched"],
            "max_abs_diff": float((outputs["batched"] - outputs["per_cycle"]).abs().max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [torch.device(d) for d in args.devices
               if d == "cpu" or (d == "cuda" and torch.cuda.is_available())]
    machine = {"cpu": _cpu(), "threads": args.threads,
               "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    print(f"CPU: {machine['cpu']}, {args.threads} threads; GPU: {machine['gpu']}")
    rows = [measure(b, d, args.repeats) for d in devices for b in args.batches]
    print(f"{'device':<7}{'batch':>6}{'batched s':>11}{'per cycle s':>13}{'speed-up':>10}"
          f"{'max |diff|':>12}")
    for r in rows:
        print(f"{r['device']:<7}{r['batch']:>6}{r['batched_s']:>11.3f}{r['per_cycle_s']:>13.3f}"
              f"{r['speedup']:>10.2f}{r['max_abs_diff']:>12.1e}")
    print(json.dumps({"machine": machine, "rows": rows}))


if __name__ == "__main__":
    main()
