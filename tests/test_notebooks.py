"""Every notebook, executed as a learner or a user runs it, and what it shows checked.

Each notebook runs once per data edition with papermill, exactly as the README shows it (no
environment variable: the widgets are built, as in JupyterLab), under a per-cell timeout: the
synthetic teaching set (its defaults) always, the real ICBHI folder when it is found. The tests
then read the executed copy: no error, no figure drawn twice, the widgets and figures there,
and the numbers a learner is told. Executed copies go to a temporary folder, never the repo.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from conftest import ICBHI_DIR, REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NAMES = [nb.stem for nb in NOTEBOOKS]
CELL_TIMEOUT_S = 900  # the slowest cell (04's ablation) takes about 3 minutes on 2 cores

# Real-data and student-edition runs keep the notebooks' fast defaults except the data folder,
# and train one epoch where a notebook trains (five runs in 04; 05 trains when 04's run is
# missing): they check the code path (on real audio; with the stubs), not results.
REAL_PARAMETERS: dict[str, dict] = {"04_training": {"EPOCHS": 1}, "05_mobile_export": {"EPOCHS": 1}}

# Figures (image/png outputs) each notebook draws at least, and the widget models it builds.
MIN_FIGURES = {"01_data_exploration": 5, "02_hybrid_spectrogram": 9, "03_model": 1,
               "04_training": 5, "05_mobile_export": 2}
WIDGETS = {"01_data_exploration": {"AudioModel", "DropdownModel"},
           "02_hybrid_spectrogram": {"ImageModel", "SelectionSliderModel", "DropdownModel"},
           "03_model": {"ImageModel", "SelectionSliderModel"}}


class Executed:
    """An executed notebook: its cells, outputs as text, images and widget state."""

    def __init__(self, path: Path) -> None:
        self.nb = json.loads(path.read_text())
        self.code = [c for c in self.nb["cells"] if c["cell_type"] == "code"]
        state = self.nb["metadata"].get("widgets", {})
        self.widgets = state.get("application/vnd.jupyter.widget-state+json", {}).get("state", {})

    def outputs(self, kind: str | None = None):
        for cell in self.code:
            for out in cell["outputs"]:
                if kind is None or out["output_type"] == kind:
                    yield cell, out

    def text(self) -> str:
        """Every stream and text/plain or text/markdown output, joined."""
        parts = []
        for _, out in self.outputs():
            parts.append("".join(out.get("text", "")))
            data = out.get("data", {})
            for mime in ("text/plain", "text/markdown"):
                parts.append("".join(data.get(mime, "")))
        return "\n".join(parts)

    def pngs(self, cell: dict) -> list[str]:
        return ["".join(o["data"]["image/png"]) for o in cell["outputs"]
                if "image/png" in o.get("data", {})]

    def widget_models(self, name: str) -> list[dict]:
        return [w for w in self.widgets.values() if w["model_name"] == name]


_RUNS: dict[tuple[str, str], Executed] = {}


def execute(name: str, edition: str, folder: Path) -> Executed:
    """Run notebook ``name`` once per edition in this session.

    Editions: "synthetic" (the teacher edition, its defaults), "real" (DATA_DIR set) and
    "student" (``cyclelib notebooks --student``: solutions removed, in a folder of its own, with
    the fast parameters of the real-data runs: it checks that the stubs run, not results).
    """
    key = (name, edition)
    if key not in _RUNS:
        papermill = pytest.importorskip("papermill")
        source, cwd = REPO / "notebooks" / f"{name}.ipynb", REPO / "notebooks"
        parameters = {} if edition == "synthetic" else dict(REAL_PARAMETERS.get(name, {}))
        if edition == "real":
            parameters["DATA_DIR"] = str(ICBHI_DIR)
        if edition == "student":
            from cyclelib.editions import write_edition

            cwd = folder / "student"
            if not cwd.is_dir():
                write_edition(cwd, student=True)
            source = cwd / f"{name}.ipynb"
        out = folder / f"{name}.{edition}.ipynb"
        papermill.execute_notebook(str(source), str(out), parameters=parameters, cwd=str(cwd),
                                   kernel_name="python3", progress_bar=False,
                                   execution_timeout=CELL_TIMEOUT_S)
        _RUNS[key] = Executed(out)
    return _RUNS[key]


@pytest.fixture(scope="session")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("notebooks")


@pytest.fixture(params=NAMES)
def synthetic(request, run_folder: Path) -> tuple[str, Executed]:
    return request.param, execute(request.param, "synthetic", run_folder)


@pytest.fixture(params=NAMES)
def real(request, run_folder: Path, icbhi_dir: Path) -> tuple[str, Executed]:
    return request.param, execute(request.param, "real", run_folder)


def _check_clean(name: str, run: Executed) -> None:
    errors = [out for _, out in run.outputs("error")]
    assert not errors, f"{name}: {errors[0]['ename']}: {errors[0]['evalue']}"
    assert "Error displaying widget" not in run.text()
    for cell in run.code:
        pngs = run.pngs(cell)
        assert len(pngs) == len(set(pngs)), f"{name}: a figure is drawn twice in\n{cell['source']}"
    n_figures = sum(len(run.pngs(cell)) for cell in run.code)
    assert n_figures >= MIN_FIGURES[name], f"{name}: {n_figures} figures"


@pytest.mark.notebook
@pytest.mark.slow
def test_notebook_runs_clean_on_the_synthetic_set(synthetic) -> None:
    name, run = synthetic
    _check_clean(name, run)
    for model in WIDGETS.get(name, ()):
        assert run.widget_models(model), f"{name}: no {model} was built"
    # what a learner sees is what the chapter means to show: no progress bar, log or warning
    # (stderr), no numpy scalar repr, the synthetic set announced at most once
    stderr = ["".join(out["text"]) for _, out in run.outputs("stream") if out["name"] == "stderr"]
    assert not stderr, f"{name} writes to stderr: {stderr[0][:300]}"
    text = run.text()
    assert not re.search(r"np\.float\d+\(", text), f"{name} prints a numpy scalar repr"
    assert text.count("Using the SYNTHETIC teaching set") <= 1
    for model in ("ImageModel", "AudioModel"):
        for widget in run.widget_models(model):  # each holds a picture or a sound
            (buffer,) = widget.get("buffers", [])
            assert base64.b64decode(buffer["data"])[:4] in (b"\x89PNG", b"RIFF")


@pytest.mark.notebook
@pytest.mark.slow
def test_notebook_runs_clean_on_real_data(real) -> None:
    name, run = real
    _check_clean(name, run)
    _check_lines(name, run, "✓")


def _exercises(name: str) -> list[str]:
    """The exercise numbers notebook ``name`` checks, in order."""
    source = "\n".join("".join(c["source"]) for c in json.loads(
        (REPO / "notebooks" / f"{name}.ipynb").read_text())["cells"])
    return re.findall(r'^\s*check\("(\d+\.\d+)"', source, re.MULTILINE)


def _check_lines(name: str, run: Executed, mark: str, detail: str = "") -> None:
    """Every exercise check printed its one line, each starting with ``mark`` (+ ``detail``)."""
    lines = re.findall(r"^([✓✗]) Exercise (\d+\.\d+): (.*)$", run.text(), re.MULTILINE)
    assert [number for _, number, _ in lines] == _exercises(name), (name, lines)
    for sign, number, text in lines:
        assert sign == mark and text.startswith(detail), f"{name}: {sign} Exercise {number}: {text}"
    for cell in run.code:  # the line is the check cell's whole output: no True/False under it
        if re.search(r'^\s*check\("', "".join(cell["source"]), re.MULTILINE):
            kinds = {out["output_type"] for out in cell["outputs"]}  # a stream may come in chunks
            text = "".join("".join(out.get("text", "")) for out in cell["outputs"])
            assert kinds == {"stream"} and text.count("\n") == 1, f"{name}: {kinds} {text!r}"


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_teacher_edition_prints_a_tick_for_every_exercise(name: str, run_folder: Path) -> None:
    assert len(_exercises(name)) >= 2, f"{name}: 2 to 4 exercises per chapter"
    _check_lines(name, execute(name, "synthetic", run_folder), "✓")


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_student_edition_runs_to_the_end_with_every_exercise_not_done(name: str,
                                                                      run_folder: Path) -> None:
    run = execute(name, "student", run_folder)
    assert not [out for _, out in run.outputs("error")], name
    assert not [c for c in run.nb["cells"] if "solution" in c["metadata"].get("tags", [])]
    _check_lines(name, run, "✗", "not done yet")


def _synthetic(name: str, run_folder: Path) -> Executed:
    return execute(name, "synthetic", run_folder)


@pytest.mark.notebook
@pytest.mark.slow
def test_01_counts_what_is_in_the_folder(run_folder: Path) -> None:
    from cyclelib.data import synthetic_dir

    folder = synthetic_dir()
    recordings = sorted(folder.glob("[0-9]*_*.txt"))
    cycles = sum(len(p.read_text().split("\n")) - 1 for p in recordings)
    line = f"{len(recordings)} annotated recordings, {len(recordings)} with audio, {cycles} cycles"
    assert f"{line}, 0 problems" in _synthetic("01_data_exploration", run_folder).text()


@pytest.mark.notebook
@pytest.mark.slow
def test_01_counts_the_real_database(run_folder: Path, icbhi_dir: Path) -> None:
    text = execute("01_data_exploration", "real", run_folder).text()
    assert re.search(r"\b920 annotated recordings, \d+ with audio, 6898 cycles", text), text[:500]


@pytest.mark.notebook
@pytest.mark.slow
def test_02_shows_the_map_shapes_and_standardised_rows(run_folder: Path) -> None:
    text = _synthetic("02_hybrid_spectrogram", run_folder).text()
    assert "shape (4, 3, 84, 688)" in text and "groups: (4, 45, 3, 84, 20)" in text
    means, low, high = map(float, re.search(
        r"row means: ([\d.e-]+)\s+row stds: ([\d.]+) - ([\d.]+)", text).groups())
    assert means < 1e-3 and 0.99 < low <= high < 1.01


@pytest.mark.notebook
@pytest.mark.slow
def test_03_counts_the_faithful_parameters(run_folder: Path) -> None:
    assert "6626359" in _synthetic("03_model", run_folder).text().replace(",", "")


@pytest.mark.notebook
@pytest.mark.slow
def test_04_reports_a_results_table_with_score(run_folder: Path) -> None:
    text = _synthetic("04_training", run_folder).text()
    assert "| checkpoint | val Score | test Sp | test Se | test Score |" in text
    assert re.search(r"\| selected \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \|", text)


@pytest.mark.notebook
@pytest.mark.slow
def test_05_exported_files_agree_with_eager(run_folder: Path) -> None:
    text = _synthetic("05_mobile_export", run_folder).text()
    rows = re.findall(r"^\| (\S+\.(?:pte|onnx)) \| [\d.]+ \| ([\d.e+-]+) \| ([\d.]+) \|", text,
                      re.MULTILINE)
    assert any(f.endswith(".onnx") for f, *_ in rows), text[:800]
    for file, diff, agreement in rows:
        if "int8" in file:  # reported, not bounded: 05 shows that int8 fails on 04's model
            continue
        assert float(diff) <= 1e-4, (file, diff)
        assert float(agreement) == 1.0, (file, agreement)


def test_committed_notebooks_carry_no_outputs() -> None:
    assert NOTEBOOKS, "no notebooks found"
    for nb in NOTEBOOKS:
        cells = json.loads(nb.read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert all(not c["outputs"] and c["execution_count"] is None for c in code), nb.name
        tags = code[0].get("metadata", {}).get("tags", [])
        assert "parameters" in tags, f"{nb.name}: first code cell must be tagged 'parameters'"


@pytest.mark.notebook
@pytest.mark.slow
def test_01_says_what_each_class_weighs_in_the_score(run_folder: Path) -> None:
    text = _synthetic("01_data_exploration", run_folder).text()
    assert re.search(r"crackle carries [\d.]+ times the weight of 'both' in Se", text)


@pytest.mark.notebook
@pytest.mark.slow
def test_01_real_database_crackle_weighs_3_7_times_both(run_folder: Path, icbhi_dir: Path) -> None:
    text = execute("01_data_exploration", "real", run_folder).text()
    assert "crackle carries 3.7 times the weight of 'both' in Se" in text


def _probe(text: str) -> dict[str, tuple[float, float]]:
    found = re.findall(r"^(.+): accuracy ([\d.]+) against ([\d.]+) by guessing", text, re.MULTILINE)
    return {task: (float(a), float(b)) for task, a, b in found}


@pytest.mark.notebook
@pytest.mark.slow
def test_02_device_is_visible_in_the_standardised_maps(run_folder: Path) -> None:
    probe = _probe(_synthetic("02_hybrid_spectrogram", run_folder).text())
    assert len(probe) == 3 and all(a > b for a, b in probe.values()), probe


@pytest.mark.notebook
@pytest.mark.slow
def test_02_device_probe_on_real_data_gives_the_figures_quoted(run_folder: Path,
                                                               icbhi_dir: Path) -> None:
    """The chapter quotes the development copy's figures: 0.77/0.48, 0.72, 0.99/0.57."""
    probe = _probe(execute("02_hybrid_spectrogram", "real", run_folder).text())
    assert abs(probe["device, all rows"][0] - 0.77) < 0.02, probe
    assert abs(probe["device, all rows"][1] - 0.48) < 0.01, probe
    assert abs(probe["device, rows below 1.8 kHz"][0] - 0.72) < 0.02, probe
    assert probe["recorded at 4 kHz or not"][0] > 0.98, probe


@pytest.mark.notebook
@pytest.mark.slow
def test_04_writes_the_run_that_05_exports(run_folder: Path) -> None:
    text = _synthetic("04_training", run_folder).text()
    assert re.search(r"validation set: \d+ cycles from \d+ patients", text)
    assert re.search(r"\d of 6 pairs are identical vectors", text)
    run = REPO / "notebooks" / "runs" / "synthetic" / "04_official"
    assert (run / "seed_0" / "best.pt").is_file()
    text05 = _synthetic("05_mobile_export", run_folder).text()
    assert "CHECKPOINT is None: using notebook 04's" in text05
    classes = re.search(r"the fp32 model predicts (\d+) of the 4 classes", text05)
    assert classes and int(classes.group(1)) >= 2, "04's model must be one that int8 can change"
    changed = re.search(r"int8 changes the predicted class of ([\d.]+)% of them", text05)
    assert changed and float(changed.group(1)) > 20, "05's prose says more than a fifth"
