"""Plots and widgets for the notebooks, one module per topic (data, spectrogram, model, training).

Widgets only make sense in a live Jupyter frontend; :func:`interactive` tells a notebook whether to
build one or to draw a single static figure (papermill, nbval and CI run headless).
"""

from __future__ import annotations

import os


def interactive() -> bool:
    """True inside a live Jupyter frontend, False under papermill/nbval/CI or plain Python.

    A papermill or nbval kernel looks like a live one, so the test harness sets
    ``CYCLELIB_HEADLESS=1`` (CI's ``CI=true`` does the same) to force False.
    """
    if os.environ.get("CYCLELIB_HEADLESS") == "1" or os.environ.get("CI"):
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
