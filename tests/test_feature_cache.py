"""The feature cache (DESIGN §4): built once, reused, never served stale or corrupt."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from cyclelib import feature_cache
from cyclelib.data import AudioError, cut_cycle, load_recording
from cyclelib.feature_cache import DATA_FILE, MANIFEST, cached_features
from cyclelib.features import FeatureConfig, HybridSpectrogram


class CountingSpectrogram(HybridSpectrogram):
    """HybridSpectrogram that records the batch size of every forward call."""

    calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        CountingSpectrogram.calls.append(x.shape[0])
        return super().forward(x)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    CountingSpectrogram.calls = []
    monkeypatch.setattr(feature_cache, "HybridSpectrogram", CountingSpectrogram)
    return CountingSpectrogram.calls


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """Two tiny recordings (4 kHz and 44.1 kHz, like ICBHI's) and their 5 cycles."""
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, rate, seconds in (("101_1b1_Al_sc_Meditron", 4000, 9.0),
                                ("102_1b1_Ar_sc_AKGC417L", 44100, 5.0)):
        wave = 0.1 * rng.standard_normal(int(rate * seconds))
        sf.write(folder / f"{name}.wav", wave.astype(np.float32), rate, subtype="PCM_16")
    cycles = pd.DataFrame({
        "recording": ["101_1b1_Al_sc_Meditron"] * 3 + ["102_1b1_Ar_sc_AKGC417L"] * 2,
        "start": [0.2, 2.5, 5.0, 0.0, 2.0],
        "end": [2.5, 5.0, 8.9, 2.0, 4.9],
    })
    return folder, cycles


def build(data, root: Path, **kwargs) -> np.memmap:
    folder, cycles = data
    return cached_features(cycles, folder, cache_root=root, progress=False, **kwargs)


def test_features_in_row_order_then_reused(data, calls, tmp_path: Path) -> None:
    folder, cycles = data
    first = build(data, tmp_path / "cache", batch_size=4)
    assert isinstance(first, np.memmap) and first.dtype == np.float16
    assert first.shape == (5, 3, 84, 688)
    assert calls == [4, 1]  # batches span recordings
    # row i is the spectrogram of cycle i
    module = HybridSpectrogram().eval()
    for i in (0, 3, 4):
        row = cycles.iloc[i]
        wave = cut_cycle(load_recording(folder / f"{row.recording}.wav"), 22000, row.start,
                         row.end)
        with torch.inference_mode():
            expected = module(torch.from_numpy(wave)[None])[0].numpy()
        np.testing.assert_allclose(first[i].astype(np.float32), expected, atol=0.01)
    again = build(data, tmp_path / "cache", batch_size=4)
    assert calls == [4, 1]  # not recomputed
    np.testing.assert_array_equal(again, first)
    assert not again.flags.writeable


def test_changed_config_gets_its_own_cache(data, calls, tmp_path: Path) -> None:
    base = build(data, tmp_path / "cache")
    other = build(data, tmp_path / "cache", config=FeatureConfig(eps=1e-3))
    assert len(calls) == 2
    assert base.filename != other.filename
    build(data, tmp_path / "cache")
    assert len(calls) == 2  # the first config's cache is still valid


def test_cache_of_an_older_format_is_not_served(data, calls, tmp_path: Path, monkeypatch) -> None:
    """A cache written before HybridSpectrogram's numbers changed (format 2: the biased row std)
    is ignored: the features are computed again."""
    assert feature_cache.CACHE_FORMAT == 3
    monkeypatch.setattr(feature_cache, "CACHE_FORMAT", 2)
    old = build(data, tmp_path / "cache")
    monkeypatch.setattr(feature_cache, "CACHE_FORMAT", 3)
    new = build(data, tmp_path / "cache")
    assert len(calls) == 2 and old.filename != new.filename


def test_changed_file_or_rows_invalidate(data, calls, tmp_path: Path) -> None:
    folder, cycles = data
    build(data, tmp_path / "cache")
    wav = folder / "102_1b1_Ar_sc_AKGC417L.wav"
    stat = wav.stat()
    os.utime(wav, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # touched
    build(data, tmp_path / "cache")
    assert len(calls) == 2
    moved = cycles.assign(end=cycles["end"].where(cycles.index != 4, 4.0))  # a row changed
    cached_features(moved, folder, cache_root=tmp_path / "cache", progress=False)
    assert len(calls) == 3


@pytest.mark.parametrize("damage", ["no manifest", "truncated", "bad rows", "bad manifest"])
def test_corrupt_cache_is_rebuilt(data, calls, tmp_path: Path, damage: str) -> None:
    good = np.array(build(data, tmp_path / "cache"))
    folder = next((tmp_path / "cache").iterdir())
    if damage == "no manifest":  # a build interrupted before its last step
        (folder / MANIFEST).unlink()
    elif damage == "truncated":
        with open(folder / DATA_FILE, "rb+") as handle:
            handle.truncate(1000)
    elif damage == "bad rows":
        raw = np.memmap(folder / DATA_FILE, dtype=np.float16, mode="r+")
        raw[-500:] = 7.0  # inside the last row, one of the checksummed rows
        raw.flush()
        del raw
    else:
        manifest = json.loads((folder / MANIFEST).read_text())
        (folder / MANIFEST).write_text(json.dumps(manifest)[:-10])
    rebuilt = build(data, tmp_path / "cache")
    assert len(calls) == 2
    np.testing.assert_array_equal(rebuilt, good)


def test_missing_audio_fails_and_leaves_no_cache(data, tmp_path: Path) -> None:
    folder, cycles = data
    extra = pd.DataFrame({"recording": ["103_2b2_Ar_mc_LittC2SE"], "start": [0.0], "end": [1.0]})
    with pytest.raises(AudioError, match="103_2b2_Ar_mc_LittC2SE"):
        cached_features(pd.concat([cycles, extra], ignore_index=True), folder,
                        cache_root=tmp_path / "cache", progress=False)
    leftovers = list((tmp_path / "cache").rglob("*"))
    assert not [p for p in leftovers if p.name == MANIFEST or p.suffix == ".partial"]


def test_empty_table_is_refused(data, tmp_path: Path) -> None:
    folder, cycles = data
    with pytest.raises(ValueError, match="at least one cycle"):
        cached_features(cycles.iloc[:0], folder, cache_root=tmp_path / "cache")


def test_waveform_cache_and_row_reads(data, tmp_path: Path) -> None:
    from cyclelib.data import load_cycle_waveforms
    from cyclelib.feature_cache import cached_waveforms, read_rows
    from cyclelib.prepare import WaveRows

    folder, cycles = data
    waves = cached_waveforms(cycles, folder, cache_root=tmp_path / "w", progress=False)
    expected = load_cycle_waveforms(cycles, folder, progress=False)
    assert isinstance(waves, np.memmap) and waves.dtype == np.float32
    np.testing.assert_array_equal(waves, expected)
    again = cached_waveforms(cycles, folder, cache_root=tmp_path / "w", progress=False)
    assert again.filename == waves.filename  # reused, not rebuilt
    index = np.array([0, 3, 4])
    np.testing.assert_array_equal(read_rows(waves, index), expected[index])
    np.testing.assert_array_equal(read_rows(expected, index), expected[index])
    features = build(data, tmp_path / "f")
    np.testing.assert_array_equal(read_rows(features, index), features[index])
    view = WaveRows(waves, np.array([10, 11, 12, 13, 14])).of(np.array([14, 11]))
    assert len(view) == 2
    np.testing.assert_array_equal(view[np.array([1, 0])], expected[[1, 4]])
    with pytest.raises(KeyError):
        WaveRows(waves, np.array([10, 11, 12, 13, 14])).of(np.array([15]))
