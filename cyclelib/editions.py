"""The course's two editions of the notebooks, written from one source (docs/teaching.md).

The notebooks in the repository are the **teacher edition**: every exercise has its stub (a
code cell tagged ``exercise``) followed by its reference answer (a cell tagged ``solution``), so
every check prints ✓. The **student edition** is the same notebooks with the ``solution`` cells
removed: the stubs stay, and every check prints "✗ ... not done yet" until the learner answers.
A wheel carries the notebooks as package data (``cyclelib/_notebooks``, copied by setup.py), so
``cyclelib notebooks OUT [--student]`` works from a plain ``pip install`` as from a clone.
"""

from __future__ import annotations

import json
from pathlib import Path

import cyclelib

EXERCISE, SOLUTION = "exercise", "solution"  # the cell tags (Jupyter's metadata.tags)


def notebook_folder() -> Path:
    """Where the teacher edition is: the wheel's package data, else the clone's ``notebooks/``."""
    package = Path(cyclelib.__file__).parent
    for folder in (package / "_notebooks", package.parent / "notebooks"):
        if any(folder.glob("[0-9][0-9]_*.ipynb")):
            return folder
    raise FileNotFoundError(f"no notebooks in {package / '_notebooks'} or "
                            f"{package.parent / 'notebooks'}: reinstall cyclelib")


def tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def student_edition(notebook: dict, name: str = "notebook") -> dict:
    """``notebook`` (nbformat JSON) without its solution cells and outputs.

    Raises ValueError naming the notebook and cell when a ``solution`` cell does not follow an
    ``exercise`` cell (its stub), since the student would then have nothing to fill in.
    """
    cells, previous = [], None
    for index, cell in enumerate(notebook["cells"]):
        if SOLUTION in tags(cell):
            if previous is None or EXERCISE not in tags(previous):
                raise ValueError(f"{name}, cell {index}: a 'solution' cell must follow its "
                                 f"'exercise' cell (the stub the student fills in)")
        else:
            cells.append(_cleared(cell))
        previous = cell
    return {**notebook, "cells": cells}


def _cleared(cell: dict) -> dict:
    if cell["cell_type"] != "code":
        return cell
    return {**cell, "outputs": [], "execution_count": None}


def write_edition(out: str | Path, student: bool = False) -> list[Path]:
    """Write the teacher (or ``student``) edition of every notebook into ``out``; their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sorted(notebook_folder().glob("[0-9][0-9]_*.ipynb")):
        notebook = json.loads(source.read_text(encoding="utf-8"))
        if student:
            notebook = student_edition(notebook, source.name)
        target = out / source.name
        target.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n",
                          encoding="utf-8")
        written.append(target)
    return written
