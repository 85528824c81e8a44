"""The splits of the evaluation protocols (DESIGN §7), on the cycle table of an ICBHI folder.

- :func:`validation_split`: a seeded validation set of *whole* train patients (the honest
  protocol of DESIGN §7: model selection never looks at test data).
- :func:`paper_protocol_split`: the original's leaky split, kept only to reproduce its numbers.
- :func:`protocol_splits`: the sets a protocol trains, selects and tests on, by name.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PROTOCOL_SETS = {  # protocol -> the sets protocol_splits returns
    "official": ("train", "val", "test"),  # official split, validation patients from train
    "paper": ("train", "test"),  # the original's leaky split (comparison only)
}


def validation_split(cycles: pd.DataFrame, fraction: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """A copy of ``cycles`` with the rows of a seeded set of train patients set to split "val".

    Whole patients move, never single recordings (DESIGN §7). Candidates are the patients whose
    rows (among those passed) are all "train": patients with test recordings too, such as 156
    and 218, never go to validation. ``round(fraction * candidates)`` patients move (at least
    one, and never all of them). Same rows and seed, same split.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie strictly between 0 and 1, got {fraction}")
    out = cycles.copy()
    is_train = out["split"] == "train"
    mixed = set(out.loc[~is_train, "patient"])
    candidates = np.array(sorted(set(out.loc[is_train, "patient"]) - mixed), dtype=np.int64)
    if len(candidates) < 2:
        raise ValueError(
            f"validation_split needs at least 2 train-only patients, found {len(candidates)}"
        )
    count = min(max(round(fraction * len(candidates)), 1), len(candidates) - 1)
    chosen = np.random.default_rng(seed).choice(candidates, size=count, replace=False)
    out.loc[is_train & out["patient"].isin(chosen), "split"] = "val"
    return out


def paper_protocol_split(cycles: pd.DataFrame) -> pd.DataFrame:
    """The original's leaky split, for comparison only (DESIGN §7, error 1).

    Train is every row of any patient with a train recording, so the test recordings of
    patients who have both (156 and 218) are trained on as well; test is the official test.
    Pass the official split (no "val" rows). Returns train rows (split "train") then test rows
    (split "test"), index reset: the leaked rows appear twice.
    """
    train_patients = set(cycles.loc[cycles["split"] == "train", "patient"])
    train = cycles[cycles["patient"].isin(train_patients)].assign(split="train")
    test = cycles[cycles["split"] == "test"]
    return pd.concat([train, test], ignore_index=True)


def protocol_splits(cycles: pd.DataFrame, protocol: str, seed: int) -> dict[str, pd.DataFrame]:
    """The rows of each set of ``protocol`` (:data:`PROTOCOL_SETS`), every column carried along.

    "official": train, val (:func:`validation_split` of the train patients, seeded by ``seed``)
    and test; "paper": train (repeating the leaked test rows) and test
    (:func:`paper_protocol_split`).
    """
    if protocol not in PROTOCOL_SETS:
        raise ValueError(f"unknown protocol {protocol!r}: choose one of {', '.join(PROTOCOL_SETS)}")
    split = validation_split(cycles, seed=seed) if protocol == "official" else (
        paper_protocol_split(cycles))
    return {name: split[split["split"] == name] for name in PROTOCOL_SETS[protocol]}
