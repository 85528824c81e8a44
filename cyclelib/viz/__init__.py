"""Plots and widgets for the notebooks, one module per topic (data, spectrogram, model, training).

:func:`interactive` tells a notebook whether to build a widget (:mod:`cyclelib.viz.widgets`) or to
draw one static figure. Both paths work in every kernel, papermill's and nbval's included.
"""

from __future__ import annotations

import os


def interactive() -> bool:
    """True in a Jupyter kernel (a JupyterLab tab, papermill, nbval), False in plain Python.

    Set ``CYCLELIB_HEADLESS=1`` to draw the static figures instead of widgets, for example when
    converting executed notebooks to HTML or PDF.
    """
    if os.environ.get("CYCLELIB_HEADLESS") == "1":
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
