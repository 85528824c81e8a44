"""The checks of notebook 01's exercises (docs/teaching.md)."""

from __future__ import annotations
