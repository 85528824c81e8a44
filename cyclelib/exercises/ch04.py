"""The checks of notebook 04's exercises (docs/teaching.md)."""

from __future__ import annotations
