"""The checks of notebook 05's exercises (docs/teaching.md)."""

from __future__ import annotations
