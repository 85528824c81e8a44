"""Augmentation (DESIGN §6): shapes, identity at p = 0, seeded determinism, and each effect
checked on a pure tone against the frequency it must end up at."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cyclelib.augment import (
    EFFECTS,
    AugmentConfig,
    apply_effect,
    augment_waveforms,
    circular_shift,
    pitch_shift,
    spec_augment,
    time_stretch,
    vtlp,
)
from cyclelib.data import fit_length

SR = 22_000
N = 22_000  # 1 s is enough to measure a tone; the functions do not assume 8 s


def tone(freq: float, n: int = N) -> torch.Tensor:
    return torch.sin(2 * np.pi * freq * torch.arange(n, dtype=torch.float64) / SR).float()


def peak_hz(x: torch.Tensor) -> float:
    """Frequency of the strongest FFT bin of the middle half (edges of a stretch are ramps)."""
    mid = x[len(x) // 4 : 3 * len(x) // 4].double()
    spectrum = torch.fft.rfft(mid * torch.hann_window(len(mid), dtype=torch.float64)).abs()
    return float(spectrum.argmax()) * SR / len(mid)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_time_stretch_changes_length_not_pitch() -> None:
    for rate in (0.5, 2.0):
        y = time_stretch(tone(440.0), rate)
        assert len(y) == round(N / rate)
        assert peak_hz(y) == pytest.approx(440.0, abs=6.0)


@pytest.mark.parametrize("semitones", [-1.0, 3.0, 1.5])
def test_pitch_shift_moves_a_tone_by_its_semitones(semitones: float) -> None:
    y = pitch_shift(tone(440.0), semitones, SR)
    assert abs(len(y) - N) <= 2
    assert peak_hz(y) == pytest.approx(440.0 * 2 ** (semitones / 12), rel=0.01)


def test_vtlp_scales_low_frequencies_by_alpha() -> None:
    for alpha in (0.9, 1.1):
        y = vtlp(tone(1000.0), alpha, SR, f_hi=4800.0)
        assert len(y) == N
        assert peak_hz(y) == pytest.approx(1000.0 * alpha, abs=25.0)


def test_noise_loudness_and_refit_follow_their_parameters() -> None:
    x, config = tone(440.0), AugmentConfig()
    noisy = apply_effect(x, "noise", 0.5, config, gen())  # middle of 10-30 dB: 20 dB
    snr = 10 * torch.log10(x.pow(2).sum() / (noisy - x).pow(2).sum())
    assert float(snr) == pytest.approx(20.0, abs=0.01)
    assert torch.allclose(apply_effect(x, "loudness", 0.0, config, gen()), 0.5 * x)
    slow = apply_effect(x, "speed", 0.0, config, gen())  # rate 0.5: twice as long, tail kept
    expected = fit_length(time_stretch(x, 0.5).numpy(), N)
    np.testing.assert_allclose(slow.numpy(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="unknown effect"):
        apply_effect(x, "reverb", 0.5, config, gen())


def test_every_effect_keeps_the_shape_and_stays_finite() -> None:
    x, config = tone(300.0), AugmentConfig()
    for name in EFFECTS:
        y = apply_effect(x, name, 0.7, config, gen())
        assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all(), name


def test_probability_zero_is_the_identity() -> None:
    config = AugmentConfig(p_wave=0.0, p_shift=0.0, p_spec=0.0)
    waves = torch.randn(3, N)
    assert torch.equal(augment_waveforms(waves, config, gen()), waves)
    assert torch.equal(circular_shift(waves, 0.0, gen()), waves)
    spec = torch.randn(3, 3, 84, 688)
    assert torch.equal(spec_augment(spec, config, gen()), spec)


def test_same_seed_same_augmentation_and_shapes_kept() -> None:
    config = AugmentConfig(p_wave=1.0, p_shift=1.0, p_spec=1.0)
    waves, spec = torch.randn(6, N), torch.randn(4, 3, 84, 688)
    runs = [
        (augment_waveforms(waves, config, gen(7)), circular_shift(waves, 1.0, gen(7)),
         spec_augment(spec, config, gen(7)))
        for _ in range(2)
    ]
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)
    assert runs[0][0].shape == waves.shape and runs[0][2].shape == spec.shape
    assert not torch.equal(augment_waveforms(waves, config, gen(8)), runs[0][0])
    with pytest.raises(ValueError, match=r"\(B, n\)"):
        augment_waveforms(waves[0], config, gen())


def test_circular_shift_rolls_each_sample_along_time() -> None:
    x = torch.arange(10.0).repeat(4, 3, 1)  # (4, 3, 10): the same ramp in each map
    y = circular_shift(x, 1.0, gen(3))
    for i in range(4):
        shift = int((-y[i, 0, 0]) % 10)  # out[t] = x[t - shift], so out[0] = (-shift) mod 10
        assert torch.equal(y[i], torch.roll(x[i], shift, dims=-1))


def test_spec_augment_masks_are_bands_filled_with_the_map_mean() -> None:
    config = AugmentConfig(p_spec=1.0)
    spec = torch.randn(8, 3, 84, 688) * 3 + 5
    out = spec_augment(spec, config, gen(1))
    mean = spec.mean(dim=(-2, -1), keepdim=True).expand_as(spec)
    changed = out != spec
    assert torch.equal(out[changed], mean[changed])
    for b in range(8):
        for m in range(3):
            c = changed[b, m]
            rows = c.all(dim=1)  # fully masked frequency bins
            cols = c.all(dim=0)  # fully masked frames
            assert torch.equal(c, rows[:, None] | cols[None, :])  # only whole bands
            assert rows.sum() <= config.freq_masks * config.freq_mask_bins
            assert cols.sum() <= config.time_masks * config.time_mask_frames
    # one mask of each kind: widths cover 0..9 bins and 0..4 frames, never more
    one_each = AugmentConfig(p_spec=1.0, freq_masks=1, time_masks=1)
    x = torch.randn(300, 1, 84, 688)
    hit = spec_augment(x, one_each, gen(2)) != x
    bins = hit.all(dim=-1).sum(dim=(1, 2))
    frames = hit.all(dim=-2).sum(dim=(1, 2))
    assert set(bins.tolist()) == set(range(10)) and set(frames.tolist()) == set(range(5))
    with pytest.raises(ValueError, match="bins, frames"):
        spec_augment(spec[0], config, gen())
