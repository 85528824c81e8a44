"""CycleDataset and the evaluation splits (DESIGN §3, §7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

import cyclelib.dataset as dataset
from cyclelib.audio import AudioError, cut_cycle, load_recording
from cyclelib.dataset import CycleDataset, paper_protocol_split, validation_split
from cyclelib.icbhi import scan_icbhi


@pytest.fixture
def two_recordings(tmp_path: Path) -> pd.DataFrame:
    """Cycles of two short synthetic recordings (4 kHz and 10 kHz) written into tmp_path."""
    rng = np.random.default_rng(0)
    for name, rate in [("a", 4000), ("b", 10000)]:
        sf.write(tmp_path / f"{name}.wav", rng.uniform(-0.5, 0.5, 3 * rate), rate)
    return pd.DataFrame({
        "recording": ["a", "a", "a", "b", "b"],
        "start": [0.0, 1.0, 2.0, 0.5, 1.5],
        "end": [1.0, 2.0, 3.0, 1.5, 2.9],
        "label": [0, 1, 2, 3, 0],
    })  # fmt: skip


def count_loads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    loads: list[Path] = []

    def counting(path: Path, rate: int):
        loads.append(path)
        return load_recording(path, rate)

    monkeypatch.setattr(dataset, "load_recording", counting)
    return loads


def test_items_match_cut_cycle(tmp_path: Path, two_recordings: pd.DataFrame) -> None:
    data = CycleDataset(two_recordings, tmp_path, n=16000)
    assert len(data) == 5
    for i, row in enumerate(two_recordings.itertuples()):
        wave, label = data[i]
        assert wave.dtype == torch.float32 and wave.shape == (16000,) and label == row.label
        full = load_recording(tmp_path / f"{row.recording}.wav")
        expected = cut_cycle(full, 22000, row.start, row.end, 16000)
        np.testing.assert_array_equal(wave.numpy(), expected)
    waves, labels = next(iter(DataLoader(data, batch_size=5)))
    assert waves.shape == (5, 16000) and labels.tolist() == [0, 1, 2, 3, 0]


def test_cache_loads_each_recording_once(
    tmp_path: Path, two_recordings: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = count_loads(monkeypatch)
    data = CycleDataset(two_recordings, tmp_path, n=1000, cache_size=1)
    for i in range(5):
        data[i]
    assert [p.name for p in loads] == ["a.wav", "b.wav"]
    data[0], data[3], data[4]  # cache of one: a evicts b, then b is loaded again
    assert [p.name for p in loads] == ["a.wav", "b.wav", "a.wav", "b.wav"]
    loads.clear()
    roomy = CycleDataset(two_recordings, tmp_path, n=1000, cache_size=2)
    for i in [0, 3, 1, 4, 2]:
        roomy[i]
    assert [p.name for p in loads] == ["a.wav", "b.wav"]


def test_missing_audio_is_named(tmp_path: Path, two_recordings: pd.DataFrame) -> None:
    (tmp_path / "b.wav").unlink()
    with pytest.raises(AudioError, match=r"no audio for 1 recording\(s\).*'b'.*has_audio"):
        CycleDataset(two_recordings, tmp_path)
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['label'\]"):
        CycleDataset(two_recordings.drop(columns="label"), tmp_path)


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
