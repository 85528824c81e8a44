"""Same seed, same numbers: short runs on a synthetic set give the figures of the code before the
restructure of issue 13, stored in ``tests/golden/short_run.json``.

The golden file was written by the same calls against the code of issue 15 just before the
restructure was merged onto it (commit 3abdd71: 4cf2f19 plus the per-window BatchNorm and the
unbiased row std, which change the numbers on purpose), with ``git archive 3abdd71`` first on
``PYTHONPATH`` and that commit's module names; then re-recorded by these calls on purpose when
the small config's default became pooled BatchNorm statistics (``ModelConfig.small``,
``window_stats=False``), with the default 2 threads (the figures depend on the thread count).
The calls: the official protocol from cached features (2 epochs), the paper protocol with
waveform effects computed on the fly (1 epoch), ``evaluate_checkpoint`` of the first run's
``best.pt`` and ``sample_cycles``. Every logged loss,
learning rate and figure, each confusion matrix, the split sizes and the sampled cycles must
match, to what another CPU allows. The golden figures came from an AMD EPYC with AVX2; on one
with AVX-512 (2026-12-01) the losses differed by up to 1e-4 relative (the KL terms, about 5e-5,
by 4e-9), and one test cycle (a crackle) was predicted normal instead of wheeze: float rounding
differs between CPUs' kernels and a borderline cycle can change its class. So losses match to
``LOSS_RTOL``; each confusion matrix has the same true-class counts and at most one cycle moved;
each Sp, Se, Score or accuracy lies within one cycle's share of its split; the rest is exact.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from cyclelib import evaluate_checkpoint, reproduce, sample_cycles
from cyclelib.data import make_synthetic_icbhi

pytestmark = pytest.mark.slow

GOLDEN = Path(__file__).parent / "golden" / "short_run.json"
RUN_KEYS = ("seed", "best_epoch", "val_score", "test_sp", "test_se", "test_score", "test_acc",
            "last_test_sp", "last_test_se", "last_test_score", "last_test_acc", "confusion",
            "last_confusion", "epochs", "splits")


def figures(results: dict) -> dict:
    """What must not change in a run: per-seed figures, the epoch log (less timings), splits."""
    log = Path(results["out"]) / f"seed_{results['seeds'][0]}" / "train_log.jsonl"
    history = [json.loads(line) for line in log.read_text().splitlines()]
    return {
        "runs": [{k: run[k] for k in RUN_KEYS} for run in results["runs"]],
        "history": [{k: v for k, v in row.items() if k != "seconds"} for row in history],
        "aggregate": results["aggregate"],
        "data_splits": results["data"]["splits"],
    }


def flat(value: object, path: str = "") -> dict[str, object]:
    """Nested dicts and lists as {path: leaf}."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flat(item, f"{path}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in flat(item, f"{path}/{i}").items()}
    return {path: value}


def test_short_runs_give_the_figures_of_the_code_before_the_restructure(tmp_path) -> None:
    tiny = make_synthetic_icbhi(tmp_path / "icbhi", seed=3, patients=6)
    official = reproduce(tiny, epochs=2, device="cpu", out=tmp_path / "official", progress=False)
    paper = reproduce(tiny, epochs=1, device="cpu", out=tmp_path / "paper", progress=False,
                      protocol="paper", train_changes={"wave_effects": True})
    best = evaluate_checkpoint(Path(official["out"]) / "seed_0" / "best.pt", tiny)
    waves, labels = sample_cycles(tiny, "test", 5, seed=0)
    got = flat({
        "official": figures(official),
        "paper": figures(paper),
        "evaluate": {k: best[k] for k in ("test_sp", "test_se", "test_score", "test_acc",
                                          "confusion")},
        "sample_cycles": {"labels": labels.tolist(),
                          "sums": waves.astype(np.float64).sum(1).tolist()},
    })
    golden = json.loads(GOLDEN.read_text())
    want = flat(golden)
    assert sorted(got) == sorted(want)
    mine = matrices(got)
    for prefix, matrix in matrices(want).items():
        assert (mine[prefix].sum(1) == matrix.sum(1)).all(), prefix  # the same true classes
        assert np.abs(mine[prefix] - matrix).sum() <= 2, prefix  # at most one cycle moved
    shares = {protocol: cycle_shares(golden[protocol]["data_splits"])
              for protocol in ("official", "paper")}
    for key, value in want.items():
        if CONFUSION.search(key):
            continue  # compared above, as whole matrices
        metric = METRIC.search(key)
        if metric and isinstance(value, float) and not math.isnan(value):
            protocol = "paper" if key.startswith("/paper") else "official"
            share = shares[protocol][metric["split"] or "test"]
            assert got[key] == pytest.approx(value, abs=share + 1e-9), key
        elif isinstance(value, float) and not math.isnan(value):
            assert got[key] == pytest.approx(value, rel=LOSS_RTOL, abs=1e-8), key
        else:
            assert got[key] == value, key


LOSS_RTOL = 1e-3  # losses and rates: CPUs round differently, and a few steps amplify it
CONFUSION = re.compile(r"^(?P<matrix>.*confusion[^/]*)/(?P<row>\d)/(?P<col>\d)$")
METRIC = re.compile(r"/(?:last_)?(?P<split>train|val|test)?_?(?:sp|se|score|acc)(?:/mean)?$")


def matrices(values: dict[str, object]) -> dict[str, np.ndarray]:
    """The confusion matrices among flattened ``values``: {path: (4, 4) counts}."""
    found: dict[str, np.ndarray] = {}
    for key, value in values.items():
        if match := CONFUSION.search(key):
            matrix = found.setdefault(match["matrix"], np.zeros((4, 4), dtype=int))
            matrix[int(match["row"]), int(match["col"])] = value
    return found


def cycle_shares(splits: dict) -> dict[str, float]:
    """The most one cycle can move a ratio over each split: 1 / its smallest group (normal,
    abnormal; all cycles for the training accuracy)."""
    shares = {name: 1 / min(s["normal"], s["cycles"] - s["normal"]) for name, s in splits.items()
              if name != "train"}
    return {**shares, "train": 1 / splits["train"]["cycles"]}
