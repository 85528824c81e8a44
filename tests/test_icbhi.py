"""The ICBHI files and the folder scan (DESIGN §2): names, strict annotations, split aliases,
one-pass problems."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from cyclelib.data import DataError, check_data, load_icbhi, parse_recording_name, scan_icbhi
from cyclelib.data.icbhi import END_TOLERANCE_S, SPLIT_FILE, read_annotation, read_demographics

A, B, C = "101_1b1_Al_sc_Meditron", "102_1b1_Ar_sc_LittC2SE", "103_2b2_Tc_mc_AKGC417L"
CYCLE_COLUMNS = [
    "recording", "patient", "location", "mode", "device", "cycle", "start", "end",
    "crackle", "wheeze", "label", "split", "sample_rate", "has_audio",
]  # fmt: skip


def write_wav(path: Path, seconds: float, rate: int = 4000) -> None:
    noise = np.random.default_rng(0).standard_normal(int(seconds * rate)) * 0.1
    sf.write(path, noise, rate, subtype="PCM_16")


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """Three recordings like the official layout: A and C with audio, B annotation-only whose
    split entry carries the pre-correction device name; plus stray text files."""
    (tmp_path / f"{A}.txt").write_text("0.5\t1.5\t0\t0\n1.5\t2.5\t1\t0\n")
    (tmp_path / f"{B}.txt").write_text("0.1\t2.0\t0\t1\n")
    (tmp_path / f"{C}.txt").write_text("0.2\t1.0\t1\t1\n1.0\t2.9\t0\t0\n")
    write_wav(tmp_path / f"{A}.wav", 3.0)
    write_wav(tmp_path / f"{C}.wav", 3.0, rate=44100)
    split = f"{A}\ttrain\r\n102_1b1_Ar_sc_Meditron\ttrain\r\n{C}\ttest\r\n"
    (tmp_path / SPLIT_FILE).write_bytes(split.encode())
    (tmp_path / "ICBHI_Challenge_diagnosis.txt").write_text("101\tURTI\n102\tCOPD\n103\tHealthy\n")
    (tmp_path / "ICBHI_Challenge_demographic_information.txt").write_text(
        "101\t3\tF\tNA\t19\t99\n102\t70\tM\t28.5\tNA\tNA\n103\tNA\tNA\tNA\tNA\tNA\n"
    )
    for stray in ("filename_format.txt", "filename_differences.txt", "README.md", "readme.txt"):
        (tmp_path / stray).write_text("not\tan annotation\n1 2 3\n")
    (tmp_path / "patient_diagnosis.csv").write_text("ID,CLASS\n101,URTI\n")
    return tmp_path


@pytest.mark.parametrize(
    "name, fields",
    [
        ("101_1b1_Al_sc_Meditron", (101, "1b1", "Al", "sc", "Meditron")),
        ("226_1p1_Pl_mc_LittC2SE", (226, "1p1", "Pl", "mc", "LittC2SE")),
        ("104_3b4_Lr_sc_Litt3200", (104, "3b4", "Lr", "sc", "Litt3200")),
        ("160_1b2_Tc_mc_AKGC417L", (160, "1b2", "Tc", "mc", "AKGC417L")),
    ],
)
def test_parse_recording_name(name: str, fields: tuple) -> None:
    parsed = parse_recording_name(name)
    assert (parsed.patient, parsed.index, parsed.location, parsed.mode, parsed.device) == fields
    assert parsed.recording == name
    assert parsed.prefix == name.rsplit("_", 1)[0]


@pytest.mark.parametrize(
    "name",
    ["101_1b1_Al_sc_Stetho", "101_1b1_Xx_sc_Meditron", "101_1b1_Al_zz_Meditron",
     "101_1b1_Al_sc", "101_1b1_Al_sc_Meditron_extra", "filename_format", ""],
)  # fmt: skip
def test_parse_recording_name_rejects(name: str) -> None:
    with pytest.raises(ValueError, match="is not a recording name"):
        parse_recording_name(name)


def test_scan_tiny_folder(tiny: Path) -> None:
    data = scan_icbhi(tiny)
    assert data.problems == []
    assert list(data.cycles.columns) == CYCLE_COLUMNS
    assert data.aliases == {"102_1b1_Ar_sc_Meditron": B}
    c = data.cycles
    assert c["recording"].tolist() == [A, A, B, C, C]
    assert c["cycle"].tolist() == [0, 1, 0, 0, 1]
    assert c["label"].tolist() == [0, 1, 2, 3, 0]
    assert c["split"].tolist() == ["train", "train", "train", "test", "test"]
    assert c["sample_rate"].tolist() == [4000, 4000, 0, 44100, 44100]
    assert c["has_audio"].tolist() == [True, True, False, True, True]
    assert c["start"].tolist() == [0.5, 1.5, 0.1, 0.2, 1.0]
    assert data.diagnosis["diagnosis"].tolist() == ["URTI", "COPD", "Healthy"]

    report = check_data(tiny)
    assert json.loads(json.dumps(report)) == report
    assert report["recordings"] == 3 and report["recordings_with_audio"] == 2
    assert report["cycles"] == 5 and report["missing_audio"] == 1 and report["problems"] == []
    assert report["split"]["train"] == dict(
        recordings=2, cycles=3, normal=1, crackle=1, wheeze=1, both=0
    )
    assert report["split"]["test"] == dict(
        recordings=1, cycles=2, normal=1, crackle=0, wheeze=0, both=1
    )
    assert load_icbhi(tiny).cycles.equals(data.cycles)


def test_demographics_missing_values(tiny: Path) -> None:
    table, problems = read_demographics(tiny / "ICBHI_Challenge_demographic_information.txt")
    assert problems == []
    first, second, third = table.to_dict("records")
    assert first["age"] == 3 and first["sex"] == "F" and np.isnan(first["adult_bmi"])
    assert first["child_height"] == 99 and second["adult_bmi"] == 28.5
    assert pd.isna(third["sex"]) and np.isnan(third["age"])


def test_annotation_tolerates_crlf_bom_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / f"{A}.txt"
    path.write_bytes(b"\xef\xbb\xbf0.5 1.5\t0\t1  \r\n\r\n1.5  2.5 1 0\r\n  \r\n\n")
    rows, problems = read_annotation(path, duration=3.0)
    assert problems == []
    np.testing.assert_array_equal(rows, [[0.5, 1.5, 0, 1], [1.5, 2.5, 1, 0]])


@pytest.mark.parametrize(
    "line, message",
    [
        ("0.5\t1.5\t0", "expected 4 columns (start end crackle wheeze), found 3"),
        ("0.5\t1.5\t0\t0\t1", "found 5"),
        ("abc\t1.5\t0\t0", "start time 'abc' is not a number"),
        ("0.5\tnan\t0\t0", "end time 'nan' is not a finite number"),
        ("1.5\t1.5\t0\t0", "start 1.5 is not before end 1.5"),
        ("2.0\t1.0\t0\t0", "is not before end"),
        ("-0.5\t1.0\t0\t0", "negative start time"),
        ("0.5\t1.5\t2\t0", "crackle flag '2' must be 0 or 1"),
        ("0.5\t1.5\t0\tyes", "wheeze flag 'yes' must be 0 or 1"),
        ("0.5\t3.2\t0\t0", f"beyond the recording's 3.000 s of audio (tolerance {END_TOLERANCE_S}"),
    ],
)
def test_annotation_errors_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / f"{A}.txt"
    path.write_text(f"0.1\t0.4\t0\t0\n\n{line}\n2.0\t2.5\t0\t0\n")
    rows, problems = read_annotation(path, duration=3.0)
    assert len(problems) == 1 and len(rows) == 2
    assert problems[0].file == str(path) and problems[0].line == 3
    assert message in problems[0].message
    assert str(problems[0]).startswith(f"{path}:3: ")


def test_annotation_end_within_tolerance(tmp_path: Path) -> None:
    path = tmp_path / f"{A}.txt"
    path.write_text(f"0.5\t{3.0 + END_TOLERANCE_S / 2}\t0\t0\n")
    assert read_annotation(path, duration=3.0)[1] == []


@pytest.mark.parametrize("content", [b"", b"\r\n  \n", b"\xef\xbb\xbf"])
def test_empty_annotation_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / f"{A}.txt"
    path.write_bytes(content)
    rows, problems = read_annotation(path)
    assert rows.shape == (0, 4)
    assert [(p.file, p.line) for p in problems] == [(str(path), None)]
    assert "empty annotation file" in problems[0].message


def test_scan_collects_every_problem(tiny: Path) -> None:
    (tiny / f"{A}.txt").write_text("0.5\t1.5\t0\n1.5\t2.5\t1\t0\n0.1\t9.0\t0\t0\n")  # 2 bad
    (tiny / f"{B}.txt").write_text("")
    (tiny / "104_1b1_Al_sc_Litt3200.wav").write_bytes((tiny / f"{A}.wav").read_bytes())
    wav = (tiny / f"{C}.wav").read_bytes()
    (tiny / f"{C}.wav").write_bytes(wav[: len(wav) // 2])  # truncated
    split = f"{A}\ttrain\r\n{B}\tvalidation\r\n999_1b1_Al_sc_Meditron\ttest\r\n{A}\ttest\r\n"
    (tiny / SPLIT_FILE).write_text(split)
    data = scan_icbhi(tiny)
    found = {(Path(p.file).name, p.line) for p in data.problems}
    assert found == {
        (f"{A}.txt", 1),  # 3 columns
        (f"{A}.txt", 3),  # end beyond the 3 s recording
        (f"{B}.txt", None),  # empty
        ("104_1b1_Al_sc_Litt3200.wav", None),  # audio without annotation
        (f"{C}.wav", None),  # truncated
        (SPLIT_FILE, 2),  # "validation"
        (SPLIT_FILE, 3),  # unknown recording
        (SPLIT_FILE, 4),  # second entry for A
        (SPLIT_FILE, None),  # B and C have no valid entry
    }
    messages = "\n".join(str(p) for p in data.problems)
    assert "split 'validation' must be 'train' or 'test'" in messages
    assert "unknown recording 999_1b1_Al_sc_Meditron" in messages
    assert "truncated WAV file" in messages and "audio without an annotation file" in messages
    with pytest.raises(DataError) as err:
        data.raise_on_problems()
    assert isinstance(err.value, ValueError)
    assert f"{tiny / SPLIT_FILE}:2: split 'validation'" in str(err.value)
    assert f"{tiny / (A + '.txt')}:1: expected 4 columns" in str(err.value)
    assert len(check_data(tiny)["problems"]) == len(data.problems)


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty file"), (b"this is not audio at all", "not a WAV file")],
)
def test_scan_reports_bad_wav(tiny: Path, content: bytes, message: str) -> None:
    (tiny / f"{A}.wav").write_bytes(content)
    data = scan_icbhi(tiny)
    assert [(Path(p.file).name, p.line) for p in data.problems] == [(f"{A}.wav", None)]
    assert message in data.problems[0].message
    assert not data.recordings.set_index("recording").loc[A, "has_audio"]


def test_scan_missing_folder_and_split(tmp_path: Path, tiny: Path) -> None:
    missing = check_data(tmp_path / "nope")["problems"]
    assert [p["message"] for p in missing] == ["data folder not found"]
    (tmp_path / "empty").mkdir()
    empty = check_data(tmp_path / "empty")["problems"]
    assert len(empty) == 1 and "no annotation files" in empty[0]["message"]
    (tiny / SPLIT_FILE).unlink()
    problems = check_data(tiny)["problems"]
    assert [p["message"] for p in problems] == ["official split file not found"]


def test_metadata_problems(tiny: Path) -> None:
    (tiny / "ICBHI_Challenge_diagnosis.txt").write_text("101\tURTI\nxx\tCOPD\n101\tCOPD\n")
    problems = scan_icbhi(tiny).problems
    assert [(p.line, p.message) for p in problems] == [
        (2, "patient 'xx' is not a valid value"),
        (3, "second entry for patient 101"),
        (None, "no entry for patient(s) [102, 103]"),
    ]


def test_real_icbhi_counts(icbhi_dir: Path) -> None:
    started = time.perf_counter()
    report = check_data(icbhi_dir)
    elapsed = time.perf_counter() - started
    assert report["problems"] == []
    assert report["recordings"] == 920 and report["cycles"] == 6898
    assert report["recordings_with_audio"] == 133 and report["missing_audio"] == 787
    assert report["split"]["train"] == dict(
        recordings=539, cycles=4142, normal=2063, crackle=1215, wheeze=501, both=363
    )
    assert report["split"]["test"] == dict(
        recordings=381, cycles=2756, normal=1579, crackle=649, wheeze=385, both=143
    )
    assert report["aliases"]["226_1b1_Pl_sc_Meditron"] == "226_1b1_Pl_sc_LittC2SE"
    assert elapsed < 10, f"scanning the real folder took {elapsed:.1f} s"


def test_real_icbhi_tables(icbhi_dir: Path) -> None:
    data = load_icbhi(icbhi_dir)
    cycles, recordings = data.cycles, data.recordings
    assert cycles["patient"].nunique() == 126 and len(data.diagnosis) == 126
    assert len(data.demographics) == 126
    assert recordings.groupby("split")["patient"].nunique().to_dict() == {"test": 49, "train": 79}
    both = set(cycles.loc[cycles.split == "train", "patient"]) & set(
        cycles.loc[cycles.split == "test", "patient"]
    )
    assert both == {156, 218}
    assert (cycles["end"] > cycles["start"]).all()
    assert cycles.groupby("recording")["start"].apply(lambda s: s.is_monotonic_increasing).all()
    rates = recordings.loc[recordings.has_audio, "sample_rate"].value_counts().to_dict()
    assert rates == {44100: 80, 4000: 47, 10000: 6}
