"""Augmentation (DESIGN §6): shapes, identity at p = 0, seeded determinism, each effect checked
on pure tones against the frequency it must end up at, and the batched effects against
torchaudio's phase vocoder and torch.istft row by row."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchaudio.functional as AF

from cyclelib import wave_effects as fx
from cyclelib.augment import (
    EFFECTS,
    AugmentConfig,
    apply_effects,
    augment_waveforms,
    circular_shift,
    spec_augment,
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


def tones(*freqs: float) -> torch.Tensor:
    return torch.stack([tone(f) for f in freqs])


def test_time_stretch_changes_length_not_pitch() -> None:
    rates = [0.5, 2.0, 0.8]  # one batch, one rate per row
    y, lengths = fx.time_stretch(tones(440.0, 440.0, 440.0), rates)
    assert lengths == [round(N / r) for r in rates] and y.shape == (3, max(lengths))
    for row, length in zip(y, lengths, strict=True):
        assert peak_hz(row[:length]) == pytest.approx(440.0, abs=6.0)
        assert not row[length:].any()  # padding past a row's length is zeros


def test_pitch_shift_moves_a_tone_by_its_semitones() -> None:
    semitones = [-1.0, 3.0, 1.5]
    y, lengths = fx.pitch_shift(tones(440.0, 440.0, 440.0), semitones)
    for row, length, s in zip(y, lengths, semitones, strict=True):
        assert abs(length - N) <= 2
        assert peak_hz(row[:length]) == pytest.approx(440.0 * 2 ** (s / 12), rel=0.01)


def test_vtlp_scales_low_frequencies_by_alpha() -> None:
    y = fx.vtlp(tones(1000.0, 1000.0), [0.9, 1.1], SR, f_hi=4800.0)
    assert y.shape == (2, N)
    for row, alpha in zip(y, (0.9, 1.1), strict=True):
        assert peak_hz(row) == pytest.approx(1000.0 * alpha, abs=25.0)


def _reference_stretch(wave: torch.Tensor, rate: float) -> torch.Tensor:
    """One row, with torchaudio's phase vocoder and torch.istft (the per-cycle code it replaced)."""
    window = torch.hann_window(512)
    spec = torch.stft(wave, 512, 128, window=window, return_complex=True)
    advance = torch.linspace(0, math.pi * 128, spec.shape[-2])[:, None]
    return torch.istft(AF.phase_vocoder(spec, rate, advance), 512, 128, window=window,
                       length=round(len(wave) / rate))


def test_batched_stretch_equals_torchaudio_row_by_row() -> None:
    waves = torch.randn(5, N, generator=gen(1)) * 0.1
    rates = [0.5, 0.73, 1.0, 1.37, 2.0]  # frame counts from 344 to 1376 in one batch
    y, lengths = fx.time_stretch(waves, rates)
    for row, length, wave, rate in zip(y, lengths, waves, rates, strict=True):
        expected = _reference_stretch(wave, rate)
        assert length == len(expected)
        np.testing.assert_allclose(row[:length].numpy(), expected.numpy(), atol=1e-6)


def test_batched_istft_equals_torch_istft_per_row() -> None:
    spec = fx.stft(torch.randn(3, N, generator=gen(2)))
    frames, lengths = [spec.shape[-1], 100, 57], [N, 100 * 128 + 300, 4000]  # longer than span
    y = fx.istft(spec, frames, lengths)
    window = torch.hann_window(512)
    for i in range(3):
        expected = torch.istft(spec[i, :, : frames[i]], 512, 128, window=window,
                               length=lengths[i])
        np.testing.assert_allclose(y[i, : lengths[i]].numpy(), expected.numpy(), atol=1e-6)
        assert not y[i, lengths[i]:].any()


def test_noise_loudness_and_refit_follow_their_parameters() -> None:
    x, config = tone(440.0)[None], AugmentConfig()
    noisy = apply_effects(x, "noise", [0.5], config, gen())[0]  # middle of 10-30 dB: 20 dB
    snr = 10 * torch.log10(x[0].pow(2).sum() / (noisy - x[0]).pow(2).sum())
    assert float(snr) == pytest.approx(20.0, abs=0.01)
    assert torch.allclose(apply_effects(x, "loudness", [0.0], config, gen()), 0.5 * x)
    slow = apply_effects(x, "speed", [0.0], config, gen())[0]  # rate 0.5: twice as long, tail
    expected = fit_length(_reference_stretch(x[0], 0.5).numpy(), N)
    np.testing.assert_allclose(slow.numpy(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="unknown effect"):
        apply_effects(x, "reverb", [0.5], config, gen())


def test_every_effect_keeps_the_shape_and_stays_finite() -> None:
    x, config = tones(300.0, 700.0, 1200.0), AugmentConfig()
    for name in EFFECTS:
        y = apply_effects(x, name, [0.7, 0.1, 0.95], config, gen())
        assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all(), name


@pytest.mark.parametrize("name", EFFECTS)
def test_an_effect_on_a_batch_is_the_effect_on_each_row(name: str) -> None:
    """One batched call per effect changes nothing a row sees: not its result, not the random
    numbers (noise rows draw from the generator in row order)."""
    waves, config = torch.randn(4, N, generator=gen(3)) * 0.1, AugmentConfig()
    strengths = [0.05, 0.4, 0.41, 0.9]  # pitch: two rows share a resampling fraction
    batched_gen, row_gen = gen(5), gen(5)
    batched = apply_effects(waves, name, strengths, config, batched_gen)
    rows = torch.cat([apply_effects(waves[i : i + 1], name, strengths[i : i + 1], config,
                                    row_gen) for i in range(4)])
    np.testing.assert_allclose(batched.numpy(), rows.numpy(), atol=1e-5)
    assert torch.equal(batched_gen.get_state(), row_gen.get_state())


def test_augmenting_a_batch_cycle_by_cycle_or_per_effect_is_the_same() -> None:
    waves, config = torch.randn(12, N, generator=gen(4)) * 0.1, AugmentConfig(p_wave=0.8)
    generators = [gen(6), gen(6), gen(6)]
    outs = [augment_waveforms(waves, config, g, rows_per_call=r)  # all at once (GPU), 1 (CPU)
            for g, r in zip(generators, (12, None, 2), strict=True)]
    for out, g in zip(outs[1:], generators[1:], strict=True):
        np.testing.assert_allclose(out.numpy(), outs[0].numpy(), atol=1e-5)
        assert torch.equal(g.get_state(), generators[0].get_state())
    assert not torch.equal(outs[0], waves)


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
