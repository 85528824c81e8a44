"""The whole pipeline at ICBHI's full size (DESIGN §2-7), step by step: time and peak memory.

Run it on the full-size synthetic set (``cyclelib synth DIR --like-icbhi``: 920 recordings,
6,898 cycles) and, to see how each step grows, on a quarter of it (``--quarter-dir``, e.g.
``cyclelib synth Q --like-icbhi --patients-subset`` every fourth patient, see the README):

    python benchmarks/bench_fullscale.py --data-dir /tmp/icbhi_full [--quarter-dir /tmp/icbhi_q]
        [--cache /tmp/bench_cache] [--small-steps 20] [--faithful-steps 2] [--steps ...]

Steps, each in its own process (its CPU time and peak RSS from ``wait4``, so one step's memory
never hides another's; CPU time does not depend on other work on the machine): check-data; the
feature cache of every cycle, built (cold) then read (warm), with its size on disk; one epoch of
the small recipe and one of the faithful recipe on the CPU, projected from ``--small-steps`` /
``--faithful-steps`` timed steps (0: the whole epoch, with its validation pass) after the
recipe's data preparation (the faithful one builds the training-waveform cache, timed apart);
evaluation of a faithful network on the test split; ``cyclelib reproduce --epochs 2`` end to
end (small recipe, features already cached). CPU runs use 2 threads. Prints the CPU, a table,
then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

STEPS = ("check-data", "features-cold", "features-warm", "small-epoch", "faithful-epoch",
         "evaluate", "reproduce")
TARGETS = {"features_s": 60.0, "peak_gb": 4.0}  # features of 6,898 cycles; every step


def _folder_bytes(folder: Path) -> int:
    """Bytes allocated on disk under ``folder``."""
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def _prepared(data_dir: str, config: str, progress: bool = False):
    from cyclelib.prepare import prepare_data
    from cyclelib.reproduction import CONFIGS

    return prepare_data(data_dir, CONFIGS[config][0]().features, progress)


def _epoch(data_dir: str, config: str, steps: int) -> dict:
    """One epoch of ``config``'s recipe (official protocol, seed 0), or ``steps`` steps of it."""
    import numpy as np
    import torch

    from cyclelib.data import protocol_splits
    from cyclelib.prepare import split_data
    from cyclelib.reproduction import CONFIGS, _training_waves
    from cyclelib.train import train

    model_factory, train_factory = CONFIGS[config]
    recipe = train_factory(device="cpu", epochs=1)
    began = time.perf_counter()
    data = _prepared(data_dir, config)
    splits = protocol_splits(data.cycles, "official", 0)
    waves = _training_waves(data, {0: splits}, recipe, False, model_factory().features)
    prepare_s = time.perf_counter() - began
    train_set = split_data(splits["train"], data.features, waves)
    val = split_data(splits["val"], data.features)
    batches = len(train_set) // recipe.batch_size + (len(train_set) % recipe.batch_size > 1)
    if steps:  # the first steps' worth of cycles (seeded shuffle inside), a 2-cycle validation
        n = min(steps * recipe.batch_size, len(train_set))
        sample = np.sort(np.random.default_rng(0).choice(len(train_set), n, replace=False))
        train_set = replace(train_set, labels=train_set.labels[sample],
                            rows=train_set.rows[sample],
                            waves=None if waves is None else waves.of(train_set.rows[sample]))
        val = replace(val, labels=val.labels[:2], rows=val.rows[:2])
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        result = train(model_factory(), train_set, {"val": val}, recipe, f"{tmp}/run",
                       progress=False)
    seconds = result.history[0]["seconds"]
    timed = -(-len(train_set) // recipe.batch_size) if steps else batches
    return {"cycles": len(splits["train"]), "batches": batches, "timed_steps": timed,
            "prepare_s": prepare_s, "epoch_s": seconds * batches / timed,
            "projected": bool(steps), "waves_cached": waves is not None}


def run_step(step: str, data_dir: str, args: argparse.Namespace) -> dict:
    """One step in this process: its figures (the parent adds wall time and peak RSS)."""
    import torch

    torch.set_num_threads(2)
    if step == "check-data":
        from cyclelib.data import check_data

        report = check_data(data_dir)
        return {"cycles": report["cycles"], "problems": len(report["problems"]),
                "synthetic": report["synthetic"],
                "split": {k: {c: v[c] for c in ("cycles", "normal", "crackle", "wheeze", "both")}
                          for k, v in report["split"].items()}}
    if step.startswith("features"):
        began = time.perf_counter()
        data = _prepared(data_dir, "faithful")
        seconds = time.perf_counter() - began
        return {"cycles": len(data.cycles), "features_s": seconds,
                "cache_gb": Path(data.features.filename).stat().st_size / 1e9}
    if step in ("small-epoch", "faithful-epoch"):
        steps = args.small_steps if step == "small-epoch" else args.faithful_steps
        return _epoch(data_dir, step.split("-")[0], steps)
    if step == "evaluate":
        from cyclelib.evaluation import evaluate
        from cyclelib.model import CycleGuardian, ModelConfig
        from cyclelib.prepare import split_data

        data = _prepared(data_dir, "faithful")
        test = split_data(data.cycles[data.cycles["split"] == "test"], data.features)
        torch.manual_seed(0)
        began = time.perf_counter()
        evaluate(CycleGuardian(ModelConfig.faithful()), test, 64, "cpu")
        seconds = time.perf_counter() - began
        return {"cycles": len(test), "evaluate_s": seconds,
                "ms_per_cycle": 1e3 * seconds / len(test)}
    raise ValueError(step)


def _child(command: list[str], env: dict) -> tuple[dict | None, str, float, float, float]:
    """Run ``command``; (last-line JSON or None, output, wall s, CPU s, peak RSS GB of it)."""
    began = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - began
    lines = output.strip().splitlines()
    figures = None
    if proc.returncode == 0 and lines:
        try:
            figures = json.loads(lines[-1])
        except ValueError:
            figures = None
    cpu = usage.ru_utime + usage.ru_stime
    return figures, output, wall, cpu, usage.ru_maxrss / 2**20  # Linux: KiB


def measure(data_dir: str, cache: Path, args: argparse.Namespace) -> list[dict]:
    """Every step of ``args.steps`` on ``data_dir`` with its own cache folder."""
    env = {**os.environ, "CYCLELIB_CACHE": str(cache), "THP_MEM_ALLOC_ENABLE": "1"}
    if "features-cold" in args.steps:
        shutil.rmtree(cache, ignore_errors=True)
    rows = []
    for step in args.steps:
        if step == "reproduce":
            command = [sys.executable, "-m", "cyclelib.cli", "reproduce", "--data-dir", data_dir,
                       "--epochs", "2", "--device", "cpu", "--overwrite", "--out",
                       str(cache / "runs")]
        else:
            command = [sys.executable, __file__, "--one", step, "--data-dir", data_dir,
                       "--small-steps", str(args.small_steps),
                       "--faithful-steps", str(args.faithful_steps)]
        figures, output, wall, cpu, peak = _child(command, env)
        row = {"step": step, "wall_s": wall, "cpu_s": cpu, "peak_gb": peak}
        if step == "reproduce":
            results = cache / "runs" / "results.json"
            ok = results.is_file() and "results written" in output
            row.update({"ok": ok, "output_lines": len(output.splitlines()),
                        "output_bytes": len(output)})
            if ok:
                log = (cache / "runs" / "seed_0" / "train_log.jsonl").read_text().splitlines()
                row["epoch_s"] = [round(json.loads(line)["seconds"], 1) for line in log]
                row["synthetic"] = json.loads(results.read_text())["data"]["synthetic"]
        elif figures is None:
            row["error"] = output[-600:]
        else:
            row.update(figures)
        rows.append(row)
        print(f"  {Path(data_dir).name}: {step} {wall:.1f} s ({cpu:.1f} CPU s), {peak:.2f} GB",
              flush=True)
    row = {"step": "disk", "cache_gb": _folder_bytes(cache) / 1e9,
           "data_gb": _folder_bytes(Path(data_dir)) / 1e9}
    return [*rows, row]


def _cpu() -> str:
    """The CPU model and its vector flags (the figures depend on them)."""
    model, flags = platform.processor() or platform.machine(), ""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.is_file() else []
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        if key.strip() == "flags" and not flags:
            wanted = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "fma")
            flags = " ".join(f for f in value.split() if f in wanted)
    return f"{model} ({os.cpu_count()} CPUs; flags: {flags or 'unknown'})"


def _cell(row: dict) -> str:
    """The step's main figures, in words."""
    if "error" in row:
        return "FAILED: " + row["error"].strip().splitlines()[-1][:80]
    step = row["step"]
    if step == "check-data":
        return f"{row['cycles']} cycles, {row['problems']} problems, synthetic={row['synthetic']}"
    if step.startswith("features"):
        return (f"{row['cycles']} cycles in {row['features_s']:.1f} s, "
                f"cache {row['cache_gb']:.2f} GB")
    if step.endswith("epoch"):
        how = f"projected from {row['timed_steps']} steps" if row["projected"] else "measured"
        waves = " incl. the waveform cache" if row["waves_cached"] else ""
        return (f"epoch {row['epoch_s']:.0f} s ({how}, {row['batches']} batches); data "
                f"{row['prepare_s']:.1f} s{waves}")
    if step == "evaluate":
        return f"{row['cycles']} test cycles, {row['ms_per_cycle']:.1f} ms/cycle"
    if step == "reproduce":
        return (f"ok={row['ok']}, epochs {row.get('epoch_s')} s, {row['output_lines']} output "
                f"lines, synthetic={row.get('synthetic')}")
    return f"cache {row['cache_gb']:.2f} GB, data {row['data_gb']:.2f} GB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="the full-size set")
    parser.add_argument("--quarter-dir", default=None, help="a quarter of it, for growth")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/cyclelib-bench-fullscale"))
    parser.add_argument("--small-steps", type=int, default=20, help="0: a whole epoch")
    parser.add_argument("--faithful-steps", type=int, default=2, help="0: a whole epoch")
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        from cyclelib.device import use_huge_pages

        use_huge_pages()
        print(json.dumps(run_step(args.one, args.data_dir, args)))
        return
    print(f"CPU: {_cpu()}; load average {os.getloadavg()[0]:.1f} at the start")
    sets = ({"quarter": args.quarter_dir} if args.quarter_dir else {}) | {"full": args.data_dir}
    results = {name: measure(folder, args.cache / name, args) for name, folder in sets.items()}
    print(f"load average {os.getloadavg()[0]:.1f} at the end (timings under load are upper "
          "bounds)")
    print(f"{'set':<8}{'step':<16}{'wall s':>8}{'CPU s':>8}{'peak GB':>9}  figures")
    for name, rows in results.items():
        for row in rows:
            wall = (f"{row['wall_s']:>8.1f}{row['cpu_s']:>8.1f}{row['peak_gb']:>9.2f}"
                    if "wall_s" in row else " " * 25)
            print(f"{name:<8}{row['step']:<16}{wall}  {_cell(row)}")
    growth = {}
    if "quarter" in results:
        full, quarter = ({r["step"]: r for r in results[k]} for k in ("full", "quarter"))
        cycles = full["check-data"]["cycles"] / quarter["check-data"]["cycles"]
        growth = {"cycles_ratio": cycles, **{
            step: full[step]["cpu_s"] / quarter[step]["cpu_s"] for step in args.steps}}
        print(f"growth full/quarter: cycles x{cycles:.2f}; CPU time " + ", ".join(
            f"{step} x{ratio:.2f}" for step, ratio in growth.items() if step != "cycles_ratio"))
    print(json.dumps({"benchmark": "fullscale", "cpu": _cpu(), "threads": 2,
                      "targets": TARGETS, "small_steps": args.small_steps,
                      "faithful_steps": args.faithful_steps, "sets": sets, "results": results,
                      "growth": growth, "load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
