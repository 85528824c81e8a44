"""download_icbhi against a local HTTP server holding a tiny official-style archive (DESIGN §2)."""

from __future__ import annotations

import functools
import hashlib
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pooch
import pytest
import requests
import soundfile as sf

import cyclelib.data.download as download
from cyclelib.data import check_data
from cyclelib.data.download import ARCHIVE, REGISTRY, download_icbhi
from cyclelib.data.icbhi import DIAGNOSIS_FILE, SPLIT_FILE

RECORDINGS = {"101_1b1_Al_sc_Meditron": ("0.1\t1.0\t0\t0\n1.0\t1.9\t1\t0\n", "train"),
              "102_1b1_Ar_sc_LittC2SE": ("0.2\t1.5\t0\t1\n", "test")}  # fmt: skip


class QuietHandler(SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        QuietHandler.requests.append(self.path)
        super().do_GET()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """Serve the archive (two 4 kHz recordings in a folder, a stray text file), the split and
    the diagnosis on 127.0.0.1; yields the base URL and the files' sha256 registry."""
    site = tmp_path / "site"
    site.mkdir()
    with zipfile.ZipFile(site / ARCHIVE, "w") as zf:
        for name, (annotation, _) in RECORDINGS.items():
            wav = tmp_path / f"{name}.wav"
            sf.write(wav, np.random.default_rng(0).uniform(-0.5, 0.5, 8000), 4000)
            zf.write(wav, f"ICBHI_final_database/{name}.wav")
            zf.writestr(f"ICBHI_final_database/{name}.txt", annotation)
        zf.writestr("ICBHI_final_database/filename_format.txt", "patient number\trecording index\n")
    split = "".join(f"{name}\t{split}\r\n" for name, (_, split) in RECORDINGS.items())
    (site / SPLIT_FILE).write_text(split.replace("LittC2SE", "Meditron"))  # a device alias
    (site / DIAGNOSIS_FILE).write_text("101\tURTI\n102\tHealthy\n")
    handler = functools.partial(QuietHandler, directory=str(site))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    QuietHandler.requests = []
    try:
        yield (
            f"http://127.0.0.1:{httpd.server_address[1]}/",
            {name: sha256(site / name) for name in REGISTRY},
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_download_lays_out_and_checks(tmp_path: Path, server) -> None:
    base_url, registry = server
    dest = download_icbhi(tmp_path / "icbhi", base_url=base_url, registry=registry, progress=False)
    names = sorted(p.name for p in dest.iterdir())
    assert {f"{n}.{ext}" for n in RECORDINGS for ext in ("wav", "txt")} <= set(names)
    assert "filename_format.txt" in names and not (dest / "ICBHI_final_database").exists()
    report = check_data(dest)
    assert report["problems"] == [] and report["recordings_with_audio"] == 2
    assert report["cycles"] == 3 and report["split"]["test"]["wheeze"] == 1
    assert report["aliases"] == {"102_1b1_Ar_sc_Meditron": "102_1b1_Ar_sc_LittC2SE"}
    assert len(QuietHandler.requests) == 3
    download_icbhi(dest, base_url=base_url, registry=registry, progress=False)
    assert len(QuietHandler.requests) == 3  # cached: nothing fetched again


def test_default_folder_is_the_cache(tmp_path: Path, server, monkeypatch) -> None:
    base_url, registry = server
    monkeypatch.setenv("CYCLELIB_CACHE", str(tmp_path / "cache"))
    dest = download_icbhi(base_url=base_url, registry=registry, progress=False)
    assert dest == tmp_path / "cache" / "icbhi"
    assert (dest / "101_1b1_Al_sc_Meditron.wav").is_file()


def test_unknown_hashes_still_download(tmp_path: Path, server) -> None:
    base_url, _ = server
    assert set(REGISTRY) == {ARCHIVE, SPLIT_FILE, DIAGNOSIS_FILE}
    assert all(value is None for value in REGISTRY.values())
    dest = download_icbhi(tmp_path / "d", base_url=base_url, progress=False)
    assert check_data(dest)["recordings"] == 2


def test_wrong_hash_fails_clearly(tmp_path: Path, server) -> None:
    base_url, registry = server
    registry = {**registry, SPLIT_FILE: "0" * 64}
    with pytest.raises(ValueError, match=f"{SPLIT_FILE} from {base_url}{SPLIT_FILE} failed"):
        download_icbhi(tmp_path / "d", base_url=base_url, registry=registry, progress=False)
    assert not (tmp_path / "d" / SPLIT_FILE).exists()


def test_problems_are_warned(tmp_path: Path, server) -> None:
    base_url, registry = server
    del registry[DIAGNOSIS_FILE]  # fine: optional
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "103_1b1_Al_sc_Meditron.wav").write_bytes(b"junk")  # stale file in the folder
    with pytest.warns(UserWarning, match="103_1b1_Al_sc_Meditron.wav: audio without an"):
        download_icbhi(dest, base_url=base_url, registry=registry, progress=False)


@pytest.mark.parametrize("verify_tls", [True, False])
def test_verify_tls_reaches_the_downloader(tmp_path: Path, server, monkeypatch, verify_tls) -> None:
    seen = []

    class Recording(pooch.HTTPDownloader):
        def __init__(self, **kwargs) -> None:
            seen.append(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(download.pooch, "HTTPDownloader", Recording)
    base_url, registry = server
    download_icbhi(tmp_path / "d", base_url, registry, verify_tls=verify_tls, progress=False)
    assert seen == [{"progressbar": False, "verify": verify_tls}]


def test_tls_failure_suggests_verify_false(tmp_path: Path, monkeypatch) -> None:
    def broken_tls(url, output_file, pooch_instance, check_only=False):
        raise requests.exceptions.SSLError("certificate verify failed")

    monkeypatch.setattr(download.pooch.HTTPDownloader, "__call__", broken_tls)
    with pytest.raises(ConnectionError, match="retry with verify_tls=False"):
        download_icbhi(tmp_path / "d", base_url="https://example.invalid/", progress=False)
