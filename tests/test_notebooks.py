"""Every notebook runs top to bottom with papermill on the real ICBHI folder.

(``pytest`` also runs each notebook with its default, synthetic parameters under nbval.) The
executed copies go to a temporary folder, never into the repository.
"""

from __future__ import annotations

import pytest

from conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# Real-data runs keep the notebooks' fast defaults except the data folder, and train one epoch
# where a notebook trains (five runs in 04): they check the code path on real audio, not results.
EXTRA_PARAMETERS: dict[str, dict] = {"04_training": {"EPOCHS": 1}}


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs_on_real_data(notebook, icbhi_dir, tmp_path) -> None:
    papermill = pytest.importorskip("papermill")
    parameters = {"DATA_DIR": str(icbhi_dir), **EXTRA_PARAMETERS.get(notebook.stem, {})}
    papermill.execute_notebook(
        str(notebook),
        str(tmp_path / notebook.name),
        parameters=parameters,
        cwd=str(notebook.parent),
        kernel_name="python3",
        progress_bar=False,
    )


def test_committed_notebooks_carry_no_outputs() -> None:
    import json

    assert NOTEBOOKS, "no notebooks found"
    for nb in NOTEBOOKS:
        cells = json.loads(nb.read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert all(not c["outputs"] and c["execution_count"] is None for c in code), nb.name
        tags = code[0].get("metadata", {}).get("tags", [])
        assert "parameters" in tags, f"{nb.name}: first code cell must be tagged 'parameters'"
