"""The full-size synthetic set (``cyclelib synth --like-icbhi``): the shipped table of ICBHI's
facts, and the generator on a few patients (seconds; nothing here writes the 2 GB set)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf

from cyclelib.cli import main
from cyclelib.data import check_data
from cyclelib.data.synthetic import is_synthetic
from cyclelib.data.synthetic_full import (
    FACTS_FILE,
    facts_from_icbhi,
    load_facts,
    make_full_synthetic_icbhi,
    synthetic_name,
)

# 218 has recordings on both sides (4 kHz), 226 the split file's device alias, 223 the 10 kHz
# recordings, 101 the 32-bit one
SUBSET = [101, 218, 223, 226]
OFFICIAL = {"train": (539, 4142, (2063, 1215, 501, 363)),
            "test": (381, 2756, (1579, 649, 385, 143))}


def _expected(patients: list[int] | None = None) -> dict:
    """Per split: (recordings, cycles, counts per class) of the shipped table's ``patients``."""
    recordings, _, _ = load_facts()
    out = {}
    for split in OFFICIAL:
        chosen = [r for r in recordings if r.split == split
                  and (patients is None or int(r.name[:3]) in patients)]
        labels = Counter(label for r in chosen for _, _, label in r.cycles)
        out[split] = (len(chosen), labels.total(), tuple(labels[k] for k in range(4)))
    return out


def test_shipped_table_has_icbhis_shape() -> None:
    recordings, aliases, diagnosis = load_facts()
    assert FACTS_FILE.stat().st_size < 100_000  # well under 1 MB
    assert _expected() == OFFICIAL
    assert len(recordings) == 920 and len(diagnosis) == 126
    assert {int(r.name[:3]) for r in recordings} == set(diagnosis)
    both = {p for p in diagnosis if len({r.split for r in recordings if int(r.name[:3]) == p}) == 2}
    assert both == {156, 218}
    rates = Counter(r.sample_rate for r in recordings)
    assert rates == {44100: 824, 4000: 90, 10000: 6}
    assert {r.subtype for r in recordings} == {"PCM_16", "PCM_24", "PCM_32"}
    assert aliases == {"226_1b1_Pl_sc_Meditron": "226_1b1_Pl_sc_LittC2SE"}
    hours = sum(r.frames / r.sample_rate for r in recordings) / 3600
    assert 5.3 < hours < 5.7  # "5.5 hours"
    assert all(r.frames >= round(r.cycles[-1][1] * r.sample_rate) for r in recordings)


def test_shipped_table_matches_the_real_annotations(icbhi_dir: Path) -> None:
    recordings, aliases, diagnosis = load_facts()
    facts = facts_from_icbhi(icbhi_dir)
    assert [r.name for r in recordings] == [row[0] for row in facts["recordings"]]
    assert [[r.split, r.sample_rate, r.subtype, r.frames, [list(c) for c in r.cycles]]
            for r in recordings] == [row[1:] for row in facts["recordings"]]
    assert aliases == facts["aliases"]
    assert diagnosis == {int(p): d for p, d in facts["diagnosis"].items()}


@pytest.fixture(scope="module")
def subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SUBSET written by the command, in a process that sees no real ICBHI folder."""
    out = tmp_path_factory.mktemp("full") / "set"
    env = {**os.environ, "CYCLELIB_ICBHI": str(out.parent / "no-icbhi-here")}
    command = [sys.executable, "-m", "cyclelib.cli", "synth", str(out), "--like-icbhi",
               "--seed", "3", "--workers", "2", "--patients-subset", *map(str, SUBSET)]
    done = subprocess.run(command, env=env, cwd=out.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "SYNTHETIC" in done.stdout and "MB on disk" in done.stdout
    return out


def test_subset_counts_formats_and_label(subset: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["check-data", str(subset)]) == 0
    assert capsys.readouterr().out.startswith("SYNTHETIC set (not ICBHI 2017 recordings)")
    report = check_data(subset)
    assert report["problems"] == [] and report["synthetic"] and is_synthetic(subset)
    got = {s: (v["recordings"], v["cycles"], (v["normal"], v["crackle"], v["wheeze"], v["both"]))
           for s, v in report["split"].items()}
    assert got == _expected(SUBSET)
    assert report["aliases"] == {"426_1b1_Pl_sc_Meditron": "426_1b1_Pl_sc_LittC2SE"}
    recordings, _, _ = load_facts()
    for r in recordings:
        if int(r.name[:3]) in SUBSET:
            info = sf.info(subset / f"{synthetic_name(r.name)}.wav")
            assert (info.samplerate, info.subtype) == (r.sample_rate, r.subtype)
            assert abs(info.frames - r.frames) <= 4  # 44.1 kHz audio is made at 11,025 Hz
    assert "SYNTHETIC" in (subset / "README_SYNTHETIC.txt").read_text()


def test_bytes_depend_on_the_seed_only(subset: Path, tmp_path: Path) -> None:
    one = make_full_synthetic_icbhi(tmp_path / "one", seed=3, patients=[223], workers=1)
    other = make_full_synthetic_icbhi(tmp_path / "other", seed=4, patients=[223], workers=1)
    wavs = sorted(p.name for p in one.glob("*.wav"))
    assert len(wavs) == 6
    assert all((one / w).read_bytes() == (subset / w).read_bytes() for w in wavs)
    assert all((one / w).read_bytes() != (other / w).read_bytes() for w in wavs)


def test_refuses_unknown_patients_and_full_folders(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown ICBHI patient"):
        make_full_synthetic_icbhi(tmp_path / "a", patients=[301])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        make_full_synthetic_icbhi(tmp_path / "b", patients=[101])


def test_command_refuses_mixed_options(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["synth", str(tmp_path / "a"), "--like-icbhi", "--patients", "5"]) == 1
    assert main(["synth", str(tmp_path / "b"), "--patients-subset", "101"]) == 1
    assert "--patients-subset needs --like-icbhi" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
