"""The data entry point (DESIGN §2-3): which folder, which cycles have audio, samples of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cyclelib.data import (
    cut_cycle,
    cycles_with_audio,
    load_cycle_waveforms,
    load_recording,
    make_synthetic_icbhi,
    resolve_data_dir,
    sample_cycles,
    scan_icbhi,
    synthetic_dir,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-patient synthetic ICBHI folder."""
    return make_synthetic_icbhi(tmp_path_factory.mktemp("tiny") / "icbhi", seed=3, patients=6)


def test_resolve_data_dir(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import cyclelib.data.folder as folder_module

    folder = synthetic_dir()
    folder_module._ANNOUNCED.clear()  # as in a fresh process
    capsys.readouterr()
    assert resolve_data_dir(None) == (folder, True)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "SYNTHETIC" in out and "not ICBHI" in out and str(folder) in out
    assert resolve_data_dir(None) == (folder, True) and not capsys.readouterr().out  # said once
    assert resolve_data_dir(str(tiny)) == (tiny, True)  # patients from 301: synthetic, as given
    out = capsys.readouterr().out  # a synthetic folder given by path is announced too, once
    assert out.count("\n") == 1 and "SYNTHETIC" in out and str(tiny) in out
    assert resolve_data_dir(tiny) == (tiny, True) and not capsys.readouterr().out
    with pytest.raises(ValueError, match="does not exist.*cyclelib download"):
        resolve_data_dir(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no ICBHI_challenge_train_test.txt.*README"):
        resolve_data_dir(tmp_path)


def test_resolve_data_dir_falls_back_on_the_checkpoint_folder(tiny: Path, tmp_path: Path) -> None:
    assert resolve_data_dir(None, trained_on=str(tiny)) == (tiny, True)
    assert resolve_data_dir(None, trained_on=tmp_path / "gone") == (synthetic_dir(), True)
    other = make_synthetic_icbhi(tmp_path / "other", seed=1, patients=3)
    assert resolve_data_dir(other, trained_on=tiny) == (other, True)  # given beats trained_on


def test_real_folder_is_not_synthetic(icbhi_dir: Path) -> None:
    assert resolve_data_dir(icbhi_dir) == (icbhi_dir, False)


def test_cycles_with_audio_keeps_order_and_resets_the_index(tiny: Path) -> None:
    cycles = scan_icbhi(tiny).cycles
    cycles.loc[cycles.index[::5], "has_audio"] = False  # pretend some recordings lack audio
    kept = cycles_with_audio(cycles, "train")
    expected = cycles[cycles["has_audio"] & (cycles["split"] == "train")]
    assert kept.index.tolist() == list(range(len(expected)))
    assert kept.equals(expected.reset_index(drop=True))
    assert len(cycles_with_audio(cycles)) == int(cycles["has_audio"].sum())


def test_sample_cycles_is_seeded_and_cut_like_the_audio_layer(tiny: Path) -> None:
    waves, labels = sample_cycles(tiny, "test", 5, seed=0)
    again, same = sample_cycles(tiny, "test", 5, seed=0)
    np.testing.assert_array_equal(waves, again)
    np.testing.assert_array_equal(labels, same)
    assert waves.shape == (5, 176_000) and waves.dtype == np.float32
    test = cycles_with_audio(scan_icbhi(tiny).cycles, "test")
    assert len(sample_cycles(tiny, "test", 10_000)[0]) == len(test)  # capped at what there is
    first = test.iloc[:2]
    loaded = load_cycle_waveforms(first, tiny, progress=False)
    for wave, row in zip(loaded, first.itertuples(), strict=True):
        full = load_recording(tiny / f"{row.recording}.wav")
        np.testing.assert_array_equal(wave, cut_cycle(full, 22_000, row.start, row.end))
    with pytest.raises(ValueError, match="no val cycle has audio"):
        sample_cycles(tiny, "val", 3)
