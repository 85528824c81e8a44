"""An ICBHI folder (DESIGN §2-3): which one to read, what it holds, which cycles can be used.

The data entry point of the library, the notebooks and the command line:

- :func:`resolve_data_dir` picks the folder: the one given, else the folder a checkpoint was
  trained on (when it still exists), else the synthetic teaching set; it says whether the
  folder is synthetic (patients from 301, :func:`cyclelib.data.synthetic.is_synthetic`);
- :func:`scan_icbhi` reads the folder in one pass with the readers of :mod:`cyclelib.data.icbhi`
  and collects *every* problem; :func:`check_data` turns the result into the JSON report of
  ``cyclelib check-data``; :func:`load_icbhi` raises :class:`DataError` for callers that need
  clean data;
- :func:`cycles_with_audio` keeps the cycles whose recording has its ``.wav`` (the development
  copy of ICBHI has the audio of 133 of 920 recordings); :func:`sample_cycles` draws some of
  them with their waveforms.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, astuple, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cyclelib.constants import CLASS_NAMES
from cyclelib.data.audio import AudioError, load_cycle_waveforms, wav_info
from cyclelib.data.icbhi import (
    DEMOGRAPHICS_FILE,
    DIAGNOSIS_FILE,
    RECORDING_NAME,
    SPLIT_FILE,
    SPLITS,
    DataError,
    Problem,
    parse_recording_name,
    read_annotation,
    read_demographics,
    read_diagnosis,
    read_split,
)
from cyclelib.data.synthetic import is_synthetic, synthetic_dir

_RECORDING_COLUMNS = [  # ICBHI.recordings; "cycles" counts its annotated cycles
    "recording", "patient", "index", "location", "mode", "device", "split", "cycles",
    "has_audio", "sample_rate", "duration", "subtype",
]  # fmt: skip


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
        """The JSON-able report of ``cyclelib check-data`` (the :func:`check_data` contract);
        ``synthetic`` says whether the folder is a synthetic set (patients from 301)."""
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
            "synthetic": is_synthetic(self.data_dir),
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
        if suffix.lower() in files and RECORDING_NAME.fullmatch(stem) and entry.is_file():
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


def _prefixes(txts: dict, wavs: dict, problems: list[Problem]) -> dict[str, str]:
    """``{prefix: annotated recording}``; two annotations of one prefix, and audio without an
    annotation, are problems (the hint names a twin whose device differs)."""
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
    return prefixes


def _recordings(
    prefixes: dict[str, str], txts: dict, wavs: dict, splits: dict[str, str],
    problems: list[Problem],
) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """One row per annotated recording (``_RECORDING_COLUMNS``) and its cycle table (cycles, 4)."""
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
    return pd.DataFrame(records, columns=_RECORDING_COLUMNS), tables


def _cycles(recordings: pd.DataFrame, tables: list[np.ndarray]) -> pd.DataFrame:
    """The cycle table of :class:`ICBHI`: each recording's rows, with its name fields and split."""
    counts = recordings["cycles"].to_numpy(np.int64)
    owner = np.repeat(np.arange(len(recordings)), counts)
    rows = np.concatenate(tables) if tables else np.zeros((0, 4))
    cycles = recordings.iloc[owner][["recording", "patient", "location", "mode", "device"]]
    return cycles.reset_index(drop=True).assign(
        cycle=np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts),
        start=rows[:, 0],
        end=rows[:, 1],
        crackle=rows[:, 2].astype(np.int64),
        wheeze=rows[:, 3].astype(np.int64),
        label=(rows[:, 2] + 2 * rows[:, 3]).astype(np.int64),
        **{key: recordings[key].to_numpy()[owner] for key in ("split", "sample_rate", "has_audio")},
    )


def scan_icbhi(data_dir: str | Path) -> ICBHI:
    """Scan an ICBHI folder in one pass, collecting every problem (DESIGN §2).

    Annotated recordings whose audio is absent are kept (``has_audio`` False), not problems;
    audio without an annotation, unreadable audio and bad annotation, split or metadata lines
    are problems.
    """
    data_dir = Path(data_dir).expanduser()
    problems: list[Problem] = []
    txts, wavs = _recording_files(data_dir, problems)
    prefixes = _prefixes(txts, wavs, problems)
    split_path = data_dir / SPLIT_FILE
    splits, aliases = {}, {}
    if split_path.is_file():
        splits, aliases, found = read_split(split_path, prefixes)
        problems.extend(found)
    elif txts:
        problems.append(Problem(str(split_path), None, "official split file not found"))
    recordings, tables = _recordings(prefixes, txts, wavs, splits, problems)
    patients = set(recordings["patient"])
    diagnosis = _metadata(data_dir / DIAGNOSIS_FILE, read_diagnosis, patients, problems)
    demographics = _metadata(data_dir / DEMOGRAPHICS_FILE, read_demographics, patients, problems)
    return ICBHI(data_dir, _cycles(recordings, tables), recordings, aliases, problems, diagnosis,
                 demographics)


def load_icbhi(data_dir: str | Path) -> ICBHI:
    """:func:`scan_icbhi` for callers that need clean data: raises :class:`DataError` if not."""
    return scan_icbhi(data_dir).raise_on_problems()


def check_data(data_dir: str | Path) -> dict:
    """The JSON report of ``cyclelib check-data``: counts per split, aliases, problems."""
    return scan_icbhi(data_dir).report()


_ANNOUNCED: set[Path] = set()  # synthetic folders already announced by resolve_data_dir


def resolve_data_dir(
    data_dir: str | Path | None = None, trained_on: str | Path | None = None
) -> tuple[Path, bool]:
    """``(folder, is_synthetic)`` of the data to read.

    ``data_dir`` None: ``trained_on`` (the folder a checkpoint was trained on, from its
    ``meta["data"]["folder"]``) when given and still there, else the synthetic set (said in one
    line). A path must be an ICBHI folder with the split file, else a ValueError says what is
    missing and what to do. A synthetic folder (the teaching set, or a path to one such as the
    full-size set of ``cyclelib synth --like-icbhi``) is announced once per process.
    """
    if data_dir is None and trained_on is not None and Path(trained_on).is_dir():
        data_dir = trained_on
    if data_dir is None:
        path, synthetic = synthetic_dir(), True
    else:
        path = Path(data_dir).expanduser()
        how = "get the data with `cyclelib download DIR` (cyclelib.data.download, see the README)"
        if not path.is_dir():
            raise ValueError(f"ICBHI data folder {path} does not exist: {how}")
        if not (path / SPLIT_FILE).is_file():
            raise ValueError(f"{path} has no {SPLIT_FILE}, so it is not an ICBHI folder: {how}")
        synthetic = is_synthetic(path)
    if synthetic and path.resolve() not in _ANNOUNCED:  # once per process: later calls quiet
        _ANNOUNCED.add(path.resolve())
        if data_dir is None:
            print(f"Using the SYNTHETIC teaching set (not ICBHI 2017) at {path}; "
                  "pass a data folder for the real data.")
        else:
            print(f"Using a SYNTHETIC set (not ICBHI 2017 recordings) at {path}: "
                  "its sounds are generated.")
    return path, synthetic


def cycles_with_audio(cycles: pd.DataFrame, split: str | None = None) -> pd.DataFrame:
    """The rows of ``cycles`` (``ICBHI.cycles``) whose recording has audio, of ``split`` when
    given (train, test or val), index reset to 0..n-1 in the same order."""
    keep = cycles["has_audio"]
    if split is not None:
        keep = keep & (cycles["split"] == split)
    return cycles[keep].reset_index(drop=True)


def sample_cycles(
    data_dir: str | Path, split: str, count: int, seed: int = 0, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` cycles of ``split`` (with audio), drawn at random (seeded).

    Returns waveforms (n, 176000) float32 at 22 kHz and labels (n,) int64, in recording order.
    """
    pool = cycles_with_audio(load_icbhi(data_dir).cycles, split)
    if pool.empty:
        raise ValueError(f"{data_dir}: no {split} cycle has audio")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(pool), size=min(count, len(pool)), replace=False))
    chosen = pool.iloc[rows].reset_index(drop=True)
    waves = load_cycle_waveforms(chosen, data_dir, progress=progress)
    return waves, chosen["label"].to_numpy(np.int64)
