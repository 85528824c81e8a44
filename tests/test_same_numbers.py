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
match; floats to a relative 1e-6 (another CPU may round the last bits differently).
"""

from __future__ import annotations

import json
import math
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
    want = flat(json.loads(GOLDEN.read_text()))
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        if isinstance(value, float) and not math.isnan(value):
            assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
        else:
            assert got[key] == value, key
