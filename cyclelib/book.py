"""The course as a static HTML site: ``cyclelib book OUT`` writes ``OUT/index.html``.

The book (docs/teaching.md, "The book") holds the README as its landing page, the course plan
(docs/teaching.md), the five notebooks executed with their default parameters (teacher
edition, solutions collapsed), DESIGN (docs/design.md) and an API reference generated from
cyclelib's docstrings. Its engine is Jupyter Book 1's: Sphinx, myst-nb and sphinx-book-theme,
the ``book`` extra (``pip install "cyclelib[book]"``). The build is offline: no intersphinx, no
theme or asset fetched at build time, and MathJax served from the site itself
(sphinx-mathjax-offline's copy), so the pages also work without a network.

The sources travel with the package: a wheel carries README.md and docs/ in
``cyclelib/_book_sources`` and the notebooks in ``cyclelib/_notebooks`` (setup.py); a clone
reads them from the repository.
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cyclelib
from cyclelib.editions import SOLUTION, notebook_folder, tags

ENGINE = ("sphinx", "myst_nb", "sphinx_book_theme")  # the book extra
HIDE = "hide-input"  # myst-nb's tag: the input is collapsed behind a "Show code" toggle
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
PROGRESS = ("FloatProgressModel", "IntProgressModel")
WIDGET_NOTE = ("*An interactive widget: open this notebook in JupyterLab to use it"
               "{what}.*")
FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
           '<circle cx="8" cy="8" r="7" fill="#2a6f97"/></svg>\n')
MATHJAX = ("output/chtml/fonts/woff-v2", "input/tex/extensions")  # what tex-chtml.js loads

CONF = """\
# Written by cyclelib.book: the book's Sphinx settings (offline: nothing fetched at build time).
project = {title!r}
author = "cyclelib"
copyright = "the cyclelib authors (MIT)"
release = {version!r}
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
html_theme = "sphinx_book_theme"
html_title = {title!r}
html_theme_options = {{"home_page_in_toc": True, "show_navbar_depth": 1,
                       "use_download_button": False, "use_fullscreen_button": False}}
html_context = {{"default_mode": "light"}}  # else the theme logs an error on a first visit
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"  # a browser asks for one: a 404 is a console error
html_last_updated_fmt = None
html_copy_source = False  # no _sources/ copy of each notebook (megabytes of PNGs)
html_show_sourcelink = False
nb_execution_mode = "off"  # the notebooks come executed
nb_ipywidgets_js = {{}}  # widgets are drawn statically: no require.js nor widget CDN
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3  # docs/design.md#7-evaluation-the-honest-protocol resolves
autodoc_member_order = "bysource"
suppress_warnings = ["myst.header", "myst.xref_missing", "misc.highlighting_failure",
                     "autodoc", "autodoc.import_object", "toc.not_included", "ref.python"]
exclude_patterns = ["_build"]
{mathjax}
"""


def book_sources() -> Path:
    """The folder holding README.md and docs/ (teaching.md, design.md, their pictures)."""
    package = Path(cyclelib.__file__).parent
    for folder in (package / "_book_sources", package.parent):
        if (folder / "README.md").is_file() and (folder / "docs" / "teaching.md").is_file():
            return folder
    raise FileNotFoundError(f"README.md and docs/ are neither in {package / '_book_sources'} "
                            f"nor in {package.parent}: reinstall cyclelib")


def collapse_solutions(notebook: dict) -> dict:
    """A copy of ``notebook`` whose ``solution`` cells are folded: tag ``hide-input``, and the
    toggle says "Show the solution" (myst-nb's ``code_prompt_show``)."""
    notebook = copy.deepcopy(notebook)
    for cell in notebook["cells"]:
        if SOLUTION in tags(cell) and HIDE not in tags(cell):
            cell.setdefault("metadata", {})["tags"] = [*tags(cell), HIDE]
            cell["metadata"].setdefault("mystnb", {}).update(  # the toggle's label
                code_prompt_show="Show the solution", code_prompt_hide="Hide the solution")
    return notebook


def static_widgets(notebook: dict) -> dict:
    """A copy of ``notebook`` with each widget output replaced by its first picture and a note.

    A static site has no kernel to drive a widget, and myst-nb would load require.js and the
    widget manager from a CDN for it. The widget's state (saved by papermill) still holds its
    ImageModel's PNG: that is shown, with a note saying where the widget lives. A progress bar
    is dropped.
    """
    notebook = copy.deepcopy(notebook)
    state = notebook["metadata"].pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in notebook["cells"]:
        outputs = []
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                outputs.append(output)
                continue
            models = list(_tree(state, view.get("model_id", "")))
            if any(m.get("model_name") in PROGRESS for m in models):
                continue  # a progress bar (tqdm): nothing to show once the run is over
            png = _first_png(models)
            what = "; here is its first picture" if png else ""
            data = {"text/markdown": WIDGET_NOTE.format(what=what)}
            outputs.append({"output_type": "display_data", "metadata": {}, "data": data})
            if png:
                outputs.append({"output_type": "display_data", "metadata": {},
                                "data": {"image/png": png}})
        if "outputs" in cell:
            cell["outputs"] = outputs
    return notebook


def _tree(state: dict, model_id: str, seen: frozenset = frozenset()) -> Iterator[dict]:
    """The widget models under ``model_id`` (itself included), depth first."""
    model = state.get(model_id)
    if model is None or model_id in seen:
        return
    yield model
    children = model.get("state", {}).get("children", [])
    for child in children if isinstance(children, list) else []:
        yield from _tree(state, str(child).removeprefix("IPY_MODEL_"), seen | {model_id})


def _first_png(models: list[dict]) -> str | None:
    """The PNG (base64) of the first ImageModel among ``models`` that holds one."""
    for model in models:
        for buffer in model.get("buffers", []) if model.get("model_name") == "ImageModel" else []:
            if base64.b64decode(buffer.get("data", ""))[:4] == b"\x89PNG":
                return buffer["data"]
    return None


def api_pages() -> dict[str, list[str]]:
    """The API reference: one page per top-level module of cyclelib, with its submodules."""
    pages: dict[str, list[str]] = {"cyclelib": ["cyclelib"]}
    for info in pkgutil.iter_modules(cyclelib.__path__, "cyclelib."):
        if info.name.rsplit(".", 1)[-1].startswith("_") or info.name == "cyclelib.book":
            continue
        pages[info.name] = [info.name]
        if info.ispkg:
            module = importlib.util.find_spec(info.name)
            for sub in pkgutil.iter_modules(module.submodule_search_locations, info.name + "."):
                if not sub.name.rsplit(".", 1)[-1].startswith("_"):
                    pages[info.name].append(sub.name)
    pages["cyclelib.book"] = ["cyclelib.book"]
    return pages


def executed_notebook(executed: Path, name: str) -> Path:
    """``NAME.ipynb`` in ``executed``, else ``NAME.synthetic.ipynb`` (tests/test_notebooks)."""
    for candidate in (executed / f"{name}.ipynb", executed / f"{name}.synthetic.ipynb"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no executed {name}.ipynb (or {name}.synthetic.ipynb) in {executed}")


def assemble(source: Path, executed: Path, work: Path) -> list[str]:
    """Write the book's Sphinx project into ``work``; the chapters' document names, in order.

    Paths mirror the repository (README.md as index.md, docs/, notebooks/), so the links the
    README, DESIGN and the notebooks hold between each other resolve in the book as on GitHub.
    """
    (work / "docs").mkdir(parents=True, exist_ok=True)
    (work / "notebooks").mkdir(exist_ok=True)
    (work / "api").mkdir(exist_ok=True)
    for path in sorted((source / "docs").iterdir()):
        if path.suffix in (".md", ".png", ".svg", ".jpg"):
            shutil.copyfile(path, work / "docs" / path.name)
    names = [nb.stem for nb in sorted(notebook_folder().glob("[0-9][0-9]_*.ipynb"))]
    for name in names:
        notebook = json.loads(executed_notebook(executed, name).read_text(encoding="utf-8"))
        notebook = static_widgets(collapse_solutions(notebook))
        (work / "notebooks" / f"{name}.ipynb").write_text(json.dumps(notebook, indent=1),
                                                          encoding="utf-8")
    pages = api_pages()
    for page, modules in pages.items():
        # the package page: its docstring only (its names are documented where defined)
        members = "" if page == "cyclelib" else "\n   :members:"
        body = "\n\n".join(f".. automodule:: {module}{members}" for module in modules)
        (work / "api" / f"{page}.rst").write_text(f"{page}\n{'=' * len(page)}\n\n{body}\n",
                                                  encoding="utf-8")
    (work / "api" / "index.md").write_text(
        "# API reference\n\nGenerated from cyclelib's docstrings, one page per module "
        "(DESIGN §1 maps them).\n\n```{toctree}\n:maxdepth: 1\n\n"
        + "\n".join(pages) + "\n```\n", encoding="utf-8")
    chapters = ["docs/teaching", *(f"notebooks/{n}" for n in names), "docs/design", "api/index"]
    readme = (source / "README.md").read_text(encoding="utf-8")
    toctree = "\n".join(chapters)
    (work / "index.md").write_text(
        f"{readme.rstrip()}\n\n```{{toctree}}\n:hidden:\n:maxdepth: 1\n\n{toctree}\n```\n",
        encoding="utf-8")
    static = work / "_static"
    static.mkdir(exist_ok=True)
    (static / "favicon.svg").write_text(FAVICON, encoding="utf-8")
    (work / "conf.py").write_text(CONF.format(title="CycleGuardian, reproduced and taught",
                                              version=cyclelib.__version__,
                                              mathjax=_offline_mathjax(static)),
                                  encoding="utf-8")
    return ["index", *chapters]


def _offline_mathjax(static: Path) -> str:
    """Copy MathJax (sphinx-mathjax-offline's) into ``static``; the conf.py line using it."""
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or not spec.submodule_search_locations:
        return "# sphinx-mathjax-offline is missing: math is typeset by MathJax from its CDN"
    mathjax = Path(spec.submodule_search_locations[0]) / "static" / "mathjax"
    (static / "mathjax").mkdir(exist_ok=True)
    shutil.copyfile(mathjax / "tex-chtml.js", static / "mathjax" / "tex-chtml.js")
    for part in MATHJAX:
        shutil.copytree(mathjax / part, static / "mathjax" / part, dirs_exist_ok=True)
    return 'mathjax_path = "mathjax/tex-chtml.js"'


def execute_notebooks(work: Path) -> Path:
    """Run the teacher edition with its default parameters in ``work``; the executed folder.

    The notebooks run in a copy of their folder (their ``runs/`` land there, not in the
    repository), with ``CYCLELIB_HEADLESS=1`` so that each widget is drawn as a static figure.
    """
    import papermill

    from cyclelib.editions import write_edition

    run, out = work / "run", work / "executed"
    out.mkdir(parents=True, exist_ok=True)
    saved = {key: os.environ.get(key) for key in ("CYCLELIB_HEADLESS", "MPLBACKEND")}
    os.environ["CYCLELIB_HEADLESS"] = "1"
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend shows the figures
    try:
        for notebook in write_edition(run):
            print(f"executing {notebook.name} ...", flush=True)
            papermill.execute_notebook(str(notebook), str(out / notebook.name), cwd=str(run),
                                       kernel_name="python3", progress_bar=False)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return out


def build_book(out: str | Path, executed: str | Path | None = None) -> Path:
    """Build the book into ``out``; the path of ``out/index.html``.

    ``executed``: a folder of executed notebooks (``NAME.ipynb`` or ``NAME.synthetic.ipynb``);
    when None, the notebooks are executed first (minutes: 04 and 05 train). Sphinx runs in a
    subprocess; its warnings (free-form docstrings) are printed, never fatal, and a failed
    build raises RuntimeError with the end of Sphinx's output.
    """
    missing = [m for m in ENGINE if importlib.util.find_spec(m) is None]
    if missing:  # before minutes of notebook execution
        raise ModuleNotFoundError(f"the book needs {', '.join(missing)}: pip install "
                                  f"'cyclelib[book]' (in a clone: pip install -e '.[book]')")
    out = Path(out).resolve()
    with tempfile.TemporaryDirectory(prefix="cyclelib-book-") as tmp:
        work = Path(tmp)
        folder = Path(executed) if executed is not None else execute_notebooks(work / "exec")
        project = work / "src"
        assemble(book_sources(), folder, project)
        command = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-j", "1",
                   "-d", str(work / "doctrees"), str(project), str(out)]
        done = subprocess.run(command, capture_output=True, text=True,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if done.stderr:
            print(done.stderr, file=sys.stderr, end="")
        if done.returncode != 0:
            raise RuntimeError(f"sphinx failed ({done.returncode}):\n{done.stderr[-3000:]}")
    index = out / "index.html"
    if not index.is_file():
        raise RuntimeError(f"sphinx wrote no {index}")
    return index
