"""Progress bars (``tqdm.auto``) that stay readable in a log file.

In a terminal a bar redraws in place, and in a notebook it is a widget. When standard error is a
file or a pipe (a CI log, ``nohup``, a GPU job's output), every redraw is a new line: at ICBHI's
full size the training bars gave about two lines a step (502 lines for ``reproduce --epochs 2``
of the small recipe). There a bar redraws at most every ``LOG_INTERVAL`` seconds, plus its
first and last state.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm.auto import tqdm
from tqdm.autonotebook import tqdm as chosen_bar
from tqdm.std import tqdm as text_bar

LOG_INTERVAL = 30.0  # seconds between two lines of a bar written to a log
IN_NOTEBOOK = chosen_bar is not text_bar  # tqdm.auto picked its notebook widget (a kernel)


def progress_bar(iterable: Iterable | None = None, **options: object) -> tqdm:
    """``tqdm.auto.tqdm(iterable, **options)``, redrawn every ``LOG_INTERVAL`` s at most when
    it writes to a log rather than to a terminal or a notebook (``mininterval``)."""
    if not IN_NOTEBOOK and not _is_terminal(options.get("file") or sys.stderr):
        options.setdefault("mininterval", LOG_INTERVAL)
    return tqdm(iterable, **options)


def _is_terminal(stream: object) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
