"""Shared fixtures: the real ICBHI folder (skipped with a reason when absent), a private cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ICBHI_DIR = Path(os.environ.get("CYCLELIB_ICBHI", REPO.parent / "shared" / "icbhi"))


@pytest.fixture(scope="session")
def icbhi_dir() -> Path:
    """The real ICBHI folder (``$CYCLELIB_ICBHI`` or ``../shared/icbhi``); skip when absent."""
    if not (ICBHI_DIR / "ICBHI_challenge_train_test.txt").is_file():
        pytest.skip(f"real ICBHI data not found at {ICBHI_DIR} (set CYCLELIB_ICBHI to its folder)")
    return ICBHI_DIR


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep every test's cache writes (features, synthetic set) out of the user's cache."""
    os.environ.setdefault("CYCLELIB_CACHE", str(tmp_path_factory.mktemp("cyclelib-cache")))
