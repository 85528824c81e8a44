"""The synthetic teaching set: ICBHI layout (DESIGN §2), sounds, balance, split, cache, paths."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from scipy.signal import stft, welch

from cyclelib.data import synthetic
from cyclelib.data.synthetic import (
    CLASS_FRACTIONS,
    DEVICES,
    is_synthetic,
    make_synthetic_icbhi,
    synthetic_dir,
)

NAME = re.compile(r"(\d{3})_(\d+[bp]\d+)_(Tc|Al|Ar|Pl|Pr|Ll|Lr)_(sc|mc)_(\w+)")
LINE = re.compile(r"\d+\.\d{3}\t\d+\.\d{3}\t[01]\t[01]")


@pytest.fixture(scope="module")
def folder() -> Path:
    """The default set (seed 0, 30 patients), built once through the cache."""
    return synthetic_dir()


@pytest.fixture(scope="module")
def cycles(folder: Path) -> pd.DataFrame:
    """One row per cycle, read straight from the files (independent of cyclelib.data's readers)."""
    split = dict(
        line.split("\t") for line in (folder / synthetic.SPLIT_FILE).read_text().splitlines()
    )
    rows = []
    for wav in sorted(folder.glob("*.wav")):
        table = np.loadtxt(wav.with_suffix(".txt"), ndmin=2)
        for start, end, crackle, wheeze in table:
            label = int(crackle) + 2 * int(wheeze)
            rows.append((wav.stem, int(wav.stem[:3]), split[wav.stem], start, end, label))
    return pd.DataFrame(rows, columns=["recording", "patient", "split", "start", "end", "label"])


def _segments(folder: Path, cycles: pd.DataFrame, label: int):
    """(samples, sample_rate) of every cycle with ``label``, read at the native rate."""
    for name, group in cycles[cycles.label == label].groupby("recording"):
        x, sr = sf.read(folder / f"{name}.wav")
        for start, end in zip(group.start, group.end, strict=True):
            yield x[round(start * sr) : round(end * sr)], sr


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = make_synthetic_icbhi(tmp_path / "a", seed=7, patients=3)
    b = make_synthetic_icbhi(tmp_path / "b", seed=7, patients=3)
    c = make_synthetic_icbhi(tmp_path / "c", seed=8, patients=3)
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(p.name for p in b.iterdir())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert files != sorted(p.name for p in c.iterdir()) or any(
        (a / f).read_bytes() != (c / f).read_bytes() for f in files
    )


def test_refuses_bad_arguments(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        make_synthetic_icbhi(tmp_path)
    with pytest.raises(ValueError, match="patients must be >= 3"):
        make_synthetic_icbhi(tmp_path / "new", patients=2)


def test_audio_formats(folder: Path) -> None:
    formats = set()
    for wav in folder.glob("*.wav"):
        info = sf.info(wav)
        device = NAME.fullmatch(wav.stem).group(5)
        assert (info.samplerate, info.subtype) in DEVICES[device][0] or info.subtype == "PCM_32"
        assert info.channels == 1 and info.format == "WAV"
        assert 15.0 <= info.duration <= 30.0
        formats.add((info.samplerate, info.subtype))
    assert {(44100, "PCM_16"), (44100, "PCM_24"), (44100, "PCM_32")} <= formats
    assert {(4000, "PCM_16"), (10000, "PCM_16")} <= formats


def test_annotation_and_metadata_files(folder: Path, cycles: pd.DataFrame) -> None:
    stems = {p.stem for p in folder.glob("*.wav")}
    assert {p.stem for p in folder.glob("*.txt")} == stems | {
        "ICBHI_challenge_train_test", "ICBHI_Challenge_diagnosis",
        "ICBHI_Challenge_demographic_information", "filename_format",
    }
    for stem in stems:
        match = NAME.fullmatch(stem)
        assert match and int(match.group(1)) >= 301 and match.group(5) in DEVICES
        text = (folder / f"{stem}.txt").read_bytes().decode()
        assert "\r" not in text and all(LINE.fullmatch(x) for x in text.splitlines())
    for _, rec in cycles.groupby("recording"):
        assert np.allclose(rec.start.to_numpy()[1:], rec.end.to_numpy()[:-1])  # consecutive
        assert ((rec.end - rec.start).between(1.5, 6.0)).all()
    split = (folder / "ICBHI_challenge_train_test.txt").read_bytes()
    assert split.endswith(b"\r\n") and split.count(b"\r\n") == len(stems)
    assert {x.split(b"\t")[0].decode() for x in split.splitlines()} == stems
    patients = set(cycles.patient)
    diagnosis = (folder / "ICBHI_Challenge_diagnosis.txt").read_text().splitlines()
    assert {int(x.split("\t")[0]) for x in diagnosis} == patients
    demographics = (folder / "ICBHI_Challenge_demographic_information.txt").read_bytes()
    rows = [x.split(b"\t") for x in demographics.split(b"\r\n")[:-1]]
    assert all(len(r) == 6 for r in rows) and any(b"NA" in r for r in rows)
    assert {int(r[0]) for r in rows} == patients


def test_size_and_class_balance(cycles: pd.DataFrame) -> None:
    assert cycles.patient.nunique() == 30
    assert 50 <= cycles.recording.nunique() <= 70
    assert 400 <= len(cycles) <= 600
    for _, side in cycles.groupby("split"):
        fractions = np.bincount(side.label, minlength=4) / len(side)
        np.testing.assert_allclose(fractions, CLASS_FRACTIONS, atol=0.02)
    # Per-patient tendency: patients differ far more than independent draws would make them.
    normal = cycles.groupby("patient").label.apply(lambda s: np.mean(s == 0))
    assert normal.max() - normal.min() > 0.6


def test_split_by_patient_with_one_on_both_sides(cycles: pd.DataFrame) -> None:
    sides = cycles.groupby("patient").split.agg(set)
    both = sides[sides.map(len) == 2]
    assert len(both) == 1
    test_patients = sum(s == {"test"} for s in sides)
    assert 0.3 <= test_patients / len(sides) <= 0.5
    recordings = cycles[cycles.patient == both.index[0]].groupby("recording").split.first()
    assert set(recordings) == {"train", "test"}


@pytest.mark.parametrize("sample_rate", [4000, 10000, 11025])
def test_crackle_is_a_short_transient(sample_rate: int) -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        x = synthetic.crackle(sample_rate, rng)
        assert len(x) < 0.020 * sample_rate and np.abs(x).max() == pytest.approx(1.0)
        energy = np.cumsum(x**2) / np.sum(x**2)
        assert np.searchsorted(energy, 0.5) < len(x) / 2  # damped: energy up front


def test_crackles_stand_out_of_breath_noise(folder: Path, cycles: pd.DataFrame) -> None:
    def crest(label: int) -> float:
        return np.median([np.abs(x).max() / x.std() for x, _ in _segments(folder, cycles, label)])

    assert crest(1) > 1.5 * crest(0)
    assert crest(3) > 1.5 * crest(2)


def _tone(x: np.ndarray, sr: int) -> tuple[float, float]:
    """(frequency, seconds) of the strongest 100-1000 Hz tone and its longest run in the cycle.

    A frame counts when over 40 % of its 100-1000 Hz energy lies within 10 % of that frequency.
    """
    f, _, z = stft(x, sr, nperseg=int(0.05 * sr), noverlap=int(0.03 * sr))  # hop 20 ms
    power = np.abs(z) ** 2
    band = (f >= 100) & (f <= 1000)
    f0 = f[band][power[band].mean(axis=1).argmax()]
    near = np.abs(f - f0) <= 0.1 * f0 + f[1]
    on = np.r_[0, power[near].sum(axis=0) / power[band].sum(axis=0) > 0.4, 0]
    edges = np.flatnonzero(np.diff(on))
    return f0, float(np.max(edges[1::2] - edges[::2], initial=0)) * 0.02


def test_wheezes_are_sustained_tones(folder: Path, cycles: pd.DataFrame) -> None:
    for x, sr in _segments(folder, cycles, 2):
        f0, seconds = _tone(x, sr)
        assert 100 <= f0 <= 1000 and seconds > 0.1
        f, p = welch(x, sr, nperseg=int(0.1 * sr))
        assert 100 <= f[p.argmax()] <= 1000  # the fundamental is the spectrum's peak
    assert all(_tone(x, sr)[1] < 0.1 for x, sr in _segments(folder, cycles, 0))


def test_wheeze_building_block() -> None:
    rng = np.random.default_rng(1)
    x = synthetic.wheeze(4000, 0.3, rng)
    assert len(x) == 1200
    f, p = welch(x, 4000, nperseg=400)
    assert 150 <= f[p.argmax()] <= 850  # fundamental strongest, below Nyquist at 4 kHz


def test_synthetic_dir_is_cached_and_atomic(folder: Path) -> None:
    stamp = (folder / synthetic.SPLIT_FILE).stat().st_mtime_ns
    assert synthetic_dir() == folder and folder.name == f"seed0-{synthetic.VERSION}"
    assert (folder / synthetic.SPLIT_FILE).stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_is_synthetic_by_patient_numbers(folder: Path, tmp_path: Path) -> None:
    assert is_synthetic(folder) and not is_synthetic(tmp_path)  # an empty folder is not
    (tmp_path / "226_1b1_Pl_sc_LittC2SE.txt").write_text("0.1\t1.0\t0\t0\n")  # a real patient
    (tmp_path / "301_1b1_Pl_sc_LittC2SE.txt").write_text("0.1\t1.0\t0\t0\n")
    assert not is_synthetic(tmp_path)


def test_real_loader_accepts_the_set(folder: Path, cycles: pd.DataFrame) -> None:
    from cyclelib.data import check_data

    report = check_data(folder)
    assert report["problems"] == []
    assert report["cycles"] == len(cycles) and report["missing_audio"] == 0
    for side, group in cycles.groupby("split"):
        assert report["split"][side]["both"] == int(np.sum(group.label == 3))
