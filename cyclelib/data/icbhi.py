"""The ICBHI 2017 files (DESIGN §2): recording names, annotations, the official split, metadata.

Each reader takes one text file laid out like the official download and returns its valid rows
and a :class:`Problem` for *every* bad line, naming its file and line, instead of stopping at
the first; :func:`cyclelib.data.folder.scan_icbhi` reads a whole folder with them.

Joins use the device-independent prefix ``{patient}_{index}_{location}_{mode}`` because the
owners renamed the device of some files after the challenge (DESIGN §2): the split's
``226_1b1_Pl_sc_Meditron`` is the file ``226_1b1_Pl_sc_LittC2SE``; such aliases are recorded.
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

DEVICES = ("AKGC417L", "Meditron", "LittC2SE", "Litt3200")
LOCATIONS = ("Tc", "Al", "Ar", "Pl", "Pr", "Ll", "Lr")
MODES = ("sc", "mc")  # single channel / multichannel acquisition
SPLITS = ("train", "test")
SPLIT_FILE = "ICBHI_challenge_train_test.txt"
DIAGNOSIS_FILE = "ICBHI_Challenge_diagnosis.txt"
DEMOGRAPHICS_FILE = "ICBHI_Challenge_demographic_information.txt"
DEMOGRAPHIC_COLUMNS = ("patient", "age", "sex", "adult_bmi", "child_weight", "child_height")
END_TOLERANCE_S = 0.05  # an annotated end may pass the audio's end by this much (rounding)
RECORDING_NAME = re.compile(
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
    match = RECORDING_NAME.fullmatch(name)
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
        elif RECORDING_NAME.fullmatch(fields[0]) is None:
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
