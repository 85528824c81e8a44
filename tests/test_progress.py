"""Progress bars in a log file (cyclelib.progress): a few lines, not one per step."""

from __future__ import annotations

import io
import time

import cyclelib.progress as progress
from cyclelib.progress import progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(stream: io.StringIO, steps: int = 20, seconds: float = 0.03) -> int:
    """Redraws written while ``steps`` steps of ``seconds`` each run (tqdm starts each with a
    carriage return; closing the bar ends its line)."""
    for _ in progress_bar(range(steps), desc="epoch 1", file=stream):
        time.sleep(seconds)
    text = stream.getvalue()
    return text.count("\r") + text.count("\n")


def test_a_bar_in_a_log_writes_its_first_and_last_state_only() -> None:
    assert progress.LOG_INTERVAL >= 10
    log, terminal = io.StringIO(), Terminal()
    in_log = _lines(log)
    assert "20/20" in log.getvalue()  # the last state is written
    assert in_log <= 3
    assert _lines(terminal) >= 6  # a terminal redraws in place as usual (tqdm's 0.1 s)


def test_the_caller_keeps_the_last_word_on_the_interval() -> None:
    log = io.StringIO()
    for _ in progress_bar(range(12), file=log, mininterval=0):
        time.sleep(0.01)
    assert log.getvalue().count("\r") >= 12
