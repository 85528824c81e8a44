"""Packaging and the public API: pip and conda name the same pins, the wheel holds every
package, one version string, an import without side effects, at most three cyclelib modules
per notebook."""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import REPO


def _requirements() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return {re.sub(r"\s+", "", r) for r in reqs}


def _environment_pip() -> list[str]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    (pip_section,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    return pip_section


def test_environment_yml_names_the_same_packages_as_pyproject() -> None:
    pip_reqs = {r for r in _environment_pip() if not r.startswith("-e")}
    assert pip_reqs == _requirements()


def test_environment_yml_installs_this_package_with_its_extras() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (editable,) = [r for r in _environment_pip() if r.startswith("-e")]
    match = re.fullmatch(r"-e \.\[([\w,]+)\]", editable)
    assert match and set(match[1].split(",")) == set(extras["optional-dependencies"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert "conda-forge" in env["channels"] and "python=3.11" in env["dependencies"]


def test_every_package_of_the_source_tree_goes_into_the_wheel() -> None:
    from setuptools import find_namespace_packages

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set(find_namespace_packages(where=str(REPO), **config["packages"]["find"]))
    packages = {".".join(p.parent.relative_to(REPO).parts)
                for p in (REPO / "cyclelib").rglob("*.py") if "__pycache__" not in p.parts}
    assert packages <= found, f"left out of the wheel: {sorted(packages - found)}"


def test_every_data_file_of_the_package_is_declared_for_the_wheel() -> None:
    from fnmatch import fnmatch

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = declared.get("package-data", {})
    files = [p for p in (REPO / "cyclelib").rglob("*")
             if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert files, "expected the ICBHI facts table (cyclelib/data/icbhi_facts.json.gz)"
    for path in files:
        package = ".".join(path.parent.relative_to(REPO).parts)
        assert any(fnmatch(path.name, pattern) for pattern in patterns.get(package, [])), path


def test_the_version_has_one_source() -> None:
    import cyclelib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "cyclelib.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", cyclelib.__version__)


def test_import_loads_no_torch_and_sets_nothing() -> None:
    code = ("import os, sys; before = dict(os.environ); import cyclelib; "
            "assert 'torch' not in sys.modules, 'import cyclelib loaded torch'; "
            "import cyclelib.train, cyclelib.reproduction, cyclelib.export, cyclelib.viz.model; "
            "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())")
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=env)


def test_public_names_are_their_modules_objects_whatever_was_imported_first() -> None:
    import cyclelib

    for module in cyclelib._API:  # importing every module must not shadow a public name
        importlib.import_module(module)
    for name, module in cyclelib._HOME.items():
        assert getattr(cyclelib, name) is getattr(importlib.import_module(module), name), name


# Notebook 04 writes one training step out by hand (docs/teaching.md, exercise 4.1): the reader
# sees the pieces it is made of, so it imports them from their own modules.
OPENED = {"04_training": {"cyclelib.augment", "cyclelib.losses", "cyclelib.model",
                          "cyclelib.train"}}


def _cyclelib_modules(notebook: Path) -> set[str]:
    """The cyclelib modules a notebook imports from: ``from cyclelib.viz import data`` counts as
    cyclelib.viz.data (a module), ``from cyclelib import reproduce`` as cyclelib."""
    modules = set()
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        for node in ast.walk(ast.parse("".join(cell["source"]))):
            if isinstance(node, ast.Import):
                modules |= {a.name for a in node.names if a.name.split(".")[0] == "cyclelib"}
            elif isinstance(node, ast.ImportFrom) and node.module.split(".")[0] == "cyclelib":
                folder = REPO.joinpath(*node.module.split("."))
                for alias in node.names:
                    is_module = (folder / f"{alias.name}.py").is_file() or (
                        folder / alias.name / "__init__.py").is_file()
                    modules.add(f"{node.module}.{alias.name}" if is_module else node.module)
    return modules


@pytest.mark.parametrize("notebook", sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")),
                         ids=lambda p: p.stem)
def test_each_notebook_imports_from_at_most_three_cyclelib_modules(notebook: Path) -> None:
    """Short cells calling cyclelib: the package, a viz module, one more. Not counted: the
    course's checker (cyclelib.exercises), and the modules a chapter opens on purpose."""
    modules = _cyclelib_modules(notebook)
    opened = OPENED.get(notebook.stem, set())
    assert opened <= modules, f"{notebook.stem} no longer opens {sorted(opened - modules)}"
    counted = modules - opened - {"cyclelib.exercises"}
    assert counted and len(counted) <= 3, sorted(counted)
