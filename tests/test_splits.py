"""The splits of the evaluation protocols (DESIGN §7)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cyclelib.data import paper_protocol_split, protocol_splits, scan_icbhi, validation_split


def split_table() -> pd.DataFrame:
    """30 train-only patients, 2 with train and test recordings, 10 test-only; 3 rows each."""
    rows = [(p, "train") for p in range(100, 130) for _ in range(3)]
    rows += [(p, s) for p in (156, 218) for s in ("train", "test", "train")]
    rows += [(p, "test") for p in range(300, 310) for _ in range(3)]
    return pd.DataFrame(rows, columns=["patient", "split"]).assign(label=0)


def test_validation_split_moves_whole_train_patients() -> None:
    cycles = split_table()
    out = validation_split(cycles, fraction=0.2, seed=0)
    assert cycles["split"].isin(["train", "test"]).all()  # input untouched
    val = set(out.loc[out.split == "val", "patient"])
    assert len(val) == 6  # 20% of the 30 train-only patients
    assert val <= set(range(100, 130))  # never 156/218, never test patients
    assert not (set(out.loc[out.split == "train", "patient"]) & val)  # whole patients
    assert out.loc[out.split == "test"].equals(cycles.loc[cycles.split == "test"])
    assert validation_split(cycles, 0.2, seed=0).equals(out)
    seeds = {frozenset(validation_split(cycles, 0.2, seed=s).query("split == 'val'").patient)
             for s in range(5)}  # fmt: skip
    assert len(seeds) > 1
    assert validation_split(cycles, 0.1, seed=0).query("split == 'val'").patient.nunique() == 3


def test_validation_split_bad_input() -> None:
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        validation_split(split_table(), fraction=1.0)
    with pytest.raises(ValueError, match="at least 2 train-only patients"):
        validation_split(split_table().query("patient >= 156"))


def test_paper_protocol_split_by_hand() -> None:
    cycles = split_table()
    out = paper_protocol_split(cycles)
    leaked = cycles[(cycles.split == "test") & cycles.patient.isin([156, 218])]
    assert len(out) == len(cycles) + len(leaked)
    assert (out.split == "train").sum() == (cycles.split == "train").sum() + len(leaked)
    assert (
        out.loc[out.split == "test", "patient"].tolist()
        == cycles.loc[cycles.split == "test", "patient"].tolist()
    )


def test_protocol_splits_name_the_sets_and_carry_every_column() -> None:
    cycles = split_table().assign(row=range(len(split_table())))
    official = protocol_splits(cycles, "official", seed=0)
    assert list(official) == ["train", "val", "test"]
    assert official["val"].equals(validation_split(cycles, seed=0).query("split == 'val'"))
    paper = protocol_splits(cycles, "paper", seed=0)
    assert list(paper) == ["train", "test"] and "row" in paper["train"]
    assert len(paper["train"]) > (cycles.split == "train").sum()  # the leaked test rows
    with pytest.raises(ValueError, match="unknown protocol 'leaky'"):
        protocol_splits(cycles, "leaky", seed=0)


def test_real_splits(icbhi_dir: Path) -> None:
    cycles = scan_icbhi(icbhi_dir).cycles
    paper = paper_protocol_split(cycles)
    train = paper[paper.split == "train"]
    test = cycles[cycles.split == "test"]
    assert (paper.split == "test").sum() == 2756
    leaked = test[test.recording.isin(set(train.recording))]
    assert len(leaked) == 120 and (leaked.label == 3).sum() == 57
    assert set(leaked.patient) == {156, 218} and leaked.recording.nunique() == 12

    for rows in (cycles, cycles[cycles.has_audio]):
        out = validation_split(rows, fraction=0.2, seed=0)
        val = set(out.loc[out.split == "val", "patient"])
        train_patients = set(rows.loc[rows.split == "train", "patient"]) - {156, 218}
        assert not val & {156, 218} and val <= train_patients
        assert 0.15 <= len(val) / len(train_patients) <= 0.25
        assert out.split.value_counts()["test"] == (rows.split == "test").sum()
        assert validation_split(rows, fraction=0.2, seed=0).equals(out)
