"""The checks of notebook 03's exercises (docs/teaching.md)."""

from __future__ import annotations
