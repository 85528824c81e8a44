"""The notebooks as a learner sees them: JupyterLab in Chromium, Run All, then the widgets moved.

Marker ``browser``. JupyterLab is started here on 127.0.0.1 (a free port, a random token) over a
copy of the notebooks, so the repository is never written to; Playwright drives Debian's
``chromium`` (``executable_path``, no browser download). Each notebook is opened, run with Run
All Cells, and read back from the page: no error output, no "Error displaying widget", no figure
drawn twice, its figures and players there; then the widgets are moved (every option of a
drop-down, both ends of every slider) and must redraw without error. Screenshots and the outputs
go to ``browser-artifacts/`` (ignored by git); the test skips when Chromium or Playwright is
absent. The copies train one epoch where a notebook trains, to keep the suite within minutes.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("CYCLELIB_CHROMIUM") or shutil.which("chromium")
ARTIFACTS = REPO / "browser-artifacts"
FAST = {"04_training": {"EPOCHS": "1"}, "05_mobile_export": {"EPOCHS": "1"}}
RUN_TIMEOUT_S = 900  # Run All of one notebook, kernel start included (05 exports: minutes)

# JavaScript run in the page (JupyterLab started with expose_app_in_browser).
NOTEBOOK = "window.jupyterapp.shell.currentWidget"
ALL_DONE = f"""() => {{
    const panel = {NOTEBOOK};
    if (!panel || !panel.sessionContext || !panel.sessionContext.session) return false;
    const kernel = panel.sessionContext.session.kernel;
    const cells = panel.content.model.cells;
    if (!kernel || kernel.status !== 'idle') return false;
    let done = true;
    for (let i = 0; i < cells.length; i++) {{
        const cell = cells.get(i);
        if (cell.type !== 'code') continue;
        // an error stops Run All: the cells below it never run, so stop waiting (check_clean
        // then reports the error instead of a time-out)
        if (cell.toJSON().outputs.some(o => o.output_type === 'error')) return true;
        if (cell.sharedModel.source.trim() &&
            (cell.executionCount === null || cell.executionState === 'running')) done = false;
    }}
    return done;
}}"""
OUTPUTS = f"""() => {{
    const cells = {NOTEBOOK}.content.model.cells, out = [];
    for (let i = 0; i < cells.length; i++) {{
        const cell = cells.get(i);
        out.push(cell.type === 'code' ? cell.toJSON().outputs : []);
    }}
    return out;
}}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fast_copy(source: Path, target: Path) -> None:
    """The notebook with the fast parameter values of FAST put into its parameters cell."""
    nb = json.loads(source.read_text())
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            lines = []
            for line in "".join(cell["source"]).split("\n"):
                name = line.split("=")[0].strip()
                value = FAST.get(source.stem, {}).get(name)
                lines.append(f"{name} = {value}  # browser test: fast" if value else line)
            cell["source"] = "\n".join(lines)
    target.write_text(json.dumps(nb, indent=1))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A JupyterLab server on 127.0.0.1 over a copy of the notebooks; yields its base URL."""
    if CHROMIUM is None:
        pytest.skip("Chromium not found (apt-get install chromium, or set CYCLELIB_CHROMIUM)")
    pytest.importorskip("playwright.sync_api", reason="Playwright missing (pip install playwright)")
    root = tmp_path_factory.mktemp("lab")
    for notebook in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        _fast_copy(notebook, root / notebook.name)
    settings_dir = tmp_path_factory.mktemp("lab-settings")
    workspaces = tmp_path_factory.mktemp("lab-workspaces")  # no tabs restored from a past run
    settings = settings_dir / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)  # no "Jupyter news?" pop-up over the screenshots
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    port, token = _free_port(), secrets.token_hex(16)
    log = (root / "jupyterlab.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
         "--ServerApp.open_browser=False", "--LabApp.news_url=None", "--allow-root",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         f"--LabApp.workspaces_dir={workspaces}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=root,
        env={**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings_dir)})
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            if server.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"JupyterLab did not start: {(root / 'jupyterlab.log').read_text()}")
        # one fresh workspace per notebook: no tab of an earlier test is restored beside it
        yield f"{base}/lab/workspaces/{{workspace}}/tree/{{name}}?reset&token={token}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def browser(lab: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


class Learner:
    """One notebook open in a JupyterLab tab."""

    def __init__(self, browser, lab: str, name: str) -> None:
        self.name = name
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.console_errors: list[str] = []
        self.page.on("pageerror", lambda error: self.console_errors.append(str(error)))
        self.page.goto(lab.format(workspace=name.replace("_", "-"), name=f"{name}.ipynb"))
        self.page.wait_for_function(
            f"() => window.jupyterapp && {NOTEBOOK} && {NOTEBOOK}.sessionContext && "
            f"{NOTEBOOK}.sessionContext.session && {NOTEBOOK}.sessionContext.session.kernel && "
            f"{NOTEBOOK}.sessionContext.session.kernel.status === 'idle'", timeout=120_000)

    def run_all(self) -> None:
        self.page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        self.page.wait_for_timeout(1000)
        self.page.wait_for_function(ALL_DONE, timeout=RUN_TIMEOUT_S * 1000, polling=1000)

    def outputs(self) -> list[list[dict]]:
        return self.page.evaluate(OUTPUTS)

    def save(self, label: str) -> None:
        """A screenshot (scrolled to the widget, if any) and the outputs, in ARTIFACTS."""
        ARTIFACTS.mkdir(exist_ok=True)
        widget = self.page.locator(".jp-OutputArea .widget-vbox")
        if widget.count():
            widget.first.scroll_into_view_if_needed()
            self.page.wait_for_timeout(1000)  # the notebook draws the cells scrolled into view
        self.page.screenshot(path=str(ARTIFACTS / f"{self.name}.{label}.png"), full_page=True)
        (ARTIFACTS / f"{self.name}.{label}.outputs.json").write_text(json.dumps(self.outputs()))

    def check_clean(self) -> None:
        outputs = self.outputs()
        errors = [o for cell in outputs for o in cell if o["output_type"] == "error"]
        assert not errors, f"{errors[0]['ename']}: {errors[0]['evalue']}"
        for cell in outputs:
            pngs = [o["data"]["image/png"] for o in cell if "image/png" in o.get("data", {})]
            assert len(pngs) == len(set(pngs)), "a figure is drawn twice"
        shown = self.page.evaluate(f"{NOTEBOOK}.node.innerText")
        assert "Error displaying widget" not in shown, "a widget failed to display"
        assert not self.console_errors, self.console_errors

    def count(self, selector: str) -> int:
        return self.page.locator(f".jp-OutputArea {selector}").count()

    def widget_image(self) -> str:
        return self.page.locator(".jp-OutputArea .widget-image").first.get_attribute("src")

    def wait_for_new_image(self, before: str) -> str:
        self.page.wait_for_function(
            "before => { const i = document.querySelector('.jp-OutputArea .widget-image');"
            " return i && i.getAttribute('src') !== before; }", arg=before, timeout=120_000)
        return self.widget_image()


@contextmanager
def notebook_run(browser, lab: str, name: str) -> Iterator[Learner]:
    """Open ``name``, Run All, check it; yield it to move its widgets; then check it again.

    Screenshots and outputs are saved after the run ("ran"), at the end ("moved") or on a
    failure ("failed"); the kernel is shut down and the tab closed either way.
    """
    learner = Learner(browser, lab, name)
    try:
        learner.run_all()
        learner.check_clean()
        learner.save("ran")
        yield learner
        learner.check_clean()
        learner.save("moved")
    except BaseException:
        learner.save("failed")
        raise
    finally:
        learner.page.evaluate(f"{NOTEBOOK}.sessionContext.shutdown()")
        learner.page.close()


def test_01_class_player(browser, lab: str) -> None:
    with notebook_run(browser, lab, "01_data_exploration") as learner:
        assert learner.count("img") >= 5 and learner.count("audio") == 1
        select = learner.page.locator(".jp-OutputArea .widget-dropdown select").first
        title = learner.page.locator(".jp-OutputArea .widget-html").first
        for option in ["crackle", "wheeze", "both", "normal"]:
            before = title.inner_text()
            select.select_option(option)
            learner.page.wait_for_function(
                "o => { const t = document.querySelector('.jp-OutputArea .widget-html');"
                " return t && t.innerText.startsWith(o + ':'); }", arg=option, timeout=60_000)
            assert before != title.inner_text() and learner.count("audio") == 1


def _slide_to_both_ends(learner: Learner) -> int:
    """Every slider of the widget to both ends (the keys a learner can use: Home, End), the far
    end first; returns how many moves redrew the figure (two per slider)."""
    redraws = 0
    handles = learner.page.locator(".jp-OutputArea .noUi-handle")
    for index in range(handles.count()):
        handle = handles.nth(index)
        ends = [("Home", "aria-valuemin"), ("End", "aria-valuemax")]
        if handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemin"):
            ends.reverse()  # starts at the first option: to the last, then back
        for key, end in ends:
            before = learner.widget_image()
            handle.focus()
            handle.press(key)
            learner.wait_for_new_image(before)
            assert handle.get_attribute("aria-valuenow") == handle.get_attribute(end)
            redraws += 1
    return redraws


def test_02_spectrogram_explorer(browser, lab: str) -> None:
    with notebook_run(browser, lab, "02_hybrid_spectrogram") as learner:
        assert learner.count("img") >= 10 and learner.count(".widget-image") == 1
        select = learner.page.locator(".jp-OutputArea .widget-dropdown select").first
        options = select.locator("option").all_inner_texts()
        for option in options[1:] + options[:1]:
            before = learner.widget_image()
            select.select_option(option)
            learner.wait_for_new_image(before)
        assert _slide_to_both_ends(learner) == 6  # rows, hop, fmax: both ends each


def test_03_cluster_timeline(browser, lab: str) -> None:
    with notebook_run(browser, lab, "03_model") as learner:
        assert learner.count(".widget-image") == 1 and learner.count("img") >= 2
        assert _slide_to_both_ends(learner) == 2  # the cycle slider: last, then first again


@pytest.mark.parametrize("name", ["04_training", "05_mobile_export"])
def test_chapters_without_widgets(browser, lab: str, name: str) -> None:
    with notebook_run(browser, lab, name) as learner:
        assert learner.count("img") >= 2
