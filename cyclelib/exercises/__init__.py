"""Exercises with checks: ``check("2.1", answer)`` prints ✓ or ✗ with a hint (docs/teaching.md).

The checks of each chapter live in ``ch01`` ... ``ch05``; importing this package registers them.
"""

from cyclelib.exercises import ch01, ch02, ch03, ch04, ch05  # noqa: F401  (they register)
from cyclelib.exercises._core import EXERCISES, NOT_DONE, Checked, Exercise, check

__all__ = ["EXERCISES", "NOT_DONE", "Checked", "Exercise", "check"]
