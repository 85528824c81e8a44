"""Where cyclelib keeps files it makes: the cache folder (features, synthetic set, downloads).

Like librosa's data cache, the folder is ``pooch.os_cache("cyclelib")`` unless the environment
variable ``CYCLELIB_CACHE`` names another one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pooch

CACHE_ENV = "CYCLELIB_CACHE"  # overrides the cache folder


def cache_dir(*parts: str) -> Path:
    """The cache folder (``$CYCLELIB_CACHE`` or the OS cache), joined with ``parts``, created."""
    root = Path(os.environ.get(CACHE_ENV) or pooch.os_cache("cyclelib")).expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
