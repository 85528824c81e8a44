"""The book (cyclelib.book): its sources, the site built from the executed notebooks, the browser.

The slow tests build the book once per session from the notebooks tests/test_notebooks.py
executes (its ``execute`` caches each run per session, so CI executes every notebook once),
then read the pages: every chapter there, no error output, every image present. The browser
test (marker ``browser``) serves the site on 127.0.0.1 and opens every chapter in Chromium: no
console error, every image loaded, the "next" link leads to the next chapter. Screenshots go to
``browser-artifacts/book-*.png``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

from cyclelib import book
from cyclelib.editions import notebook_folder

from conftest import REPO

NAMES = [nb.stem for nb in sorted(notebook_folder().glob("[0-9][0-9]_*.ipynb"))]
CHAPTERS = ["index", "docs/teaching", *(f"notebooks/{n}" for n in NAMES), "docs/design",
            "api/index"]  # in the order of the book's "next" links
ARTIFACTS = REPO / "browser-artifacts"


def _cell(kind: str, source: str, tags: list[str] | None = None, outputs=None) -> dict:
    cell = {"cell_type": kind, "id": source[:8], "metadata": {"tags": tags or []},
            "source": source}
    if kind == "code":
        cell |= {"outputs": outputs or [], "execution_count": 1}
    return cell


def test_solution_cells_are_collapsed_and_nothing_else() -> None:
    notebook = {"metadata": {}, "cells": [
        _cell("markdown", "### Exercise 2.1: frames"),
        _cell("code", "frames = ...", ["exercise"]),
        _cell("code", "frames = 688", ["solution"]),
        _cell("code", 'check("2.1", frames)')]}
    collapsed = book.collapse_solutions(notebook)
    assert [c["metadata"]["tags"] for c in collapsed["cells"]] == [
        [], ["exercise"], ["solution", "hide-input"], []]
    assert collapsed["cells"][2]["metadata"]["mystnb"]["code_prompt_show"] == "Show the solution"
    assert notebook["cells"][2]["metadata"]["tags"] == ["solution"]  # the source is untouched
    assert book.collapse_solutions(collapsed) == collapsed  # the tag is added once


def test_a_widget_output_becomes_its_first_picture_and_a_note() -> None:
    png = "iVBORw0KGgoAAAANSUhEUg=="  # base64 of the PNG signature and an IHDR header
    state = {"box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_slider",
                                                                      "IPY_MODEL_image"]}},
             "slider": {"model_name": "SelectionSliderModel", "state": {}},
             "image": {"model_name": "ImageModel", "state": {},
                       "buffers": [{"data": png, "encoding": "base64", "path": ["value"]}]}}
    view = {"output_type": "display_data", "metadata": {},
            "data": {book.WIDGET_VIEW: {"model_id": "box"}, "text/plain": "VBox(...)"}}
    text = {"output_type": "stream", "name": "stdout", "text": "45 groups\n"}
    notebook = {"metadata": {"widgets": {book.WIDGET_STATE: {"state": state}}},
                "cells": [_cell("code", "show()", outputs=[text, view])]}
    static = book.static_widgets(notebook)
    assert "widgets" not in static["metadata"]  # myst-nb would load the widget manager for it
    outputs = static["cells"][0]["outputs"]
    assert outputs[0] == text
    assert "JupyterLab" in outputs[1]["data"]["text/markdown"]
    assert outputs[2]["data"] == {"image/png": png}
    state["image"]["buffers"] = []  # no picture saved: the note alone
    static = book.static_widgets(notebook)
    assert [list(o["data"]) for o in static["cells"][0]["outputs"][1:]] == [["text/markdown"]]
    state["slider"]["model_name"] = "FloatProgressModel"  # a progress bar: dropped
    assert book.static_widgets(notebook)["cells"][0]["outputs"] == [text]


def test_the_sources_are_assembled_like_the_repository(tmp_path: Path) -> None:
    executed = tmp_path / "executed"
    executed.mkdir()
    for name in NAMES:  # the notebooks themselves stand in for executed ones
        (executed / f"{name}.synthetic.ipynb").write_bytes(
            (notebook_folder() / f"{name}.ipynb").read_bytes())
    project = tmp_path / "src"
    chapters = book.assemble(book.book_sources(), executed, project)
    assert chapters == CHAPTERS
    index = (project / "index.md").read_text()
    assert index.startswith((REPO / "README.md").read_text().splitlines()[0])
    assert all(f"\n{chapter}\n" in index for chapter in CHAPTERS[1:])  # the hidden toctree
    for page in ("docs/teaching.md", "docs/design.md", "docs/hybrid_spectrogram.png",
                 *(f"notebooks/{n}.ipynb" for n in NAMES), "api/index.md", "api/cyclelib.rst",
                 "api/cyclelib.exercises.rst", "_static/favicon.svg"):
        assert (project / page).is_file(), page
    conf = (project / "conf.py").read_text()
    assert 'nb_execution_mode = "off"' in conf and "intersphinx" not in conf
    if importlib.util.find_spec("sphinx-mathjax-offline"):  # the book extra is installed
        assert 'mathjax_path = "mathjax/tex-chtml.js"' in conf  # served by the site, no CDN
        assert (project / "_static/mathjax/tex-chtml.js").is_file()
    assert ".. automodule:: cyclelib.exercises._core" not in (
        project / "api/cyclelib.exercises.rst").read_text()  # private modules stay out
    with pytest.raises(FileNotFoundError, match="no executed"):
        book.assemble(book.book_sources(), tmp_path / "empty", tmp_path / "other")


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The book built from this session's executed notebooks (teacher edition, defaults)."""
    for module in ("sphinx", "myst_nb", "sphinx_book_theme"):
        pytest.importorskip(module, reason="the book extra is missing (pip install -e '.[book]')")
    from test_notebooks import execute

    runs, executed = tmp_path_factory.mktemp("book-runs"), tmp_path_factory.mktemp("executed")
    for name in NAMES:
        run = execute(name, "synthetic", runs)  # cached: test_notebooks reuses the same run
        (executed / f"{name}.ipynb").write_text(json.dumps(run.nb), encoding="utf-8")
    out = tmp_path_factory.mktemp("book")
    start = time.monotonic()
    book.build_book(out, executed=executed)
    print(f"book built in {time.monotonic() - start:.0f} s")
    return out


@pytest.mark.slow
@pytest.mark.notebook
def test_the_book_has_every_chapter_without_an_error_and_its_images(site: Path) -> None:
    assert (site / "index.html").is_file()
    pages = sorted(site.rglob("*.html"))
    for chapter in CHAPTERS:
        assert site / f"{chapter}.html" in pages, chapter
    solutions = 0
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert "Traceback" not in html and 'class="output traceback' not in html, page
        assert 'class="output stderr' not in html, page
        assert "cdn.jsdelivr" not in html and "unpkg.com" not in html, page  # offline
        for src in re.findall(r'<img[^>]*\bsrc="([^"]+)"', html):
            if not src.startswith("data:"):
                assert (page.parent / urlparse(src).path).resolve().is_file(), (page, src)
        solutions += html.count("tag_solution")
        assert html.count("tag_solution") <= html.count("tag_hide-input"), page
    figures = sum(len(list((site / "_images").glob(p))) for p in ("*.png", "*.svg"))
    assert figures >= 10, figures
    print(f"{len(pages)} pages, {figures} images, {solutions} solution cells collapsed")


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002  (the base's name)
        pass


@pytest.mark.slow
@pytest.mark.browser
def test_every_chapter_opens_in_chromium_and_next_leads_on(served: str) -> None:
    from test_browser import CHROMIUM

    if CHROMIUM is None:
        pytest.skip("Chromium not found (apt-get install chromium, or set CYCLELIB_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright missing")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox", "--disable-gpu"])
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("requestfailed", lambda r: errors.append(f"{r.url}: {r.failure}"))
        page.on("response", lambda r: errors.append(f"{r.url}: {r.status}")
                if r.status >= 400 else None)
        page.goto(served + "index.html", wait_until="networkidle")
        for number, chapter in enumerate(CHAPTERS):
            assert urlparse(page.url).path == f"/{chapter}.html", (chapter, page.url)
            page.wait_for_load_state("networkidle")
            images = page.eval_on_selector_all(
                "article img", "imgs => imgs.map(i => [i.getAttribute('src'), "
                "i.complete && i.naturalWidth > 0])")
            assert all(loaded for _, loaded in images), (chapter, images)
            assert page.locator("article h1").count() >= 1, chapter
            page.screenshot(path=str(ARTIFACTS / f"book-{number}-{chapter.split('/')[-1]}.png"))
            assert not errors, (chapter, errors)
            if number + 1 < len(CHAPTERS):
                page.locator("a.right-next").first.click()
                page.wait_for_load_state("load")
        chromium.close()


def test_without_the_book_extra_the_message_names_it(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(book.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"cyclelib\[book\]"):
        book.build_book(tmp_path / "site")
    assert not (tmp_path / "site").exists()  # nothing executed, nothing written
