"""The results of :func:`cyclelib.reproduce` (DESIGN §7): their JSON, their table, their logs.

- :func:`aggregate`: mean ± std (n-1) of every figure over the seeds;
- :func:`json_safe`: NaN as null, numpy scalars as Python numbers, so results.json is valid JSON;
- :func:`results_markdown`: the results table a reader can paste into a paper;
- :func:`read_history`: one seed's per-epoch log (``train_log.jsonl``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from cyclelib.metrics import HEADLINE

TEST_METRICS = tuple(f"test_{k}" for k in HEADLINE)  # test_sp, test_se, test_score, test_acc
METRICS = ("val_score", *TEST_METRICS, "best_epoch")  # per seed, at the selected checkpoint


def json_safe(value: object) -> object:
    """JSON-safe: NaN -> None, numpy scalars -> Python, recursively."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def aggregate(runs: list[dict]) -> dict:
    """mean and std (n-1; None with one seed) of every figure over the seeds."""
    out = {}
    for key in (*METRICS, *(f"last_{m}" for m in TEST_METRICS)):
        values = np.array([np.nan if r[key] is None else r[key] for r in runs], dtype=float)
        std = float(np.std(values, ddof=1)) if len(values) > 1 else None
        out[key] = {"mean": float(np.mean(values)), "std": std}
    out["confusion_sum"] = np.sum([r["confusion"] for r in runs], axis=0).tolist()
    return out


def read_history(results: dict, seed: int | None = None) -> list[dict]:
    """The per-epoch log (``train_log.jsonl`` rows) of one seed's run of ``results`` (as
    :func:`cyclelib.reproduce` returns them); ``seed`` defaults to the first."""
    seed = results["seeds"][0] if seed is None else seed
    log = Path(results["out"]) / f"seed_{seed}" / "train_log.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()]


def _pm(stat: dict, percent: bool = True) -> str:
    """'mean ± std' (percent by default); just the mean for one seed; 'n/a' for None."""
    if stat["mean"] is None or math.isnan(stat["mean"]):
        return "n/a"
    if not percent and stat["std"] is None and float(stat["mean"]).is_integer():
        return str(int(stat["mean"]))  # one seed's epoch: 5, not 5.0
    scale, digits = (100.0, 2) if percent else (1.0, 1)
    text = f"{stat['mean'] * scale:.{digits}f}"
    return text if stat["std"] is None else f"{text} ± {stat['std'] * scale:.{digits}f}"


def results_markdown(results: dict) -> str:
    """The results table a reader can paste into a paper (mean ± std over seeds, in %)."""
    agg, data = results["aggregate"], results["data"]
    kind = "SYNTHETIC set (not ICBHI recordings)" if data["synthetic"] else "ICBHI 2017"
    title = "PAPER PROTOCOL (leaky split, test-set selection)" if results["warning"] else (
        "official split, validation-selected")
    lines = [f"# CycleGuardian `{results['config']}`: {title}", ""]
    if results["warning"]:
        lines += [f"**{results['warning']}**", ""]
    lines += [
        f"Data: {kind} at `{data['folder']}`; {data['restriction']}.",
        "Splits (seed {}): {}.".format(results["seeds"][0], "; ".join(
            f"{n} {s['recordings']} recordings / {s['patients']} patients / {s['cycles']} cycles"
            for n, s in data["splits"].items())),
        f"Selection: {results['selection']}; {len(results['seeds'])} seed(s) "
        f"{results['seeds']}, {results['train_config']['epochs']} epochs, device "
        f"{results['device']}, torch {results['torch']}; mean ± std (n-1) over seeds, in %.",
        "",
        "| checkpoint | val Score | test Sp | test Se | test Score | test acc | epoch |",
        "|---|---|---|---|---|---|---|",
        "| selected | {} | {} | {} | {} | {} | {} |".format(
            _pm(agg["val_score"]), *(_pm(agg[k]) for k in TEST_METRICS),
            _pm(agg["best_epoch"], percent=False)),
        "| last epoch | | {} | {} | {} | {} | {} |".format(
            *(_pm(agg[f"last_{k}"]) for k in TEST_METRICS), results["train_config"]["epochs"]),
        "",
        "Per seed (selected checkpoint):",
        "",
        "| seed | epoch | val Score | test Sp | test Se | test Score | test acc |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        cells = [r["val_score"], r["test_sp"], r["test_se"], r["test_score"], r["test_acc"]]
        lines.append(f"| {r['seed']} | {r['best_epoch']} | " + " | ".join(
            "n/a" if v is None else f"{100 * v:.2f}" for v in cells) + " |")
    return "\n".join(lines) + "\n"
