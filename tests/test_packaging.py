"""The two ways to install (pip and conda) name the same packages at the same pins."""

from __future__ import annotations

import re
import tomllib

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
