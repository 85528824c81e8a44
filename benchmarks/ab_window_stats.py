"""Per-window BatchNorm statistics on and off for one configuration, trained by ``reproduce``.

``ModelConfig.window_stats`` (:mod:`cyclelib.window_norm`) makes each BatchNorm of the encoder
normalise every group window with its own batch statistics in training, as the original's loop of
45 encoder calls did. This script trains the same configuration, seeds and data with it on and
off, one after the other, and prints the test figures (mean ± std over the seeds, at the
checkpoint chosen on validation and at the last epoch) and the training time of each::

    python benchmarks/ab_window_stats.py --config small --seeds 0 1 2 --out /tmp/ab
        [--data-dir ICBHI_DIR] [--epochs N] [--device cpu] [--order on off]

Without ``--data-dir`` it uses the synthetic teaching set, as ``cyclelib reproduce`` does. Each
setting's runs are written to ``OUT/window_stats_on`` and ``OUT/window_stats_off`` (results.json,
one folder per seed). The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

from cyclelib.device import use_huge_pages


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{100 * statistics.fmean(values):.2f} ± {100 * std:.2f}"


def main() -> None:
    use_huge_pages()  # before any tensor exists (cyclelib.device)
    from cyclelib import reproduction

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small", choices=sorted(reproduction.CONFIGS))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--order", nargs="+", choices=["on", "off"], default=["on", "off"])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    model_factory, train_factory = reproduction.CONFIGS[args.config]
    summary = {}
    for setting in args.order:
        on = setting == "on"
        reproduction.CONFIGS[args.config] = (
            lambda on=on: replace(model_factory(), window_stats=on), train_factory)
        began = time.perf_counter()
        try:
            results = reproduction.reproduce(
                args.data_dir, args.config, args.epochs, args.seeds, args.device,
                Path(args.out) / f"window_stats_{setting}", progress=False)
        finally:
            reproduction.CONFIGS[args.config] = (model_factory, train_factory)
        runs = results["runs"]
        assert results["model_config"]["window_stats"] is on
        summary[setting] = {
            "test_score": [r["test_score"] for r in runs],
            "test_sp": [r["test_sp"] for r in runs],
            "test_se": [r["test_se"] for r in runs],
            "last_test_score": [r["last_test_score"] for r in runs],
            "best_epoch": [r["best_epoch"] for r in runs],
            "wall_seconds": time.perf_counter() - began,
            "out": results["out"],
        }
        s = summary[setting]
        print(
            f"window_stats {setting:3}: Sp {_mean_std(s['test_sp'])}  Se {_mean_std(s['test_se'])}"
            f"  Score {_mean_std(s['test_score'])}  (last epoch {_mean_std(s['last_test_score'])})"
            f"  best epochs {s['best_epoch']}  {s['wall_seconds'] / 60:.1f} min", flush=True)
    print(json.dumps({"config": args.config, "data_dir": args.data_dir, "seeds": args.seeds,
                      "epochs": args.epochs, **summary}))


if __name__ == "__main__":
    main()
