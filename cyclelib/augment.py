"""Training-time augmentation (DESIGN §6): waveform effects, circular shift, SpecAugment.

Three independent stages, each applied per sample with its own probability (0.5 as the original):

1. one waveform effect, chosen uniformly among white noise, speed, loudness, vocal-tract-length
   perturbation (VTLP) and pitch, then re-fitted to 8 s with :func:`cyclelib.data.fit_length`
   (a long result keeps its tail, a short one is tiled);
2. a random circular shift;
3. SpecAugment on each of the 3 maps: 2 frequency masks of up to 9 bins and 10 time masks of up
   to 4 frames, filled with that map's mean.

The original drew the effects with nlpaug on the CPU inside its data loader. Here they are torch
code that runs on the training device, and every random number comes from an explicit
``torch.Generator`` (drawn on the CPU, so a seed gives the same augmentation on every device).
Differences from nlpaug, all deliberate and small: effects act on the whole cycle (nlpaug's
noise, speed and loudness acted on its middle 60 % by default); noise is added at a random SNR
(10-30 dB) rather than at nlpaug's fixed scale; speed is a phase-vocoder time stretch (tempo
changes, pitch kept, as ``librosa.effects.time_stretch`` in nlpaug); pitch is a time stretch then
a resampling whose ratio is a fraction with a denominator of at most 32 (error < 0.01 semitone;
``torchaudio.functional.pitch_shift`` takes seconds per cycle for a fractional step); VTLP is the
Jaitly-Hinton piecewise-linear warp of the STFT frequency axis (α 0.9-1.1, boundary 4.8 kHz as
nlpaug) applied phase-vocoder style (magnitudes moved, phase advances rescaled), then an inverse
STFT. The rows of a batch that draw the same effect are processed together
(:mod:`cyclelib.wave_effects`): one sequence of kernels per effect rather than per cycle, the
same result as cycle by cycle to float32 rounding. That is the default on a GPU; on the CPU,
where padding the stretched rows costs more than it saves, cycle by cycle is
(``benchmarks/bench_augment.py`` measures both).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torchaudio.functional as AF

from cyclelib import wave_effects as effects
from cyclelib.constants import SAMPLE_RATE
from cyclelib.gpu import to_device

EFFECTS = ("noise", "speed", "loudness", "vtlp", "pitch")  # drawn uniformly, one per sample


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the augmentations (DESIGN §6)."""

    p_wave: float = 0.5  # chance of one waveform effect per sample (original: 0.5)
    p_shift: float = 0.5  # chance of a random circular shift per sample (original: 0.5)
    p_spec: float = 0.5  # chance of SpecAugment per sample (original: 0.5)
    noise_snr_db: tuple[float, float] = (10.0, 30.0)  # white noise SNR range: audible, not masking
    speed: tuple[float, float] = (0.5, 2.0)  # tempo factor range (nlpaug SpeedAug default)
    loudness: tuple[float, float] = (0.5, 2.0)  # gain range (original LoudnessAug factor)
    vtlp_alpha: tuple[float, float] = (0.9, 1.1)  # frequency warp factor (nlpaug VtlpAug default)
    vtlp_f_hi: float = 4800.0  # Hz where the VTLP warp bends back to Nyquist (nlpaug default)
    pitch_semitones: tuple[float, float] = (-1.0, 3.0)  # original PitchAug factor
    freq_masks: int = 2  # frequency masks per map (original group_sr22k policy)
    freq_mask_bins: int = 9  # widest frequency mask, bins (width drawn from 0..9)
    time_masks: int = 10  # time masks per map: many short ones, events are short
    time_mask_frames: int = 4  # widest time mask, frames (width drawn from 0..4, ~46 ms)
    sample_rate: int = SAMPLE_RATE  # rate of the waveforms (22 kHz, DESIGN §3)


def apply_effects(
    waves: torch.Tensor, name: str, strengths: Sequence[float], config: AugmentConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """Apply the waveform effect ``name`` (one of ``EFFECTS``) to each (k, n) waveform -> (k, n).

    ``strengths[i]`` in [0, 1) places row i's parameter in the effect's range of ``config`` (0:
    the low end, e.g. speed 0.5; 1: the high end); only noise draws more numbers from
    ``generator`` (n normals per row, row by row). One batched call per effect
    (:mod:`cyclelib.wave_effects`); lengths changed by the effect are re-fitted to n.
    """
    if name not in EFFECTS:
        raise ValueError(f"unknown effect {name!r}: choose one of {EFFECTS}")
    k, n = waves.shape

    def pick(bounds: tuple[float, float]) -> list[float]:
        return [bounds[0] + float(s) * (bounds[1] - bounds[0]) for s in strengths]

    def on_device(values: list[float]) -> torch.Tensor:  # (k, 1) in the waves' dtype
        return to_device(torch.tensor(values, dtype=waves.dtype)[:, None], waves.device)

    if name == "noise":
        noise = torch.stack([torch.randn(n, generator=generator) for _ in range(k)])
        snr = on_device(pick(config.noise_snr_db))[:, 0]
        return AF.add_noise(waves, to_device(noise, waves.device).to(waves.dtype), snr)
    if name == "loudness":
        return waves * on_device(pick(config.loudness))
    if name == "vtlp":
        return effects.vtlp(waves, pick(config.vtlp_alpha), config.sample_rate, config.vtlp_f_hi)
    if name == "speed":
        changed, lengths = effects.time_stretch(waves, pick(config.speed))
    else:  # pitch
        changed, lengths = effects.pitch_shift(waves, pick(config.pitch_semitones))
    return effects.refit(changed, lengths, n)


def augment_waveforms(
    waves: torch.Tensor, config: AugmentConfig, generator: torch.Generator,
    rows_per_call: int | None = None,
) -> torch.Tensor:
    """With probability ``config.p_wave`` apply one random effect to each (B, n) waveform.

    The rows that draw the same effect go through :func:`apply_effects` together, at most
    ``rows_per_call`` at a time. None chooses by device: on a GPU all of an effect's rows in one
    call (a few dozen kernel launches per effect instead of per cycle); on the CPU one cycle at
    a time, which is faster there (no padding to the longest stretch; ``bench_augment.py``) and
    gives the per-cycle code's numbers exactly. Every setting draws the same random numbers and
    gives the same result up to float32 rounding.
    Returns a new (B, n) tensor on the same device; changed lengths are re-fitted to n.
    """
    if waves.ndim != 2:
        raise ValueError(f"augment_waveforms expects (B, n) waveforms, got {tuple(waves.shape)}")
    batch = waves.shape[0]
    chosen = torch.rand(batch, generator=generator) < config.p_wave
    effect = torch.randint(len(EFFECTS), (batch,), generator=generator)
    strength = torch.rand(batch, generator=generator, dtype=torch.float64)
    per_call = rows_per_call or (1 if waves.device.type == "cpu" else batch)
    out = waves.clone()
    for e, name in enumerate(EFFECTS):  # noise rows draw their numbers in index order
        rows = torch.nonzero(chosen & (effect == e)).flatten()
        if not len(rows):
            continue
        for part in rows.split(per_call):
            index = to_device(part, waves.device)
            out[index] = apply_effects(waves[index], name, strength[part].tolist(), config,
                                       generator)
    return out


def circular_shift(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Roll each sample of ``x`` (B, ..., T) along its last axis by a random 0..T-1, with prob. p.

    On waveforms (B, n) this is the original's shift. On hybrid spectrograms (B, 3, 84, 688) it
    is the same shift quantised to the hop (256 samples): the row standardisation of DESIGN §4 is
    unchanged by a roll, so cached features can be shifted without recomputing them.
    """
    batch, length = x.shape[0], x.shape[-1]
    chosen = torch.rand(batch, generator=generator) < p
    shift = to_device(torch.randint(length, (batch,), generator=generator) * chosen, x.device)
    index = (torch.arange(length, device=x.device) - shift[:, None]) % length  # x[t - shift]
    index = index.reshape(batch, *([1] * (x.ndim - 2)), length).expand(x.shape)
    return x.gather(-1, index)


def _band_mask(
    shape: tuple[int, int], count: int, widest: int, size: int, generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """(B, C, size) bool on ``device``: the union of ``count`` bands of width 0..widest at random
    starts (drawn on the CPU ``generator``, compared on the device)."""
    width = torch.randint(widest + 1, (*shape, count), generator=generator)
    start = (torch.rand(*shape, count, generator=generator) * (size - width + 1)).long()
    start, stop = to_device(torch.stack([start, start + width]), device)
    pos = torch.arange(size, device=device)
    inside = (pos >= start[..., None]) & (pos < stop[..., None])
    return inside.any(-2)


def spec_augment(
    spec: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """SpecAugment (B, C, F, T) -> same shape: with prob. ``config.p_spec`` per sample, mask each
    map with ``freq_masks`` frequency bands and ``time_masks`` time bands filled with its mean."""
    if spec.ndim != 4:
        raise ValueError(f"spec_augment expects (B, maps, bins, frames), got {tuple(spec.shape)}")
    batch, maps, bins, frames = spec.shape
    device = spec.device
    chosen = torch.rand(batch, generator=generator) < config.p_spec
    freq = _band_mask((batch, maps), config.freq_masks, config.freq_mask_bins, bins, generator,
                      device)
    time = _band_mask((batch, maps), config.time_masks, config.time_mask_frames, frames,
                      generator, device)
    chosen = to_device(chosen, device)
    mask = (freq[..., :, None] | time[..., None, :]) & chosen[:, None, None, None]
    mean = spec.mean(dim=(-2, -1), keepdim=True)
    return torch.where(mask, mean, spec)
