"""Reading, resampling and cutting cycles (DESIGN §3, §9), checked against librosa and by hand."""

from __future__ import annotations

import re
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import cyclelib.data.audio as audio
from cyclelib.constants import CYCLE_SAMPLES, SAMPLE_RATE
from cyclelib.data.audio import (
    AudioError,
    cut_cycle,
    fit_length,
    iter_cycle_waveforms,
    load_recording,
    read_wav,
    resample,
    wav_info,
)

FORMATS = [(44100, "PCM_24"), (44100, "PCM_16"), (44100, "PCM_32"), (10000, "PCM_16"),
           (4000, "PCM_16")]  # fmt: skip  # every format of the real recordings (DESIGN §2)


@pytest.fixture(scope="module")
def real_wavs(icbhi_dir: Path) -> dict[tuple[int, str], list[Path]]:
    """The real recordings grouped by (sample rate, PCM subtype)."""
    groups: dict[tuple[int, str], list[Path]] = {}
    for path in sorted(icbhi_dir.glob("*.wav")):
        info = sf.info(str(path))
        groups.setdefault((info.samplerate, info.subtype), []).append(path)
    return groups


@pytest.mark.parametrize("fmt", FORMATS, ids=[f"{r}Hz-{s}" for r, s in FORMATS])
def test_real_format_loads(real_wavs: dict, fmt: tuple[int, str]) -> None:
    path = real_wavs[fmt][0]
    wave, rate = read_wav(path)
    reference, _ = sf.read(str(path), dtype="float64")
    assert rate == fmt[0] and wave.dtype == np.float32 and wave.ndim == 1
    np.testing.assert_allclose(wave, reference, atol=1e-7)
    assert 0 < np.abs(wave).max() <= 1
    resampled = load_recording(path)
    assert resampled.dtype == np.float32
    assert len(resampled) == int(np.ceil(len(wave) * SAMPLE_RATE / rate))
    assert np.isclose(np.sqrt(np.mean(resampled**2)), np.sqrt(np.mean(wave**2)), rtol=0.05)


@pytest.mark.slow
def test_every_real_wav_reads(real_wavs: dict) -> None:
    paths = [path for group in real_wavs.values() for path in group]
    assert len(paths) == 133 and set(real_wavs) == set(FORMATS)
    for path in paths:
        info = wav_info(path)
        wave, rate = read_wav(path)
        assert (rate, len(wave), info.channels) == (info.samplerate, info.frames, 1), path


@pytest.mark.parametrize(
    "orig_rate, frequency", [(44100, 440.0), (4000, 440.0), (10000, 1234.0), (44100, 9000.0)]
)
def test_resample_matches_librosa(orig_rate: int, frequency: float) -> None:
    t = np.arange(2 * orig_rate) / orig_rate
    x = (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
    y = resample(x, orig_rate, SAMPLE_RATE)
    reference = librosa.resample(x, orig_sr=orig_rate, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    assert y.dtype == np.float32 and len(y) == len(reference) == 2 * SAMPLE_RATE
    inner = slice(2000, -2000)  # the two resamplers treat the edges differently
    np.testing.assert_allclose(y[inner], reference[inner], atol=2e-4)
    ideal = 0.5 * np.sin(2 * np.pi * frequency * np.arange(len(y)) / SAMPLE_RATE)
    np.testing.assert_allclose(y[inner], ideal[inner], atol=2e-4)
    spectrum = np.abs(np.fft.rfft(y[inner]))
    peak = np.argmax(spectrum) * SAMPLE_RATE / len(y[inner])
    assert abs(peak - frequency) < 1.0


def test_resample_removes_frequencies_above_new_nyquist() -> None:
    t = np.arange(44100) / 44100
    x = np.sin(2 * np.pi * 15000 * t).astype(np.float32)  # above 11 kHz: must vanish
    y = resample(x, 44100, SAMPLE_RATE)
    assert np.abs(y[2000:-2000]).max() < 1e-3


def test_read_wav_bit_depths_and_stereo(tmp_path: Path) -> None:
    x = 0.5 * np.sin(2 * np.pi * 100 * np.arange(4000) / 4000)
    for subtype, atol in [("PCM_16", 1e-4), ("PCM_24", 1e-6), ("PCM_32", 1e-8)]:
        sf.write(tmp_path / f"{subtype}.wav", x, 4000, subtype=subtype)
        wave, rate = read_wav(tmp_path / f"{subtype}.wav")
        assert rate == 4000 and wave.dtype == np.float32
        np.testing.assert_allclose(wave, x, atol=atol)
    stereo = np.stack([x, -0.5 * x], axis=1)
    sf.write(tmp_path / "stereo.wav", stereo, 4000, subtype="PCM_24")
    wave, _ = read_wav(tmp_path / "stereo.wav")
    np.testing.assert_allclose(wave, 0.25 * x, atol=1e-6)


def test_load_recording_keeps_native_rate_when_equal(tmp_path: Path) -> None:
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 1000)
    sf.write(tmp_path / "x.wav", x, SAMPLE_RATE, subtype="PCM_24")
    np.testing.assert_allclose(load_recording(tmp_path / "x.wav"), x, atol=1e-6)


def _wav_bytes(tmp_path: Path) -> bytes:
    sf.write(tmp_path / "good.wav", np.zeros(400), 4000, subtype="PCM_16")
    return (tmp_path / "good.wav").read_bytes()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda good: b"", "empty file (0 bytes)"),
        (lambda good: good[: len(good) - 100], "truncated WAV file"),
        (lambda good: good[:30], "no data chunk"),
        (lambda good: good[:40] + bytes(4), "holds no audio samples"),
        (lambda good: b"start\tend\n0.1\t0.2\n", "not a WAV file"),
        (lambda good: b"fLaC" + good[4:], "not a WAV file"),
    ],
    ids=["empty", "truncated", "header-cut", "no-samples", "text", "not-riff"],
)
def test_bad_files_raise_audio_error(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(make(_wav_bytes(tmp_path)))
    for reader in (wav_info, read_wav, load_recording):
        with pytest.raises(AudioError, match=re.escape(message)) as err:
            reader(path)
        assert isinstance(err.value, ValueError)
        assert str(path) in str(err.value) and err.value.path == str(path)


def test_missing_file_raises_audio_error(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="audio file not found"):
        read_wav(tmp_path / "nothing.wav")


def test_fit_length_rules() -> None:
    x = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(fit_length(x, 4), [6, 7, 8, 9])  # long: keep the tail
    np.testing.assert_array_equal(fit_length(x, 10), x)
    np.testing.assert_array_equal(fit_length(np.array([1, 2, 3]), 8), [1, 2, 3, 1, 2, 3, 1, 2])
    np.testing.assert_array_equal(fit_length(np.array([5.0]), 3), [5, 5, 5])
    assert fit_length(x).shape == (CYCLE_SAMPLES,) and fit_length(x).dtype == np.float32
    tail = fit_length(x, 4)
    tail[0] = -1
    assert x[6] == 6  # a copy, not a view
    with pytest.raises(ValueError, match="1-D waveform"):
        fit_length(np.zeros((2, 5)), 4)
    with pytest.raises(ValueError, match="empty"):
        fit_length(np.zeros(0), 4)


def test_cut_cycle_by_hand() -> None:
    wave = np.arange(30, dtype=np.float64)  # 3 s at 10 Hz
    np.testing.assert_array_equal(cut_cycle(wave, 10, 0.5, 1.2, n=14), [5, 6, 7, 8, 9, 10, 11] * 2)
    np.testing.assert_array_equal(cut_cycle(wave, 10, 0.0, 2.5, n=5), [20, 21, 22, 23, 24])
    np.testing.assert_array_equal(cut_cycle(wave, 10, 2.5, 3.04, n=6), [25, 26, 27, 28, 29, 25])
    assert cut_cycle(wave, 10, 0.5, 1.2).dtype == np.float32
    with pytest.raises(ValueError, match="holds no sample of the 3.000 s recording at 10 Hz"):
        cut_cycle(wave, 10, 3.5, 4.0)
    with pytest.raises(ValueError, match="start < end"):
        cut_cycle(wave, 10, 1.0, 1.0)


def test_iter_cycle_waveforms_loads_each_recording_once(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(1)
    for name, rate in [("a", 4000), ("b", 44100)]:
        sf.write(tmp_path / f"{name}.wav", rng.uniform(-0.5, 0.5, 3 * rate), rate)
    cycles = pd.DataFrame(
        {"recording": list("abab"), "start": [0.1, 0.5, 1.0, 2.0], "end": [0.9, 1.5, 2.9, 3.0]},
        index=[10, 11, 12, 13],
    )
    loads = []
    real_load = audio.load_recording
    monkeypatch.setattr(audio, "load_recording", lambda p, sr: loads.append(p) or real_load(p, sr))
    got = list(iter_cycle_waveforms(cycles, tmp_path, n=8000, progress=False))
    assert sorted(Path(p).name for p in loads) == ["a.wav", "b.wav"]
    positions = np.concatenate([pos for pos, _ in got])
    assert sorted(positions.tolist()) == [0, 1, 2, 3] and positions.dtype == np.int64
    full = {name: real_load(tmp_path / f"{name}.wav", SAMPLE_RATE) for name in ("a", "b")}
    for pos, waves in got:
        assert waves.shape == (len(pos), 8000) and waves.dtype == np.float32
        for i, wave in zip(pos, waves, strict=True):
            row = cycles.iloc[i]
            expected = cut_cycle(full[row.recording], SAMPLE_RATE, row.start, row.end, 8000)
            np.testing.assert_array_equal(wave, expected)


def test_iter_cycle_waveforms_missing_audio(tmp_path: Path) -> None:
    cycles = pd.DataFrame({"recording": ["gone"], "start": [0.0], "end": [1.0]})
    with pytest.raises(AudioError, match="no audio for recording gone"):
        next(iter_cycle_waveforms(cycles, tmp_path, progress=False))
