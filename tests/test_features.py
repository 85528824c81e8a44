"""The hybrid spectrogram front end (DESIGN §4) against librosa, hand-made tones and real cycles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cyclelib.features import FeatureConfig, HybridSpectrogram, group_frames, validate_waveforms
from cyclelib.filterbanks import cqt_frequencies, erb, gammatone_filterbank, mel_filterbank

CONFIG = FeatureConfig()
SR = CONFIG.sample_rate
MEL_KWARGS = dict(
    sr=SR, n_fft=1024, hop_length=256, win_length=1000, window="hann", center=True,
    pad_mode="reflect", power=2.0, n_mels=84, fmin=32.7, fmax=3000.0, htk=True, norm=None,
)


@pytest.fixture(scope="module")
def module() -> HybridSpectrogram:
    return HybridSpectrogram().eval()


def maps_db(module: HybridSpectrogram, wave: np.ndarray) -> np.ndarray:
    """Unstandardised dB maps (3, 84, 688) of one float32 waveform."""
    with torch.inference_mode():
        return module.decibel_maps(torch.from_numpy(wave)[None])[0].numpy()


def tone(freq: float) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(CONFIG.n_samples) / SR)).astype(np.float32)


@pytest.fixture(scope="module")
def real_cycles(icbhi_dir: Path) -> list[tuple[str, np.ndarray]]:
    """One real cycle per stethoscope (4 devices, native rates 4 kHz and 44.1 kHz), at 22 kHz."""
    from cyclelib.data import cut_cycle, load_recording, scan_icbhi

    cycles = scan_icbhi(icbhi_dir).cycles
    picks = cycles[cycles["has_audio"]].groupby("device").head(1)
    assert len(picks) >= 3, "expected recordings from several devices"
    out = []
    for row in picks.itertuples():
        wave = load_recording(icbhi_dir / f"{row.recording}.wav")
        out.append((row.recording, cut_cycle(wave, SR, row.start, row.end)))
    return out


def test_config_defaults_give_the_papers_shapes() -> None:
    assert (CONFIG.n_frames, CONFIG.n_octaves, CONFIG.n_groups) == (688, 7, 45)
    with pytest.raises(ValueError, match="multiple of 64"):
        FeatureConfig(hop_length=200)
    with pytest.raises(ValueError, match="fmin < fmax"):
        FeatureConfig(fmax=20.0)
    with pytest.raises(ValueError, match="Nyquist"):
        FeatureConfig(fmin=100.0)  # 84 semitones from 100 Hz end above 11 kHz


def test_output_shape_and_row_standardisation(module: HybridSpectrogram) -> None:
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 176000), np.float32))
    with torch.inference_mode():
        out = module(x)
    assert out.shape == (2, 3, 84, 688) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    np.testing.assert_allclose(out.mean(-1), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(-1, correction=1), 1.0, atol=1e-3)
    with torch.inference_mode():  # batch items do not interact
        np.testing.assert_allclose(module(x[1:]), out[1:], atol=1e-4)


def test_rows_are_divided_by_their_unbiased_std(module: HybridSpectrogram) -> None:
    """As the original's torch.std (N - 1), DESIGN §4: the biased std would be 0.07 % smaller;
    a flat row (silence) gives zeros thanks to the epsilon, not NaN."""
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((1, 176000), np.float32))
    with torch.inference_mode():
        maps = module.decibel_maps(x)[0].double().numpy()
        out = module(x)[0].numpy()
    centred = maps - maps.mean(-1, keepdims=True)
    expected = centred / (maps.std(-1, ddof=1, keepdims=True) + module.config.eps)
    np.testing.assert_allclose(out, expected, rtol=0, atol=2e-5)
    assert np.abs(out.std(-1, ddof=1) - 1.0).max() < 1e-4 < np.abs(out.std(-1) - 1.0).min()
    with torch.inference_mode():
        silent = module(torch.zeros(1, 176000))
    assert torch.equal(silent, torch.zeros_like(silent))


def test_folded_stft_power_matches_torch_stft(module: HybridSpectrogram) -> None:
    """The folded DFT gives the power of torch.stft (Hann 1000 in 1024, centred, reflect)."""
    config = module.config
    x = torch.from_numpy(np.random.default_rng(3).standard_normal((2, config.n_samples)))
    x = x.float()
    window = torch.hann_window(config.win_length, periodic=True)
    expected = torch.stft(x, config.n_fft, config.hop_length, config.win_length, window,
                          center=True, pad_mode="reflect", return_complex=True).abs().square()
    got = module.stft_power(x)
    assert got.shape == (2, module.n_stft_bins, config.n_frames)
    expected = expected[:, : module.n_stft_bins]
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_mel_filterbank_is_librosas() -> None:
    import librosa

    ref = librosa.filters.mel(sr=SR, n_fft=1024, n_mels=84, fmin=32.7, fmax=3000.0, htk=True,
                              norm=None, dtype=np.float64)
    np.testing.assert_allclose(mel_filterbank(CONFIG), ref, rtol=1e-10, atol=1e-12)


def test_mel_matches_librosa_melspectrogram(module: HybridSpectrogram) -> None:
    """1e-4 relative on power wherever float32 resolves it: within 30 dB of the frame's top."""
    import librosa

    rng = np.random.default_rng(1)
    t = np.arange(CONFIG.n_samples) / SR
    wave = (0.2 * np.sin(2 * np.pi * 180 * t) + 0.1 * rng.standard_normal(len(t))
            + 0.02 * np.sin(2 * np.pi * 1400 * t + 3 * np.sin(2 * np.pi * 0.5 * t)))
    wave = wave.astype(np.float32)
    ref = librosa.feature.melspectrogram(y=wave.astype(np.float64), **MEL_KWARGS)
    ours = 10.0 ** (maps_db(module, wave)[2].astype(np.float64) / 10.0)
    assert ours.shape == ref.shape == (84, 688)
    strong = ref >= 1e-3 * ref.max(axis=0, keepdims=True)
    assert strong.mean() > 0.2
    assert np.max(np.abs(ours - ref)[strong] / ref[strong]) <= 1e-4
    visible = ref >= 1e-8 * ref.max()
    assert np.max(np.abs(10 * np.log10(ours[visible] / ref[visible]))) < 0.01  # dB


def test_mel_and_cqt_match_librosa_on_real_cycles(
    module: HybridSpectrogram, real_cycles: list[tuple[str, np.ndarray]]
) -> None:
    import librosa

    for name, wave in real_cycles:
        maps = maps_db(module, wave)
        ref = librosa.cqt(wave, sr=SR, hop_length=256, fmin=32.70, n_bins=84, bins_per_octave=12)
        ref_db = 20 * np.log10(np.maximum(np.abs(ref), 1e-10))
        assert ref_db.shape == maps[0].shape
        corr = np.corrcoef(ref_db.ravel(), maps[0].ravel())[0, 1]
        assert corr >= 0.99, f"{name}: CQT dB correlation {corr:.4f}"
        # normalised like librosa, not only correlated: same dB values
        assert np.median(np.abs(maps[0] - ref_db)) < 0.05, name
        mel = librosa.feature.melspectrogram(y=wave.astype(np.float64), **MEL_KWARGS)
        ours = 10.0 ** (maps[2].astype(np.float64) / 10.0)
        strong = mel >= 1e-3 * mel.max(axis=0, keepdims=True)
        assert np.max(np.abs(ours - mel)[strong] / mel[strong]) <= 1e-4, name


@pytest.mark.parametrize("bin_index", [0, 7, 12, 30, 47, 59, 71, 72, 83])
def test_cqt_tone_peaks_in_its_bin(module: HybridSpectrogram, bin_index: int) -> None:
    freq = cqt_frequencies(CONFIG)[bin_index]
    cqt = maps_db(module, tone(freq))[0]
    assert np.argmax(np.median(cqt, axis=1)) == bin_index


def test_gammatone_centres_follow_the_erb_scale() -> None:
    weights, centres = gammatone_filterbank(CONFIG)
    assert weights.shape == (84, 513) and (weights >= 0).all()
    assert centres[0] == pytest.approx(32.7) and centres[-1] == pytest.approx(3000.0)
    assert erb(1000.0) == pytest.approx(24.7 * 5.37)  # Glasberg & Moore 1990
    erb_rate = 21.4 * np.log10(1 + 0.00437 * centres)
    np.testing.assert_allclose(np.diff(erb_rate), (erb_rate[-1] - erb_rate[0]) / 83, rtol=1e-9)
    # each band peaks at its centre frequency and is about one ERB wide at half power
    freqs = np.arange(513) * SR / 1024
    for band in (20, 50, 83):
        above = freqs[weights[band] >= 0.5 * weights[band].max()]
        assert above.min() <= centres[band] <= above.max()
        assert 0.3 * erb(centres[band]) <= above.max() - above.min() <= 2 * erb(centres[band])


def test_gammatone_tone_peaks_in_the_nearest_band(module: HybridSpectrogram) -> None:
    _, centres = gammatone_filterbank(CONFIG)
    erb_rate = 21.4 * np.log10(1 + 0.00437 * centres)
    spacing = erb_rate[1] - erb_rate[0]
    bands = [0, 3, 10, 25, 40, 60, 83]
    freqs = [centres[band] for band in bands]  # tones at band centres
    rng = np.random.default_rng(2)
    while len(freqs) < 14:  # tones anywhere, not within 0.15 band spacing of a midpoint
        freq = rng.uniform(33.0, 2990.0)
        rate = 21.4 * np.log10(1 + 0.00437 * freq)
        nearest = int(np.argmin(np.abs(erb_rate - rate)))
        if abs(rate - erb_rate[nearest]) <= 0.35 * spacing:
            freqs.append(freq)
            bands.append(nearest)
    with torch.inference_mode():
        gammatone = module.decibel_maps(torch.from_numpy(np.stack([tone(f) for f in freqs])))
    peaks = np.argmax(np.median(gammatone[:, 1].numpy(), axis=-1), axis=-1)
    assert peaks.tolist() == bands, freqs


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        (torch.zeros(2, 1000), r"shape \(2, 1000\)"),
        (torch.zeros(176000), r"shape \(176000,\)"),
        (torch.zeros(1, 1, 176000), r"shape \(1, 1, 176000\)"),
        (torch.zeros(1, 176000, dtype=torch.float64), "float64"),
        (torch.full((1, 176000), float("nan")), "NaN"),
        (torch.full((1, 176000), float("inf")), "NaN or infinite"),
        (np.zeros((1, 176000), np.float32), "ndarray"),
    ],
)
def test_bad_input_names_the_expected_shape(module: HybridSpectrogram, bad, what: str) -> None:
    with pytest.raises(ValueError, match=r"\(B, 176000\) float32") as info:
        module(bad)
    assert info.match(what)


def test_group_frames_is_a_view_matching_explicit_slices() -> None:
    spec = torch.randn(2, 3, 84, 688)
    groups = group_frames(spec)
    assert groups.shape == (2, 45, 3, 84, 20)
    assert groups.untyped_storage().data_ptr() == spec.untyped_storage().data_ptr()
    for g in (0, 1, 22, 44):
        torch.testing.assert_close(groups[:, g], spec[..., 15 * g : 15 * g + 20])
    assert 15 * 44 + 20 == 688 - 8  # the last 8 frames are unused
    with pytest.raises(ValueError, match=r"\(B, C, F, T\)"):
        group_frames(spec[0])


def test_filterbanks_are_buffers_that_follow_the_module() -> None:
    module = HybridSpectrogram()
    names = {name for name, _ in module.named_buffers()}
    assert {"stft_cos", "stft_sin", "band_weights", "cqt_kernels", "decimator"} <= names
    assert not list(module.parameters())
    if torch.cuda.is_available():
        x = torch.randn(1, 176000, device="cuda")
        assert module(x).device.type == "cuda"  # moved to the input's device by forward
        assert module.stft_cos.device.type == "cuda"


def test_torch_export_captures_the_module(module: HybridSpectrogram) -> None:
    x = torch.randn(1, 176000) * 0.1
    program = torch.export.export(module, (x,))
    with torch.inference_mode():
        torch.testing.assert_close(program.module()(x), module(x), atol=1e-4, rtol=0)
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert not any("stft" in t or "complex" in t or "fft" in t for t in targets), targets


@pytest.mark.slow
def test_executorch_program_matches_eager(module: HybridSpectrogram, tmp_path: Path) -> None:
    pytest.importorskip("executorch")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    x = torch.from_numpy(tone(440.0) + np.random.default_rng(3).normal(0, 0.05, 176000)
                         .astype(np.float32))[None]
    program = torch.export.export(module, (x,))
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    path = tmp_path / "hybrid_spectrogram.pte"
    path.write_bytes(lowered.to_executorch().buffer)
    method = Runtime.get().load_program(path).load_method("forward")
    out = method.execute([x])[0]
    with torch.inference_mode():
        ref = module(x)
    assert out.shape == (1, 3, 84, 688)
    assert (out - ref).abs().max().item() <= 1e-3


def test_real_cycle_spectrogram(module: HybridSpectrogram, real_cycles) -> None:
    name, wave = real_cycles[0]
    with torch.inference_mode():
        spec = module(torch.from_numpy(wave)[None])[0].numpy()
    assert spec.shape == (3, 84, 688), name
    assert np.isfinite(spec).all()
    np.testing.assert_allclose(spec.mean(axis=-1), 0.0, atol=1e-4)
    np.testing.assert_allclose(spec.std(axis=-1, ddof=1), 1.0, atol=1e-3)
    validate_waveforms(torch.from_numpy(wave)[None])  # a real cycle is valid input
