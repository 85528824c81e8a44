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
STFT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch
import torchaudio.functional as AF

from cyclelib.constants import SAMPLE_RATE
from cyclelib.gpu import to_device

EFFECTS = ("noise", "speed", "loudness", "vtlp", "pitch")  # drawn uniformly, one per sample
STFT = dict(n_fft=512, hop_length=128)  # 23 ms windows at 22 kHz for the stretch and VTLP


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


def _refit(wave: torch.Tensor, n: int) -> torch.Tensor:
    """Fit a (samples,) tensor to ``n`` samples as :func:`cyclelib.data.fit_length` does (the
    tests compare them): the last ``n`` samples of a longer one, a shorter one tiled. The index
    is made on the wave's device (no host-to-device copy)."""
    length = wave.shape[-1]
    if length >= n:
        return wave[length - n :]
    return wave[torch.arange(n, device=wave.device) % length]


def _stft(wave: torch.Tensor) -> torch.Tensor:
    window = torch.hann_window(STFT["n_fft"], device=wave.device)
    return torch.stft(wave, **STFT, window=window, return_complex=True)


def _istft(spec: torch.Tensor, length: int | None = None) -> torch.Tensor:
    window = torch.hann_window(STFT["n_fft"], device=spec.device)
    return torch.istft(spec, **STFT, window=window, length=length)


def time_stretch(wave: torch.Tensor, rate: float) -> torch.Tensor:
    """Phase-vocoder time stretch of a (samples,) waveform: length / ``rate``, pitch kept."""
    spec = _stft(wave)
    advance = torch.linspace(0, math.pi * STFT["hop_length"], spec.shape[-2], device=wave.device)
    stretched = AF.phase_vocoder(spec, rate, advance[:, None])
    return _istft(stretched, length=round(wave.shape[-1] / rate))


def pitch_shift(wave: torch.Tensor, semitones: float, sample_rate: int) -> torch.Tensor:
    """Shift the pitch of a (samples,) waveform by ``semitones``; the length is about kept.

    Time-stretch by r = 2^(semitones/12) (longer for a higher pitch), then resample by the
    fraction closest to r with a denominator of at most 32 (small filters, fast).
    """
    ratio = Fraction(2.0 ** (semitones / 12.0)).limit_denominator(32)
    stretched = time_stretch(wave, ratio.denominator / ratio.numerator)
    return AF.resample(stretched, ratio.numerator, ratio.denominator)


def vtlp(wave: torch.Tensor, alpha: float, sample_rate: int, f_hi: float) -> torch.Tensor:
    """Vocal tract length perturbation of a (samples,) waveform (Jaitly & Hinton 2013).

    Frequencies below ``f_hi·min(α, 1)/α`` are scaled by α; above, a straight line bends back to
    Nyquist. Each output STFT bin takes the magnitude at its source frequency (linear
    interpolation between the two nearest bins) and, as a phase vocoder does, the source's
    frame-to-frame phase advance scaled by the warp, so a tone at f comes out as a clean tone at
    the warped frequency (moving complex bins as they are, as nlpaug does, leaves the phases
    advancing at the old frequency and the inverse STFT mostly cancels). Length kept.
    """
    spec = _stft(wave)
    bins, hop = spec.shape[-2], STFT["hop_length"]
    nyquist = sample_rate / 2.0
    freqs = torch.linspace(0.0, nyquist, bins, device=wave.device, dtype=torch.float64)
    f0 = f_hi * min(alpha, 1.0) / alpha  # bend point of the forward warp, source side
    source = torch.where(
        freqs <= alpha * f0,
        freqs / alpha,
        nyquist - (nyquist - f0) / (nyquist - alpha * f0) * (nyquist - freqs),
    )
    position = (source / nyquist * (bins - 1)).clamp(0, bins - 1)
    low = position.floor().long()
    high = (low + 1).clamp(max=bins - 1)
    weight = (position - low)[:, None]
    # true phase advance per hop of each source bin (expected advance + wrapped deviation)
    expected = (2 * math.pi * hop / STFT["n_fft"]) * torch.arange(bins, device=wave.device)
    phase = spec.angle().double()
    deviation = phase.diff(dim=-1) - expected[:, None]
    advance = expected[:, None] + torch.remainder(deviation + math.pi, 2 * math.pi) - math.pi
    ratio = torch.where(source > 0, freqs / source.clamp_min(1e-9), torch.ones_like(freqs))
    out_advance = (advance[low] * (1 - weight) + advance[high] * weight) * ratio[:, None]
    out_phase = torch.cat([phase[low, :1], phase[low, :1] + out_advance.cumsum(-1)], dim=-1)
    magnitude = spec.abs().double()
    out_magnitude = magnitude[low] * (1 - weight) + magnitude[high] * weight
    warped = torch.polar(out_magnitude, out_phase).to(spec.dtype)
    return _istft(warped, length=wave.shape[-1])


def apply_effect(
    wave: torch.Tensor, name: str, strength: float, config: AugmentConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """Apply the waveform effect ``name`` (one of ``EFFECTS``) to a (n,) waveform -> (n,).

    ``strength`` in [0, 1) places the effect's parameter in its range of ``config`` (0: the
    low end, e.g. speed 0.5; 1: the high end); only noise draws more numbers from ``generator``.
    """
    n = wave.shape[-1]

    def pick(bounds: tuple[float, float]) -> float:
        return bounds[0] + strength * (bounds[1] - bounds[0])

    if name == "noise":
        noise = to_device(torch.randn(n, generator=generator), wave.device).to(wave.dtype)
        snr = torch.full((), pick(config.noise_snr_db), device=wave.device, dtype=wave.dtype)
        return AF.add_noise(wave, noise, snr)
    if name == "loudness":
        return wave * pick(config.loudness)
    if name == "speed":
        return _refit(time_stretch(wave, pick(config.speed)), n)
    if name == "vtlp":
        return vtlp(wave, pick(config.vtlp_alpha), config.sample_rate, config.vtlp_f_hi)
    if name == "pitch":
        return _refit(pitch_shift(wave, pick(config.pitch_semitones), config.sample_rate), n)
    raise ValueError(f"unknown effect {name!r}: choose one of {EFFECTS}")


def augment_waveforms(
    waves: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """With probability ``config.p_wave`` apply one random effect to each (B, n) waveform.

    Returns a new (B, n) tensor on the same device; changed lengths are re-fitted to n.
    """
    if waves.ndim != 2:
        raise ValueError(f"augment_waveforms expects (B, n) waveforms, got {tuple(waves.shape)}")
    batch = waves.shape[0]
    chosen = torch.rand(batch, generator=generator) < config.p_wave
    effect = torch.randint(len(EFFECTS), (batch,), generator=generator)
    strength = torch.rand(batch, generator=generator, dtype=torch.float64)
    out = waves.clone()
    for i in torch.nonzero(chosen).flatten().tolist():
        out[i] = apply_effect(waves[i], EFFECTS[effect[i]], float(strength[i]), config, generator)
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
