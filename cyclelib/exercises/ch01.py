"""The checks of notebook 01's exercises (docs/teaching.md).

Each check compares the learner's answer with cyclelib's own reading of the same data
(:func:`cyclelib.data.folder.scan_icbhi`, :func:`cyclelib.data.splits.paper_protocol_split`),
first on the notebook's folder (the synthetic teaching set, or real ICBHI when ``DATA_DIR`` is
set), then on a tiny folder written here with the traps of the real database (DESIGN §2): a
split file that names a recording with another device, and text files that are not annotations.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from cyclelib.constants import CLASS_NAMES
from cyclelib.data.folder import scan_icbhi
from cyclelib.data.icbhi import DIAGNOSIS_FILE, SPLIT_FILE, SPLITS
from cyclelib.data.splits import paper_protocol_split
from cyclelib.exercises._core import NotDone, Wrong, call, exercise
from cyclelib.exercises._source import refuse_shortcut

# A tiny ICBHI folder (DESIGN §2): 102's split entry names another device than its file (as 92
# real files do since the owners corrected them), patient 101 has a recording on each side, and
# the diagnosis file is a .txt that is not an annotation.
_TRAP_ANNOTATIONS = {
    "101_1b1_Al_sc_Meditron": [(0.036, 0.579, 0, 0), (0.579, 2.45, 1, 0), (2.45, 3.893, 0, 1)],
    "101_1b1_Pr_sc_Meditron": [(0.1, 1.2, 1, 1), (1.2, 2.9, 0, 0)],
    "102_1b1_Ar_sc_Meditron": [(0.2, 1.7, 0, 1), (1.7, 3.3, 1, 0), (3.3, 5.0, 1, 0)],
    "103_2b2_Tc_mc_AKGC417L": [(0.0, 2.5, 0, 0), (2.5, 4.75, 1, 1)],
}
_TRAP_SPLIT = {
    "101_1b1_Al_sc_Meditron": "train",
    "101_1b1_Pr_sc_Meditron": "test",
    "102_1b1_Ar_sc_LittC2SE": "test",  # the file says Meditron: join on the name without device
    "103_2b2_Tc_mc_AKGC417L": "train",
}
_TRAP = ("a small folder whose split file names 102_1b1_Ar_sc_Meditron.txt as "
         "102_1b1_Ar_sc_LittC2SE (a renamed device, as in the real database) and holds "
         f"{DIAGNOSIS_FILE}")


def _trap_folder(parent: str) -> Path:
    """Write the tiny folder of :data:`_TRAP_ANNOTATIONS` under ``parent``; its path."""
    folder = Path(parent)
    for name, rows in _TRAP_ANNOTATIONS.items():
        lines = ["\t".join(f"{v:g}" for v in row) for row in rows]
        (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")
    (folder / SPLIT_FILE).write_text("".join(f"{n}\t{s}\n" for n, s in _TRAP_SPLIT.items()))
    (folder / DIAGNOSIS_FILE).write_text("101\tURTI\n102\tHealthy\n103\tAsthma\n")
    return folder


def _function_and_folder(answer: Any, what: str) -> tuple[Callable, Path]:
    """Unpack ``(function, data_dir)``, the answer of the exercises that read a folder."""
    if not isinstance(answer, tuple) or len(answer) != 2:
        raise Wrong(f"pass a pair (your function, data_dir), e.g. check(..., ({what}, data_dir))")
    function, folder = answer
    if function is ...:
        raise NotDone
    if not callable(function):
        raise Wrong(f"the first item should be your function {what}, "
                    f"got {type(function).__name__}")
    return function, Path(folder)


def _counts_table(got: Any) -> dict[str, dict[str, int]]:
    """The learner's counts as ``{split: {class name: count}}``: a nested dict or a DataFrame
    (splits as rows or as columns); class keys may be names or labels 0..3, missing ones 0."""
    if isinstance(got, pd.DataFrame):
        got = (got if set(SPLITS) <= set(got.index) else got.T).to_dict(orient="index")
    if not isinstance(got, dict):
        raise Wrong(f"return a dict {{split: {{class: count}}}} (or a DataFrame), "
                    f"got {type(got).__name__}")
    if missing := [split for split in SPLITS if split not in got]:
        raise Wrong(f"no counts for split {missing[0]!r}: the keys should be 'train' and 'test', "
                    f"got {list(got)[:4]}")
    table = {}
    for split in SPLITS:
        row = got[split]
        if not isinstance(row, dict | pd.Series):
            raise Wrong(f"counts[{split!r}] should be a dict {{class: count}}, "
                        f"got {type(row).__name__}")
        row = dict(row)
        table[split] = {name: int(row.get(name, row.get(label, 0)))
                        for label, name in enumerate(CLASS_NAMES)}
    return table


def _compare_counts(got: dict, want: dict, where: str) -> None:
    for split in SPLITS:
        for name in CLASS_NAMES:
            if got[split][name] != want[split][name]:
                raise Wrong(f"{where}: {split} {name}: cyclelib counts {want[split][name]} cycles, "
                            f"you counted {got[split][name]} (class = crackle + 2·wheeze; each "
                            "recording takes the split of its entry in the split file)")


def _count_in(function: Callable, folder: Path, where: str) -> dict[str, dict[str, int]]:
    """The learner's counts of ``folder``; what their code raises becomes a hint on the traps."""
    try:
        return _counts_table(call(function, folder))
    except (Wrong, NotDone):
        raise
    except Exception as error:
        raise Wrong(f"{where}, your code raised {type(error).__name__}: {error} (read only the "
                    ".txt files named like recordings; join the split file on "
                    "patient_index_location_mode, without the device)") from None


@exercise("1.1", "count each class per split by hand")
def check_counts(answer: Any) -> str:
    """``answer``: ``(count_by_hand, data_dir)``; ``count_by_hand(folder)`` -> ``{split:
    {class: cycles}}``. Compared with ``scan_icbhi(folder).report()["split"]`` on ``data_dir``
    and on a small folder with a renamed device (DESIGN §2)."""
    function, folder = _function_and_folder(answer, "count_by_hand")
    refuse_shortcut(function, ("scan_icbhi", "load_icbhi", "check_data"),
                     "parse the annotation and split files")
    where = f"in data_dir ({folder.name})"
    got = _count_in(function, folder, where)  # first: a stub stops here, before any scan
    want = scan_icbhi(folder).report()["split"]
    _compare_counts(got, want, where)
    with tempfile.TemporaryDirectory() as parent:
        trap = _trap_folder(parent)
        got = _count_in(function, trap, f"on {_TRAP}")
        try:
            _compare_counts(got, scan_icbhi(trap).report()["split"], f"on {_TRAP}")
        except Wrong as wrong:
            raise Wrong(f"{wrong}; join the split file on the name without its device") from None
    total = sum(sum(row[name] for name in CLASS_NAMES) for row in want.values())
    return f"the same {total:,} cycles per split and class as cyclelib, renamed devices included"


def _patients(got: Any) -> set[int]:
    """The learner's patients as a set of ints (ints or numpy integers; strings are refused)."""
    if isinstance(got, str | bytes) or not isinstance(got, Iterable):
        raise Wrong(f"return the patients as a set or list of ints, got {type(got).__name__}")
    got = list(got)
    if not all(isinstance(p, int) or hasattr(p, "__index__") for p in got):
        example = next(p for p in got if not (isinstance(p, int) or hasattr(p, "__index__")))
        raise Wrong(f"patients should be ints such as 156, got {example!r}: "
                    "int(name.split('_')[0])")
    return {int(p) for p in got}


def _both_sides(folder: Path) -> set[int]:
    recordings = scan_icbhi(folder).recordings
    sides = recordings.groupby("patient")["split"].nunique()
    return {int(p) for p in sides[sides > 1].index}


@exercise("1.2", "patients with recordings on both sides of the split")
def check_both_sides(answer: Any) -> str:
    """``answer``: ``(patients_on_both_sides, data_dir)``; the function of a folder returns the
    patients with a train and a test recording, compared with cyclelib's recordings table on
    ``data_dir`` and on a small folder (so a hard-coded (156, 218) does not pass)."""
    function, folder = _function_and_folder(answer, "patients_on_both_sides")
    refuse_shortcut(function, ("scan_icbhi", "load_icbhi"), "read the split file")
    with tempfile.TemporaryDirectory() as parent:
        trap = _trap_folder(parent)
        for where, path in ((f"data_dir ({folder.name})", folder),
                            ("a small folder with patients 101-103", trap)):
            got, want = _patients(call(function, path)), _both_sides(path)
            if got != want:
                extra, missing = sorted(got - want), sorted(want - got)
                detail = "; ".join(part for part in (
                    f"not on both sides: {extra[:5]}" if extra else "",
                    f"missing: {missing[:5]}" if missing else "") if part)
                raise Wrong(f"in {where}, cyclelib finds {sorted(want)}, you found "
                            f"{sorted(got)[:8]} ({detail}): keep a patient when its recordings "
                            "have both 'train' and 'test'")
    return f"patients {sorted(_both_sides(folder))} have recordings in train and in test"


def _leaked(cycles: pd.DataFrame) -> dict[str, int]:
    """Per class, the test cycles the original's split trains on (as notebook 01 counts them)."""
    leaky = paper_protocol_split(cycles)
    test_recordings = set(cycles.loc[cycles["split"] == "test", "recording"])
    leaked = leaky[(leaky["split"] == "train") & leaky["recording"].isin(test_recordings)]
    counts = leaked["label"].value_counts()
    return {name: int(counts.get(label, 0)) for label, name in enumerate(CLASS_NAMES)}


def _class_counts(got: Any) -> dict[str, int]:
    if isinstance(got, pd.Series):
        got = got.to_dict()
    if not isinstance(got, dict):
        raise Wrong(f"return a dict {{class: count}}, got {type(got).__name__}")
    return {name: int(got.get(name, got.get(label, 0))) for label, name in enumerate(CLASS_NAMES)}


@exercise("1.3", "the test cycles the original's split trains on")
def check_leak(answer: Any) -> str:
    """``answer``: ``(leaked_by_hand, cycles)``; ``leaked_by_hand(cycles)`` -> ``{class:
    count}`` of the test cycles whose patient has a train recording (DESIGN §7, error 1),
    compared with :func:`paper_protocol_split` on ``cycles`` and on a copy where one more
    patient is split across both sides."""
    if not isinstance(answer, tuple) or len(answer) != 2:
        raise Wrong("pass a pair (your function, cycles), e.g. "
                    "check('1.3', (leaked_by_hand, db.cycles))")
    function, cycles = answer
    if function is ...:
        raise NotDone
    refuse_shortcut(function, ("paper_protocol_split", "protocol_splits"),
                     "find the leaked cycles")
    cases = [("the notebook's cycles", cycles)]
    recordings = cycles.groupby("patient")["recording"].nunique()
    train_only = sorted(set(cycles.loc[cycles["split"] == "train", "patient"])
                        - set(cycles.loc[cycles["split"] == "test", "patient"])
                        & set(recordings[recordings > 1].index))
    if train_only:  # move one recording of a train-only patient with two or more: a new leak
        patient = train_only[len(train_only) // 2]
        recording = cycles.loc[cycles["patient"] == patient, "recording"].iloc[0]
        moved = cycles.copy()
        moved.loc[moved["recording"] == recording, "split"] = "test"
        cases.append((f"a copy where {recording} moves to test", moved))
    for where, table in cases:
        got, want = _class_counts(call(function, table.copy())), _leaked(table)
        if got != want:
            raise Wrong(f"on {where}, cyclelib finds {want}, you found {got}: count the test "
                        "cycles of the patients who also have a train recording")
    want = _leaked(cycles)
    return f"{sum(want.values())} test cycles are trained on by the original's split: {want}"
