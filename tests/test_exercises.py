"""The course's exercise machinery: the check's contract, the cell format, the two editions.

The checks of each chapter are tested against their reference and typical wrong answers in
tests/test_exercises_ch*.py; executing both editions is in tests/test_notebooks.py.
"""

from __future__ import annotations

import json
import re

import pytest

from cyclelib.editions import notebook_folder, student_edition, write_edition
from cyclelib.exercises import EXERCISES, check

from conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHECK_CALL = re.compile(r'^\s*check\("(\d+\.\d+)"', re.MULTILINE)


def _cells(path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _checked() -> dict[str, list[str]]:
    """Notebook stem -> the exercise numbers its cells check, in order."""
    return {nb.stem: [n for c in _cells(nb) for n in CHECK_CALL.findall(_source(c))]
            for nb in NOTEBOOKS}


def test_every_exercise_is_checked_once_in_its_own_chapter() -> None:
    checked = _checked()
    numbers = [n for found in checked.values() for n in found]
    assert sorted(numbers) == sorted(EXERCISES), "registered and checked exercises differ"
    assert len(numbers) == len(set(numbers)) >= 14
    for stem, found in checked.items():
        assert 2 <= len(found) <= 4, f"{stem}: {len(found)} exercises"
        assert all(n.split(".")[0] == str(int(stem[:2])) for n in found), (stem, found)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_exercise_is_task_stub_solution_check(notebook) -> None:
    cells = _cells(notebook)
    for i, cell in enumerate(cells):
        for number in CHECK_CALL.findall(_source(cell)):
            task, stub, solution = cells[i - 3], cells[i - 2], cells[i - 1]
            where = f"{notebook.name}, exercise {number} (cell {i})"
            assert task["cell_type"] == "markdown" and f"Exercise {number}" in _source(task), where
            assert "exercise" in _tags(stub) and "..." in _source(stub), where
            assert "solution" in _tags(solution), where
            assert "solution" not in _tags(cell) and "exercise" not in _tags(cell), where


def test_student_edition_drops_solutions_and_keeps_everything_else(tmp_path) -> None:
    written = write_edition(tmp_path / "student", student=True)
    assert [p.name for p in written] == [nb.name for nb in NOTEBOOKS]
    for nb, path in zip(NOTEBOOKS, written, strict=True):
        teacher, student = _cells(nb), _cells(path)
        assert [c for c in teacher if "solution" not in _tags(c)] == student
        assert not [c for c in student if "solution" in _tags(c)]
        assert len([c for c in student if "exercise" in _tags(c)]) == len(CHECK_CALL.findall(
            "\n".join(_source(c) for c in student)))


def test_teacher_edition_is_the_repository_notebooks(tmp_path) -> None:
    assert notebook_folder() == REPO / "notebooks"
    for nb, path in zip(NOTEBOOKS, write_edition(tmp_path), strict=True):
        assert json.loads(path.read_text()) == json.loads(nb.read_text())


def test_a_solution_without_its_stub_is_refused_naming_the_cell() -> None:
    notebook = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "task"},
                          {"cell_type": "code", "metadata": {"tags": ["solution"]}, "source": "",
                           "outputs": [], "execution_count": None}]}
    with pytest.raises(ValueError, match=r"04_x.ipynb, cell 1: a 'solution' cell must follow"):
        student_edition(notebook, "04_x.ipynb")


def _answers_a_bare_function() -> set[str]:
    """The exercises whose notebook passes one function as the answer (``check("2.1", f)``);
    the others pass a tuple or a dict, whose stub forms the chapter tests cover."""
    bare = re.compile(r'^\s*check\("(\d+\.\d+)", [A-Za-z_]\w*\)', re.MULTILINE)
    return {n for nb in NOTEBOOKS for c in _cells(nb) for n in bare.findall(_source(c))}


@pytest.mark.parametrize("number", sorted(EXERCISES))
def test_a_stub_answer_is_not_done_yet_in_one_line(number: str, capsys) -> None:
    stubs = [..., None]
    if number in _answers_a_bare_function():
        stubs += [lambda *args, **kwargs: None, lambda *args, **kwargs: ...]
    for stub in stubs:
        assert not check(number, stub)
        out = capsys.readouterr().out
        assert out.startswith(f"✗ Exercise {number}: not done yet") and out.count("\n") == 1


@pytest.mark.parametrize("number", sorted(EXERCISES))
def test_a_crashing_answer_is_reported_not_raised(number: str, capsys) -> None:
    def crashes(*args, **kwargs):
        raise IndexError("index 9 is out of bounds")

    assert not check(number, crashes)
    out = capsys.readouterr().out
    assert out.startswith(f"✗ Exercise {number}: ") and out.count("\n") == 1


def test_an_unknown_exercise_is_the_notebooks_mistake() -> None:
    with pytest.raises(KeyError, match="no exercise '9.9'"):
        check("9.9", 1)
