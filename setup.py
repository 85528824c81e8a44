"""Only what pyproject.toml cannot say: the notebooks go into the wheel as package data.

They live in ``notebooks/`` at the top of the repository (where learners open them); the build
copies them to ``cyclelib/_notebooks`` so that ``cyclelib notebooks OUT`` works after a plain
``pip install`` (cyclelib.editions.notebook_folder).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithNotebooks(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "cyclelib" / "_notebooks"
        target.mkdir(parents=True, exist_ok=True)
        for notebook in sorted(Path(__file__).parent.glob("notebooks/[0-9][0-9]_*.ipynb")):
            shutil.copyfile(notebook, target / notebook.name)


setup(cmdclass={"build_py": BuildPyWithNotebooks})
