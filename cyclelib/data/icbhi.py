"""The ICBHI 2017 database on disk: names, annotations, the official split, metadata (DESIGN §2).

:func:`scan_icbhi` reads a folder laid out like the official download (``{recording}.wav`` and
``{recording}.txt`` side by side, plus the split, diagnosis and demographics files) in one pass
and collects *every* problem it finds, each naming its file and line, instead of stopping at the
first. :func:`check_data` turns the result into the JSON report of ``cyclelib check-data``;
:func:`load_icbhi` raises :class:`DataError` for callers that need clean data.

Joins use the device-independent prefix ``{patient}_{index}_{location}_{mode}`` because the
owners renamed the device of some files after the challenge (DESIGN §2): the split's
``226_1b1_Pl_sc_Meditron`` is the file ``226_1b1_Pl_sc_LittC2SE``; such aliases are recorded.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from dataclasses import asdict, astuple, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cyclelib.audio import AudioError, wav_info
from cyclelib.constants import CLASS_NAMES

DEVICES = ("AKGC417L", "Meditron", "LittC2SE", "Litt3200")
LOCATIONS = ("Tc", "Al", "Ar", "Pl", "Pr", "Ll", "Lr")
MODES = ("sc", "mc")  # single channel / multichannel acquisition
SPLITS = ("train", "test")
SPLIT_FILE = "ICBHI_challenge_train_test.txt"
DIAGNOSIS_FILE = "ICBHI_Challenge_diagnosis.txt"
DEMOGRAPHICS_FILE = "ICBHI_Challenge_demographic_information.txt"
DEMOGRAPHIC_COLUMNS = ("patient", "age", "sex", "adult_bmi", "child_weight", "child_height")
END_TOLERANCE_S = 0.05  # an annotated end may pass the audio's end by this much (rounding)
_RECORDING_COLUMNS = [  # ICBHI.recordings; "cycles" counts its annotated cycles
    "recording", "patient", "index", "location", "mode", "device", "split", "cycles",
    "has_audio", "sample_rate", "duration", "subtype",
]  # fmt: skip
_NAME = re.compile(
    rf"(\d+)_(\d+[a-z]\d+)_({'|'.join(LOCATIONS)})_({'|'.join(MODES)})_({'|'.join(DEVICES)})"
)


@dataclass(frozen=True)
class RecordingName:
    """The fields of a recording name ``{patient}_{index}_{location}_{mode}_{device}``."""

    recording: str
    patient: int
    index: str
    location: str
    mode: str
    device: str

    @property
    def prefix(self) -> str:
        """``{patient}_{index}_{location}_{mode}``: unique per recording, whatever the device."""
        return self.recording.rsplit("_", 1)[0]


def parse_recording_name(name: str) -> RecordingName:
    """Parse a recording name (file stem) such as ``101_1b1_Al_sc_Meditron``; ValueError if not."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise ValueError(
            f"{name!r} is not a recording name {{patient}}_{{index}}_{{location}}_{{mode}}_"
            f"{{device}} (locations {'/'.join(LOCATIONS)}, modes {'/'.join(MODES)}, "
            f"devices {'/'.join(DEVICES)})"
        )
    patient, index, location, mode, device = match.groups()
    return RecordingName(name, int(patient), index, location, mode, device)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the data: its file, its 1-based line (None: the whole file), why."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"


class DataError(ValueError):
    """The data folder has problems; the message lists them as ``file:line: message``."""

    def __init__(self, problems: list[Problem], shown: int = 50) -> None:
        lines = [str(p) for p in problems[:shown]]
        if len(problems) > shown:
            lines.append(f"... and {len(problems) - shown} more")
        super().__init__(f"{len(problems)} data problem(s):\n" + "\n".join(lines))
        self.problems = problems


def _text_lines(path: Path, problems: list[Problem]) -> list[tuple[int, list[str]]]:
    """The non-blank lines of a text file as (line number, whitespace-split fields).

    Tolerates CRLF, a UTF-8 byte-order mark and trailing blanks; undecodable text is a problem.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        message = f"not UTF-8 text ({err.reason} at byte {err.start})"
        problems.append(Problem(str(path), None, message))
        return []
    lines = ((number, line.split()) for number, line in enumerate(text.splitlines(), start=1))
    return [(number, fields) for number, fields in lines if fields]


def _cycle_row(fields: list[str], duration: float | None) -> tuple[float, float, int, int] | str:
    """One annotation line as (start, end, crackle, wheeze), or what is wrong with it."""
    if len(fields) != 4:
        return f"expected 4 columns (start end crackle wheeze), found {len(fields)}"
    times = []
    for name, text in zip(("start", "end"), fields[:2], strict=True):
        try:
            value = float(text)
        except ValueError:
            return f"{name} time {text!r} is not a number"
        if not math.isfinite(value):
            return f"{name} time {text!r} is not a finite number"
        times.append(value)
    start, end = times
    if start < 0:
        return f"negative start time {start}"
    if start >= end:
        return f"start {start} is not before end {end}"
    if duration is not None and end > duration + END_TOLERANCE_S:
        return (
            f"end {end} s is beyond the recording's {duration:.3f} s of audio "
            f"(tolerance {END_TOLERANCE_S} s)"
        )
    for name, text in zip(("crackle", "wheeze"), fields[2:], strict=True):
        if text not in ("0", "1"):
            return f"{name} flag {text!r} must be 0 or 1"
    return start, end, int(fields[2]), int(fields[3])


def read_annotation(
    path: str | Path, duration: float | None = None
) -> tuple[np.ndarray, list[Problem]]:
    """Read a ``{recording}.txt``: exactly four numeric columns ``start end crackle wheeze``.

    ``duration`` (seconds of audio, when known) bounds the end times. Returns the valid rows as
    float64 ``(cycles, 4)`` sorted by start, and a problem for each bad line (and for a file
    without cycles).
    """
    path, problems, rows = Path(path), [], []
    for number, fields in _text_lines(path, problems):
        row = _cycle_row(fields, duration)
        if isinstance(row, str):
            problems.append(Problem(str(path), number, row))
        else:
            rows.append(row)
    if not rows and not problems:
        problems.append(Problem(str(path), None, "empty annotation file (no cycles)"))
    table = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return table[np.argsort(table[:, 0], kind="stable")], problems


def read_split(
    path: str | Path, prefixes: dict[str, str]
) -> tuple[dict[str, str], dict[str, str], list[Problem]]:
    """Read the official split (``name<TAB>train|test`` per line), joined on the name prefix.

    ``prefixes`` maps each annotated recording's prefix to its name. Returns ``{recording:
    split}``, the aliases ``{name in the split file: recording}`` where the device differs, and
    the problems (unknown recordings, values other than train/test, repeated or missing
    entries).
    """
    path, problems = Path(path), []
    splits: dict[str, str] = {}
    aliases: dict[str, str] = {}
    for number, fields in _text_lines(path, problems):
        message = None
        if len(fields) != 2:
            message = f"expected 2 columns (recording, train|test), found {len(fields)}"
        elif fields[1] not in SPLITS:
            message = f"split {fields[1]!r} must be 'train' or 'test'"
        elif _NAME.fullmatch(fields[0]) is None:
            message = f"{fields[0]!r} is not a recording name"
        elif (stem := prefixes.get(parse_recording_name(fields[0]).prefix)) is None:
            message = f"unknown recording {fields[0]}: no annotation file has its prefix"
        elif stem in splits:
            message = f"second entry for recording {stem}"
        else:
            splits[stem] = fields[1]
            if fields[0] != stem:
                aliases[fields[0]] = stem
        if message is not None:
            problems.append(Problem(str(path), number, message))
    for stem in sorted(set(prefixes.values()) - set(splits)):
        problems.append(Problem(str(path), None, f"no entry for recording {stem}"))
    return splits, aliases, problems


def _field(column: str, text: str) -> int | float | str | None:
    """A metadata value: int patient, text diagnosis, M/F sex, else float; "NA" is missing."""
    if column == "diagnosis":
        return text
    if text == "NA" and column != "patient":
        return None if column == "sex" else math.nan
    if column == "sex" and text in ("M", "F"):
        return text
    with contextlib.suppress(ValueError):
        if column != "sex":
            return int(text) if column == "patient" else float(text)
    raise ValueError(f"{column} {text!r} is not a valid value")


def _read_table(path: Path, columns: tuple[str, ...]) -> tuple[pd.DataFrame, list[Problem]]:
    """A per-patient metadata file: one line per patient with ``columns``."""
    problems: list[Problem] = []
    records: dict[int, list] = {}
    for number, fields in _text_lines(path, problems):
        try:
            if len(fields) != len(columns):
                expected = f"expected {len(columns)} columns ({', '.join(columns)})"
                raise ValueError(f"{expected}, found {len(fields)}")
            values = [_field(column, text) for column, text in zip(columns, fields, strict=True)]
            if values[0] in records:
                raise ValueError(f"second entry for patient {values[0]}")
        except ValueError as err:
            problems.append(Problem(str(path), number, str(err)))
            continue
        records[values[0]] = values
    table = pd.DataFrame(list(records.values()), columns=list(columns))
    return table.astype({"patient": "int64"}), problems


def read_diagnosis(path: str | Path) -> tuple[pd.DataFrame, list[Problem]]:
    """``ICBHI_Challenge_diagnosis.txt`` (patient<TAB>diagnosis) as columns patient, diagnosis."""
    return _read_table(Path(path), ("patient", "diagnosis"))


def read_demographics(path: str | Path) -> tuple[pd.DataFrame, list[Problem]]:
    """The demographics file as columns patient, age (years), sex (M/F), adult_bmi (kg/m²),
    child_weight (kg), child_height (cm); the marker "NA" becomes a missing value (NaN)."""
    return _read_table(Path(path), DEMOGRAPHIC_COLUMNS)


@dataclass
class ICBHI:
    """A scanned ICBHI folder (DESIGN §2).

    ``cycles``: one row per respiratory cycle in recording-then-time order, columns recording,
    patient, location, mode, device, cycle (index in its recording), start, end (s), crackle,
    wheeze (0/1), label (crackle + 2·wheeze), split (train/test), sample_rate (native; 0 without
    audio), has_audio. ``recordings``: one row per annotated recording (name fields, split,
    cycles, has_audio, sample_rate, duration, subtype).
    """

    data_dir: Path
    cycles: pd.DataFrame  # one row per respiratory cycle, recording-then-time order
    recordings: pd.DataFrame  # one row per annotated recording
    aliases: dict[str, str]  # split-file name -> recording name, where the device differs
    problems: list[Problem]
    diagnosis: pd.DataFrame = field(default_factory=pd.DataFrame)  # patient, diagnosis
    demographics: pd.DataFrame = field(default_factory=pd.DataFrame)  # see read_demographics

    def raise_on_problems(self) -> ICBHI:
        """Return self when clean; otherwise raise :class:`DataError` listing the problems."""
        if self.problems:
            raise DataError(self.problems)
        return self

    def report(self) -> dict:
        """The JSON-able report of ``cyclelib check-data`` (the :func:`check_data` contract)."""
        split = {}
        for name in SPLITS:
            labels = self.cycles.loc[self.cycles["split"] == name, "label"].to_numpy()
            counts = np.bincount(labels.astype(np.int64), minlength=len(CLASS_NAMES))
            split[name] = {
                "recordings": int((self.recordings["split"] == name).sum()),
                "cycles": len(labels),
                **{label: int(count) for label, count in zip(CLASS_NAMES, counts, strict=True)},
            }
        with_audio = int(self.recordings["has_audio"].sum())
        return {
            "data_dir": str(self.data_dir),
            "recordings": len(self.recordings),
            "recordings_with_audio": with_audio,
            "cycles": len(self.cycles),
            "split": split,
            "aliases": dict(self.aliases),
            "missing_audio": len(self.recordings) - with_audio,
            "problems": [asdict(problem) for problem in self.problems],
        }


def _recording_files(data_dir: Path, problems: list[Problem]) -> tuple[dict, dict]:
    """``{stem: path}`` of the annotation and audio files: names that parse as recordings.

    Other files (readmes, ``filename_format.txt``, ``patient_diagnosis.csv``) are ignored.
    """
    files: dict[str, dict[str, Path]] = {".txt": {}, ".wav": {}}
    if not data_dir.is_dir():
        problems.append(Problem(str(data_dir), None, "data folder not found"))
        return files[".txt"], files[".wav"]
    for entry in os.scandir(data_dir):
        stem, suffix = os.path.splitext(entry.name)
        if suffix.lower() in files and _NAME.fullmatch(stem) and entry.is_file():
            files[suffix.lower()][stem] = Path(entry.path)
    if not files[".txt"]:
        message = "no annotation files {recording}.txt: point at the folder holding them"
        problems.append(Problem(str(data_dir), None, message))
    return files[".txt"], files[".wav"]


def _metadata(path: Path, reader, patients: set[int], problems: list[Problem]) -> pd.DataFrame:
    """Read an optional per-patient file; patients with recordings but no entry are a problem."""
    if not path.is_file():
        return pd.DataFrame()
    table, found = reader(path)
    problems.extend(found)
    if missing := sorted(patients - set(table["patient"])):
        problems.append(Problem(str(path), None, f"no entry for patient(s) {missing}"))
    return table


def scan_icbhi(data_dir: str | Path) -> ICBHI:
    """Scan an ICBHI folder in one pass, collecting every problem (DESIGN §2).

    Annotated recordings whose audio is absent are kept (``has_audio`` False), not problems;
    audio without an annotation, unreadable audio and bad annotation, split or metadata lines
    are problems.
    """
    data_dir = Path(data_dir).expanduser()
    problems: list[Problem] = []
    txts, wavs = _recording_files(data_dir, problems)
    prefixes: dict[str, str] = {}
    for stem in sorted(txts):
        prefix = parse_recording_name(stem).prefix
        if prefix in prefixes:
            message = f"same prefix {prefix} as {prefixes[prefix]}.txt: one recording, two names"
            problems.append(Problem(str(txts[stem]), None, message))
        else:
            prefixes[prefix] = stem
    for stem in sorted(set(wavs) - set(txts)):
        twin = prefixes.get(parse_recording_name(stem).prefix)
        hint = f" ({twin}.txt has its prefix: make the device names agree)" if twin else ""
        problems.append(Problem(str(wavs[stem]), None, "audio without an annotation file" + hint))

    split_path = data_dir / SPLIT_FILE
    splits, aliases = {}, {}
    if split_path.is_file():
        splits, aliases, found = read_split(split_path, prefixes)
        problems.extend(found)
    elif txts:
        problems.append(Problem(str(split_path), None, "official split file not found"))

    records, tables = [], []
    for stem in prefixes.values():
        info = None
        if stem in wavs:
            try:
                info = wav_info(wavs[stem])
            except AudioError as err:
                problems.append(Problem(err.path, None, err.reason))
        table, found = read_annotation(txts[stem], info.duration if info else None)
        problems.extend(found)
        name = astuple(parse_recording_name(stem))
        audio = (info.samplerate, info.duration, info.subtype) if info else (0, math.nan, "")
        records.append((*name, splits.get(stem, ""), len(table), info is not None, *audio))
        tables.append(table)

    recordings = pd.DataFrame(records, columns=_RECORDING_COLUMNS)
    counts = recordings["cycles"].to_numpy(np.int64)
    owner = np.repeat(np.arange(len(recordings)), counts)
    rows = np.concatenate(tables) if tables else np.zeros((0, 4))
    cycles = recordings.iloc[owner][["recording", "patient", "location", "mode", "device"]]
    cycles = cycles.reset_index(drop=True).assign(
        cycle=np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts),
        start=rows[:, 0],
        end=rows[:, 1],
        crackle=rows[:, 2].astype(np.int64),
        wheeze=rows[:, 3].astype(np.int64),
        label=(rows[:, 2] + 2 * rows[:, 3]).astype(np.int64),
        **{key: recordings[key].to_numpy()[owner] for key in ("split", "sample_rate", "has_audio")},
    )
    patients = set(recordings["patient"])
    diagnosis = _metadata(data_dir / DIAGNOSIS_FILE, read_diagnosis, patients, problems)
    demographics = _metadata(data_dir / DEMOGRAPHICS_FILE, read_demographics, patients, problems)
    return ICBHI(data_dir, cycles, recordings, aliases, problems, diagnosis, demographics)


def load_icbhi(data_dir: str | Path) -> ICBHI:
    """:func:`scan_icbhi` for callers that need clean data: raises :class:`DataError` if not."""
    return scan_icbhi(data_dir).raise_on_problems()


def check_data(data_dir: str | Path) -> dict:
    """The JSON report of ``cyclelib check-data``: counts per split, aliases, problems."""
    return scan_icbhi(data_dir).report()
