"""The machinery every exercise check shares (docs/teaching.md, "Exercises").

An exercise in a notebook is four cells: a markdown task, a code cell tagged ``exercise`` (the
stub, with ``...`` where the learner writes), a code cell tagged ``solution`` (the reference
answer; the student edition drops it) and a call ``check("2.1", answer)``. :func:`check` prints
exactly one line, ``✓ Exercise 2.1: ...`` or ``✗ Exercise 2.1: <hint>``, and never raises for a
wrong, partial or missing answer: the learner's code runs inside it, and whatever it raises
becomes the hint.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

NOT_DONE = "not done yet"


class Wrong(Exception):
    """Raised by a checker: the answer is wrong; the message is the hint the learner reads."""


class NotDone(Exception):
    """Raised by a checker: the answer is still the stub (``...`` or a function returning None)."""


@dataclass(frozen=True)
class Exercise:
    number: str  # "2.1": chapter 2 (notebook 02), first exercise
    title: str  # what the learner writes, a few words
    checker: Callable[[Any], str]  # the answer -> the success detail; raises Wrong or NotDone


EXERCISES: dict[str, Exercise] = {}


def exercise(number: str, title: str) -> Callable[[Callable[[Any], str]], Callable[[Any], str]]:
    """Register ``checker`` as the check of exercise ``number`` (a decorator)."""

    def register(checker: Callable[[Any], str]) -> Callable[[Any], str]:
        if number in EXERCISES:
            raise ValueError(f"exercise {number} is registered twice")
        EXERCISES[number] = Exercise(number, title, checker)
        return checker

    return register


class Checked:
    """What :func:`check` returns: true when the answer is right. A notebook shows nothing for
    it: the line :func:`check` printed is the cell's whole output (a bare ``True`` under it
    would be a second line)."""

    __slots__ = ("passed",)

    def __init__(self, passed: bool) -> None:
        self.passed = passed

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"Checked(passed={self.passed})"

    def _ipython_display_(self) -> None:
        """IPython's hook for the value of a cell: display nothing."""


def check(number: str, answer: Any) -> Checked:
    """Check the learner's ``answer`` to exercise ``number``; print one line; true when right.

    Never raises for the answer: a stub gives "✗ ... not done yet", a wrong answer its hint, an
    exception inside the learner's code its type and message. An unknown number is a mistake in
    the notebook, not the learner's: that raises KeyError naming the known exercises.
    """
    if number not in EXERCISES:
        raise KeyError(f"no exercise {number!r}; known: {', '.join(sorted(EXERCISES))}")
    ex = EXERCISES[number]
    try:
        if is_stub(answer):
            raise NotDone
        line, passed = f"✓ Exercise {number}: {ex.title}: {ex.checker(answer)}", True
    except NotDone:
        line, passed = f"✗ Exercise {number}: {NOT_DONE} ({ex.title})", False
    except Wrong as wrong:
        line, passed = f"✗ Exercise {number}: {wrong}", False
    except Exception as error:  # the learner's code raised: say what, never re-raise
        hint = f"your code raised {type(error).__name__}: {error}"
        line, passed = f"✗ Exercise {number}: {hint}", False
    sys.stdout.write(" ".join(line.split()) + "\n")  # one line in one write, whatever the hints
    return Checked(passed)


def is_stub(value: Any) -> bool:
    """True for what a stub leaves: ``...``, None, or a container holding ``...``."""
    if value is ... or value is None:
        return True
    if isinstance(value, dict):
        return any(is_stub(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(v is ... for v in value)
    return False


def call(function: Any, *args: Any, **kwargs: Any) -> Any:
    """The learner's ``function`` called on the arguments; NotDone when it returns a stub."""
    if not callable(function):
        raise Wrong(f"expected a function, got {type(function).__name__}")
    result = function(*args, **kwargs)
    if is_stub(result):
        raise NotDone
    return result


def expect_equal(got: Any, want: Any, what: str) -> None:
    """Wrong naming ``what`` unless ``got == want`` (exactly, element by element for arrays)."""
    try:
        same = bool(np.array_equal(np.asarray(got), np.asarray(want)))
    except (TypeError, ValueError):
        same = False
    if not same:
        raise Wrong(f"{what}: expected {_short(want)}, got {_short(got)}")


def expect_close(got: Any, want: Any, what: str, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Wrong naming ``what`` unless ``got`` has ``want``'s shape and is within tolerance of it."""
    want = np.asarray(want, dtype=np.float64)
    try:
        got = np.asarray(got.detach().cpu() if hasattr(got, "detach") else got, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise Wrong(f"{what}: expected numbers, got {_short(got)} ({error})") from None
    if got.shape != want.shape:
        raise Wrong(f"{what}: expected shape {want.shape}, got {got.shape}")
    if not np.allclose(got, want, rtol=rtol, atol=atol):
        worst = float(np.max(np.abs(got - want)))
        raise Wrong(f"{what}: off by up to {worst:.3g} (expected e.g. {_short(want)}, "
                    f"got {_short(got)})")


def _short(value: Any) -> str:
    text = np.array2string(value, threshold=6, precision=4) if isinstance(value, np.ndarray) \
        else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
