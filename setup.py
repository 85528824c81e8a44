"""Only what pyproject.toml cannot say: the notebooks and the book's pages go into the wheel.

The notebooks live in ``notebooks/`` at the top of the repository (where learners open them);
the build copies them to ``cyclelib/_notebooks`` so that ``cyclelib notebooks OUT`` works after a
plain ``pip install`` (cyclelib.editions.notebook_folder). README.md and docs/ (the course plan,
DESIGN and their pictures) go to ``cyclelib/_book_sources`` for ``cyclelib book OUT``
(cyclelib.book.book_sources).
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
        pages = Path(self.build_lib) / "cyclelib" / "_book_sources"
        (pages / "docs").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(__file__).parent / "README.md", pages / "README.md")
        for page in sorted(Path(__file__).parent.glob("docs/*")):
            if page.suffix in (".md", ".png"):
                shutil.copyfile(page, pages / "docs" / page.name)


setup(cmdclass={"build_py": BuildPyWithNotebooks})
