"""The checks of exercises 1.1-1.3 and 2.1-2.3 (cyclelib.exercises.ch01, ch02; docs/teaching.md).

The reference answers are the notebooks' own ``solution`` cells and the stubs their ``exercise``
cells, run here in a namespace holding what the notebook imports: every solution must print ✓,
every stub "not done yet", and typical wrong answers ✗ with the hint that names the mistake.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from cyclelib.constants import CLASS_NAMES
from cyclelib.data.synthetic import synthetic_dir
from cyclelib.exercises import check

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CHAPTERS = {"1": "01_data_exploration", "2": "02_hybrid_spectrogram"}


def _cells(number: str) -> dict[str, str]:
    """The sources of exercise ``number``'s cells: {"exercise": ..., "solution": ..., "check"}."""
    cells = json.loads((NOTEBOOKS / f"{CHAPTERS[number[0]]}.ipynb").read_text())["cells"]
    start = next(i for i, cell in enumerate(cells) if cell["cell_type"] == "markdown"
                 and "".join(cell["source"]).startswith(f"### Exercise {number}:"))
    stub, solution, call = cells[start + 1 : start + 4]
    assert stub["metadata"]["tags"] == ["exercise"] and solution["metadata"]["tags"] == ["solution"]
    assert "tags" not in call["metadata"] and "".join(call["source"]).startswith(
        f'check("{number}", ')
    return {"exercise": "".join(stub["source"]), "solution": "".join(solution["source"]),
            "check": "".join(call["source"])}


def _namespace(kind: str, number: str) -> dict:
    """The names a notebook's cell ``kind`` (exercise or solution) defines, with its imports."""
    from cyclelib.features import FeatureConfig

    namespace = {"np": np, "pd": pd, "Path": Path, "CLASS_NAMES": CLASS_NAMES,
                 "FeatureConfig": FeatureConfig}
    exec(_cells(number)[kind], namespace)  # noqa: S102  (the notebook's own cell)
    return namespace


@pytest.fixture(scope="module")
def folder() -> Path:
    """The synthetic teaching set, the notebooks' default folder."""
    return synthetic_dir()


@pytest.fixture(scope="module")
def cycles(folder: Path) -> pd.DataFrame:
    from cyclelib.data.folder import scan_icbhi

    return scan_icbhi(folder).cycles


@pytest.fixture(scope="module")
def decibels() -> np.ndarray:
    """dB maps (2, 3, 84, 688) of two synthetic cycles, as notebook 02's ``decibels``."""
    import torch

    from cyclelib.data.folder import sample_cycles
    from cyclelib.features import HybridSpectrogram

    waves, _ = sample_cycles(synthetic_dir(), "train", 2, seed=0)
    with torch.inference_mode():
        return HybridSpectrogram().decibel_maps(torch.from_numpy(waves)).numpy()


def _line(capsys) -> str:
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out  # exactly one line
    return out.strip()


def _passes(number: str, answer, capsys) -> str:
    assert check(number, answer), capsys.readouterr().out
    line = _line(capsys)
    assert line.startswith(f"✓ Exercise {number}:"), line
    return line


def _fails(number: str, answer, capsys, *hints: str) -> str:
    assert not check(number, answer)
    line = _line(capsys)
    assert line.startswith(f"✗ Exercise {number}:"), line
    for hint in hints:
        assert hint in line, line
    return line


def _answer(kind: str, number: str, **values):
    """The answer of the notebook's check cell, evaluated with the cell ``kind``'s names."""
    namespace = {**_namespace(kind, number), **values}
    call = _cells(number)["check"]
    argument = call[call.index(",") + 1 : call.rindex(")")].strip()
    return eval(argument, namespace)  # noqa: S307  (the notebook's own expression)


# --- chapter 1 --------------------------------------------------------------------------------


def test_1_1_solution_stub_and_wrong_answers(folder: Path, capsys) -> None:
    line = _passes("1.1", _answer("solution", "1.1", data_dir=folder), capsys)
    assert "474 cycles" in line  # the synthetic set's 278 train + 196 test
    _fails("1.1", _answer("exercise", "1.1", data_dir=folder), capsys, "not done yet")
    solution = _namespace("solution", "1.1")["count_by_hand"]

    def swapped_flags(path):  # class = 2·crackle + wheeze: crackle and wheeze swapped
        counts = solution(path)
        for row in counts.values():
            row["crackle"], row["wheeze"] = row["wheeze"], row["crackle"]
        return counts

    _fails("1.1", (swapped_flags, folder), capsys, "crackle: cyclelib counts")

    def exact_names(path):  # joins the split file on the full name: misses renamed devices
        split_of = dict(line.split() for line in
                        (Path(path) / "ICBHI_challenge_train_test.txt").read_text().splitlines())
        counts = {s: dict.fromkeys(CLASS_NAMES, 0) for s in ("train", "test")}
        for txt in Path(path).glob("*.txt"):
            if txt.stem in split_of:
                for row in np.loadtxt(txt, ndmin=2):
                    counts[split_of[txt.stem]][CLASS_NAMES[int(row[2] + 2 * row[3])]] += 1
        return counts

    _fails("1.1", (exact_names, folder), capsys, "renamed device", "without its device")

    def every_txt(path):  # reads the diagnosis file as an annotation
        for txt in Path(path).glob("*.txt"):
            for line in txt.read_text().splitlines():
                int(line.split()[2])
        return solution(path)

    _fails("1.1", (every_txt, folder), capsys, "your code raised")
    _fails("1.1", solution, capsys, "pass a pair")  # the function without the folder


def test_1_1_refuses_cyclelibs_own_count(folder: Path, capsys) -> None:
    def copied(path):
        from cyclelib import scan_icbhi

        return scan_icbhi(path).report()["split"]

    _fails("1.1", (copied, folder), capsys, "by hand", "scan_icbhi")


@pytest.mark.slow
def test_1_1_to_1_3_on_the_real_database(icbhi_dir: Path, capsys) -> None:
    from cyclelib.data.folder import scan_icbhi

    line = _passes("1.1", _answer("solution", "1.1", data_dir=icbhi_dir), capsys)
    assert "6,898 cycles" in line
    line = _passes("1.2", _answer("solution", "1.2", data_dir=icbhi_dir), capsys)
    assert "[156, 218]" in line
    db = SimpleNamespace(cycles=scan_icbhi(icbhi_dir).cycles)
    line = _passes("1.3", _answer("solution", "1.3", db=db), capsys)
    assert "120 test cycles" in line and "'both': 57" in line  # notebook 01's prose


def test_1_2_solution_stub_and_wrong_answers(folder: Path, capsys) -> None:
    line = _passes("1.2", _answer("solution", "1.2", data_dir=folder), capsys)
    assert "[326]" in line  # the synthetic set's patient on both sides
    _fails("1.2", _answer("exercise", "1.2", data_dir=folder), capsys, "not done yet")
    _fails("1.2", (lambda path: {156, 218}, folder), capsys, "cyclelib finds [326]")
    _fails("1.2", (lambda path: {"326"}, folder), capsys, "ints such as 156")

    def hard_coded(path):  # right on the notebook's folder, not on the check's own
        return {326}

    _fails("1.2", (hard_coded, folder), capsys, "small folder", "cyclelib finds [101]")

    def train_patients(path):  # every patient with a train recording
        lines = (Path(path) / "ICBHI_challenge_train_test.txt").read_text().split("\n")
        return {int(line.split("_")[0]) for line in lines if line.endswith("train")}

    _fails("1.2", (train_patients, folder), capsys, "not on both sides")


def test_1_3_solution_stub_and_wrong_answers(cycles: pd.DataFrame, capsys) -> None:
    line = _passes("1.3", _answer("solution", "1.3", db=SimpleNamespace(cycles=cycles)), capsys)
    assert "test cycles are trained on" in line
    _fails("1.3", _answer("exercise", "1.3", db=SimpleNamespace(cycles=cycles)), capsys,
           "not done yet")

    def train_side(table):  # the train cycles of the patients on both sides, not the test ones
        test_patients = set(table.loc[table.split == "test", "patient"])
        rows = table[(table.split == "train") & table.patient.isin(test_patients)]
        return rows.label.map(dict(enumerate(CLASS_NAMES))).value_counts().to_dict()

    _fails("1.3", (train_side, cycles), capsys, "count the test cycles")
    fixed = {name: int(n) for name, n in
             _namespace("solution", "1.3")["leaked_by_hand"](cycles).items()}
    _fails("1.3", (lambda table: fixed, cycles), capsys, "moves to test")


# --- chapter 2 --------------------------------------------------------------------------------


def test_2_1_solution_stub_and_wrong_answers(capsys) -> None:
    line = _passes("2.1", _answer("solution", "2.1"), capsys)
    assert "688 frames -> 45 groups" in line
    _fails("2.1", _answer("exercise", "2.1"), capsys, "not done yet")
    _fails("2.1", lambda n, hop, size, stride: (n // hop, 1 + (n // hop - size) // stride),
           capsys, "688 frames, you said 687", "centred")
    _fails("2.1", lambda n, hop, size, stride: (1 + n // hop, (1 + n // hop) // stride),
           capsys, "groups, you said", "whole frames")
    _fails("2.1", lambda n, hop, size, stride: (688, 45), capsys, "22000 samples")


def test_2_1_refuses_the_config_properties(capsys) -> None:
    def copied(n, hop, size, stride):
        from cyclelib import FeatureConfig

        config = FeatureConfig(n_samples=n, hop_length=hop, group_size=size, group_stride=stride)
        return config.n_frames, config.n_groups

    _fails("2.1", copied, capsys, "by hand")


def test_2_2_solution_stub_and_wrong_answers(decibels: np.ndarray, capsys) -> None:
    line = _passes("2.2", _answer("solution", "2.2", decibels=decibels), capsys)
    assert "504 rows" in line  # 2 cycles x 3 maps x 84 rows
    _fails("2.2", _answer("exercise", "2.2", decibels=decibels), capsys, "not done yet")

    def biased(maps, eps):  # np.std's default, ddof=0
        return (maps - maps.mean(-1, keepdims=True)) / (maps.std(-1, keepdims=True) + eps)

    _fails("2.2", (biased, decibels), capsys, "biased std", "ddof=1")

    def no_eps(maps, eps):
        return (maps - maps.mean(-1, keepdims=True)) / maps.std(-1, ddof=1, keepdims=True)

    _fails("2.2", (no_eps, decibels), capsys, "where a row is flat", "add eps")

    def over_frequency(maps, eps):  # standardises columns (axis -2) instead of rows
        centred = maps - maps.mean(-2, keepdims=True)
        return centred / (maps.std(-2, ddof=1, keepdims=True) + eps)

    _fails("2.2", (over_frequency, decibels), capsys, "off by up to")


def test_2_3_solution_stub_and_wrong_answers(capsys) -> None:
    line = _passes("2.3", _answer("solution", "2.3"), capsys)
    assert "781.2 mel" in line
    _fails("2.3", _answer("exercise", "2.3"), capsys, "not done yet")
    solution = _namespace("solution", "2.3")
    htk_mel, mel_band = solution["htk_mel"], solution["mel_band"]
    _fails("2.3", (lambda f: 2595 * np.log(1 + np.asarray(f) / 700), mel_band), capsys, "log10")

    def slaney(freq):  # the Slaney scale (librosa's default): linear below 1 kHz
        freq = np.asarray(freq, dtype=float)
        above = 15 + 27 * np.log(np.maximum(freq, 1e-9) / 1000) / np.log(6.4)
        return np.where(freq < 1000, 3 * freq / 200, above)

    _fails("2.3", (slaney, mel_band), capsys, "Slaney")

    def off_by_one(freq, config):  # takes point j, not j + 1, as band j's peak
        mels = np.linspace(htk_mel(config.fmin), htk_mel(config.fmax), config.n_bins + 2)
        points = 700 * (10 ** (mels / 2595) - 1)
        return int(np.argmin(np.abs(points[:-2] - freq)))

    _fails("2.3", (htk_mel, off_by_one), capsys, "point j + 1")

    def nearest_in_mel(freq, config):  # nearest peak on the mel axis: triangles are not
        mels = np.linspace(htk_mel(config.fmin), htk_mel(config.fmax), config.n_bins + 2)
        return int(np.argmin(np.abs(mels[1:-1] - htk_mel(freq))))

    _fails("2.3", (htk_mel, nearest_in_mel), capsys, "straight lines in Hz")


def test_2_3_refuses_cyclelibs_filterbank(capsys) -> None:
    def copied(freq, config):
        from cyclelib.filterbanks import mel_filterbank

        return int(np.argmax(mel_filterbank(config)[:, round(freq * config.n_fft / 22000)]))

    htk_mel = _namespace("solution", "2.3")["htk_mel"]
    _fails("2.3", (htk_mel, copied), capsys, "by hand", "mel_filterbank")


def test_2_2_names_eps_when_a_real_map_has_a_flat_row(decibels: np.ndarray, capsys) -> None:
    maps = decibels.copy()
    maps[0, 0, 80] = -100.0  # the dB floor of a 4 kHz recording's top rows

    def no_eps(maps, eps):
        return (maps - maps.mean(-1, keepdims=True)) / maps.std(-1, ddof=1, keepdims=True)

    _fails("2.2", (no_eps, maps), capsys, "NaN or inf where a row is flat", "add eps")
    solution = _namespace("solution", "2.2")["standardise_rows"]
    _passes("2.2", (solution, maps), capsys)
