"""Download the official ICBHI 2017 files with pooch (DESIGN §2).

The archive ``ICBHI_final_database.zip`` and, in the same folder of the host, the official split
and diagnosis files. The archive's ``.wav`` and ``.txt`` files are flattened into one folder
beside the split and diagnosis files, the layout :func:`cyclelib.data.folder.scan_icbhi` reads, and
the result is checked like :func:`cyclelib.data.folder.check_data` does.

The host's TLS certificate is often broken: ``verify_tls=False`` skips certificate checks (the
files are still compared with the registry's sha256 hashes when those are known).
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import pooch
import requests

from cyclelib.data.folder import scan_icbhi
from cyclelib.data.icbhi import DIAGNOSIS_FILE, SPLIT_FILE, DataError
from cyclelib.paths import cache_dir

BASE_URL = "https://bhichallenge.med.auth.gr/sites/default/files/ICBHI_final_database/"
ARCHIVE = "ICBHI_final_database.zip"
# File name -> sha256. None: the real hashes are unknown (the host was unreachable when this
# was written), so the first download is not verified; pooch logs the hash it computed, which
# belongs here ("sha256:<hex>" or the bare hex).
REGISTRY: dict[str, str | None] = {ARCHIVE: None, SPLIT_FILE: None, DIAGNOSIS_FILE: None}


def _fetch(name: str, base_url: str, known_hash: str | None, dest: Path, downloader) -> Path:
    """Download ``base_url + name`` into ``dest`` (kept: later calls reuse it) and verify it."""
    url = base_url.rstrip("/") + "/" + name
    try:
        return Path(pooch.retrieve(url, known_hash, fname=name, path=dest, downloader=downloader))
    except ValueError as err:  # pooch's hash mismatch
        raise ValueError(f"{name} from {url} failed verification: {err}") from err
    except requests.exceptions.SSLError as err:
        raise ConnectionError(
            f"TLS certificate check failed for {url} ({err}); the ICBHI host's certificate is "
            "often broken: retry with verify_tls=False (the sha256 hashes still apply)"
        ) from err


def _extract_flat(archive: Path, dest: Path) -> int:
    """Extract the archive's ``.wav`` and ``.txt`` files into ``dest`` without their folders.

    Files already there with the right size are kept. Returns the number of files written.
    """
    written = 0
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            name = Path(member.filename).name
            if member.is_dir() or name.startswith("._") or "__MACOSX" in member.filename:
                continue  # folders and macOS resource forks
            if Path(name).suffix.lower() not in (".wav", ".txt"):
                continue
            target = dest / name
            if target.is_file() and target.stat().st_size == member.file_size:
                continue
            target.write_bytes(zf.read(member))
            written += 1
    return written


def download_icbhi(
    dest: str | Path | None = None,
    base_url: str = BASE_URL,
    registry: dict[str, str | None] | None = None,
    verify_tls: bool = True,
    progress: bool = True,
) -> Path:
    """Download (once) and lay out the official ICBHI files; return the data folder.

    ``dest`` defaults to ``paths.cache_dir("icbhi")`` (``$CYCLELIB_CACHE`` overrides the cache).
    ``registry`` maps the file names (``REGISTRY``'s keys) to sha256 hashes or None; a mismatch
    raises ValueError naming the file. Problems that ``check_data`` would report are issued as a
    warning (the files stay in place for inspection); ``load_icbhi`` refuses them later.
    """
    registry = REGISTRY if registry is None else registry
    dest = cache_dir("icbhi") if dest is None else Path(dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    downloader = pooch.HTTPDownloader(progressbar=progress, verify=verify_tls)
    for name in registry:
        path = _fetch(name, base_url, registry[name], dest, downloader)
        if path.suffix.lower() == ".zip":
            _extract_flat(path, dest)
    data = scan_icbhi(dest)
    missing = int((~data.recordings["has_audio"]).sum())
    if data.problems or missing:
        problems = str(DataError(data.problems)) if data.problems else "no problems"
        message = f"ICBHI files in {dest}: {missing} recording(s) without audio; {problems}"
        warnings.warn(message, stacklevel=2)
    return dest
