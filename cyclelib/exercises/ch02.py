"""The checks of notebook 02's exercises (docs/teaching.md)."""

from __future__ import annotations
