"""The STFT-domain waveform effects of training-time augmentation (DESIGN §6), on a batch.

Each function takes k waveforms (k, n) and one parameter per row, and runs one sequence of
kernels for the whole batch, whatever the parameters: on a GPU the effects of a training batch
cost a few dozen kernel launches instead of a few dozen per cycle. A row's result equals the
effect applied to that row alone (tests/test_augment.py compares each with torchaudio's
``phase_vocoder`` and ``torch.istft`` row by row).

Rows of a time stretch come out with different lengths: those functions return a padded
(k, max length) tensor and the list of lengths; :func:`refit` brings every row back to n.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import torch
import torch.nn.functional as F
import torchaudio.functional as AF

from cyclelib.gpu import to_device

STFT = dict(n_fft=512, hop_length=128)  # 23 ms windows at 22 kHz for the stretch and VTLP


def _window(device: torch.device) -> torch.Tensor:
    return torch.hann_window(STFT["n_fft"], device=device)


def stft(waves: torch.Tensor) -> torch.Tensor:
    """(k, n) waveforms -> (k, bins, frames) complex STFT (centred, Hann, 512/128)."""
    return torch.stft(waves, **STFT, window=_window(waves.device), return_complex=True)


def istft(spec: torch.Tensor, frames: Sequence[int], lengths: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`stft` per row: row i from its first ``frames[i]`` frames, cut or padded
    with zeros to ``lengths[i]`` samples, as ``torch.istft(spec[i, :, :frames[i]],
    length=lengths[i])`` gives it. (k, bins, F) -> (k, max(lengths)); zeros past each length.
    """
    n_fft, hop = STFT["n_fft"], STFT["hop_length"]
    k, _, total = spec.shape
    window = _window(spec.device)
    if set(frames) == {total} and len(set(lengths)) == 1:  # every row whole: torch's own
        return torch.istft(spec, **STFT, window=window, length=lengths[0])
    used = to_device(torch.tensor(frames), spec.device)
    valid = (torch.arange(total, device=spec.device) < used[:, None]).to(window.dtype)  # (k, F)
    pieces = torch.fft.irfft(spec, n=n_fft, dim=1) * window[:, None] * valid[:, None, :]
    span = n_fft + hop * (total - 1)

    def overlap_add(columns: torch.Tensor) -> torch.Tensor:  # (k, n_fft, F) -> (k, span)
        return F.fold(columns, (1, span), (1, n_fft), stride=(1, hop)).reshape(k, span)

    signal = overlap_add(pieces)
    envelope = overlap_add((window**2)[None, :, None] * valid[:, None, :])
    start, longest = n_fft // 2, max(lengths)
    signal, envelope = signal[:, start : start + longest], envelope[:, start : start + longest]
    out = torch.where(envelope > 1e-11, signal / envelope.clamp_min(1e-11), 0.0)
    if out.shape[1] < longest:  # a row asks for more samples than any frame covers: zeros
        out = F.pad(out, (0, longest - out.shape[1]))
    keep = torch.arange(longest, device=spec.device) < to_device(torch.tensor(lengths),
                                                                spec.device)[:, None]
    return out * keep


def phase_vocoder(spec: torch.Tensor, rates: Sequence[float]) -> tuple[torch.Tensor, list[int]]:
    """torchaudio's phase vocoder with one rate per row: (k, bins, F) -> (k, bins, max frames)
    and each row's frame count ``ceil(F / rate)`` (columns past it are left undefined). A row
    at rate 1 is returned as it is, as torchaudio does."""
    k, bins, total = spec.shape
    # (k, L): each output frame's source frame, made as torchaudio makes it (arange's rounding)
    rows = [torch.arange(0, total, rate) for rate in rates]
    frames = [len(row) for row in rows]
    steps = torch.stack([F.pad(row, (0, max(frames) - len(row)), value=total) for row in rows])
    steps = to_device(steps, spec.device)  # past a row's end: frame `total`, never read back
    advance = torch.linspace(0, math.pi * STFT["hop_length"], bins, device=spec.device)[:, None]
    padded = F.pad(spec, [0, 2])
    first = steps.long()[:, None, :].expand(k, bins, -1)
    s0, s1 = padded.gather(-1, first), padded.gather(-1, first + 1)
    phase = s1.angle() - s0.angle() - advance
    phase = phase - 2 * math.pi * torch.round(phase / (2 * math.pi)) + advance
    phase = torch.cat([spec[..., :1].angle(), phase[..., :-1]], dim=-1).cumsum(-1)
    alpha = (steps % 1.0)[:, None, :]
    out = torch.polar(alpha * s1.abs() + (1 - alpha) * s0.abs(), phase)
    if 1.0 in rates:  # torchaudio returns a row at rate 1 unchanged (pitch near 0 semitones)
        same = to_device(torch.tensor([rate == 1.0 for rate in rates]), spec.device)
        longest = out.shape[-1]
        unchanged = F.pad(spec, [0, max(0, longest - total)])[..., :longest]
        out = torch.where(same[:, None, None], unchanged, out)
    return out, frames


def time_stretch(waves: torch.Tensor, rates: Sequence[float]) -> tuple[torch.Tensor, list[int]]:
    """Phase-vocoder time stretch, pitch kept: row i becomes ``round(n / rates[i])`` samples.
    (k, n) -> (k, max length) padded with zeros, and the lengths."""
    stretched, frames = phase_vocoder(stft(waves), rates)
    lengths = [round(waves.shape[-1] / rate) for rate in rates]
    return istft(stretched, frames, lengths), lengths


def pitch_shift(waves: torch.Tensor, semitones: Sequence[float]
                ) -> tuple[torch.Tensor, list[int]]:
    """Shift each row's pitch by its ``semitones``; lengths about kept.

    Time-stretch by r = 2^(semitones/12) (longer for a higher pitch), then resample by the
    fraction closest to r with a denominator of at most 32 (small filters, fast); rows with the
    same fraction are resampled together. A ratio of rates: the sample rate does not enter.
    (k, n) -> (k, max length) and the lengths.
    """
    ratios = [Fraction(2.0 ** (s / 12.0)).limit_denominator(32) for s in semitones]
    stretched, lengths = time_stretch(waves, [r.denominator / r.numerator for r in ratios])
    pieces: list[torch.Tensor | None] = [None] * len(ratios)
    for ratio in sorted(set(ratios)):
        rows = [i for i, r in enumerate(ratios) if r == ratio]
        length = lengths[rows[0]]  # the same fraction gives the same stretched length
        index = to_device(torch.tensor(rows), waves.device)
        shifted = AF.resample(stretched[index, :length], ratio.numerator, ratio.denominator)
        for j, i in enumerate(rows):
            pieces[i] = shifted[j]
    out_lengths = [len(p) for p in pieces]
    return torch.stack([F.pad(p, (0, max(out_lengths) - len(p))) for p in pieces]), out_lengths


def vtlp(waves: torch.Tensor, alphas: Sequence[float], sample_rate: int, f_hi: float
         ) -> torch.Tensor:
    """Vocal tract length perturbation of each row by its α (Jaitly & Hinton 2013); (k, n) ->
    (k, n).

    Frequencies below ``f_hi·min(α, 1)/α`` are scaled by α; above, a straight line bends back to
    Nyquist. Each output STFT bin takes the magnitude at its source frequency (linear
    interpolation between the two nearest bins) and, as a phase vocoder does, the source's
    frame-to-frame phase advance scaled by the warp, so a tone at f comes out as a clean tone at
    the warped frequency (moving complex bins as they are, as nlpaug does, leaves the phases
    advancing at the old frequency and the inverse STFT mostly cancels).
    """
    spec = stft(waves)
    k, bins, frames = spec.shape
    device, hop, nyquist = waves.device, STFT["hop_length"], sample_rate / 2.0
    alpha = to_device(torch.tensor(alphas, dtype=torch.float64), device)[:, None]  # (k, 1)
    f0 = f_hi * alpha.clamp(max=1.0) / alpha  # bend point of the forward warp, source side
    freqs = torch.linspace(0.0, nyquist, bins, device=device, dtype=torch.float64)  # (bins,)
    source = torch.where(freqs <= alpha * f0, freqs / alpha,
                         nyquist - (nyquist - f0) / (nyquist - alpha * f0) * (nyquist - freqs))
    position = (source / nyquist * (bins - 1)).clamp(0, bins - 1)  # (k, bins)
    low = position.floor().long()
    high = (low + 1).clamp(max=bins - 1)
    weight = (position - low)[..., None]

    def at(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:  # x (k, bins, T) at index
        return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))

    # true phase advance per hop of each source bin (expected advance + wrapped deviation)
    expected = (2 * math.pi * hop / STFT["n_fft"]) * torch.arange(bins, device=device)
    phase = spec.angle().double()
    deviation = phase.diff(dim=-1) - expected[:, None]
    advance = expected[:, None] + torch.remainder(deviation + math.pi, 2 * math.pi) - math.pi
    ratio = torch.where(source > 0, freqs / source.clamp_min(1e-9), torch.ones_like(source))
    out_advance = (at(advance, low) * (1 - weight) + at(advance, high) * weight) * ratio[..., None]
    start = at(phase[..., :1], low)
    out_phase = torch.cat([start, start + out_advance.cumsum(-1)], dim=-1)
    magnitude = spec.abs().double()
    out_magnitude = at(magnitude, low) * (1 - weight) + at(magnitude, high) * weight
    warped = torch.polar(out_magnitude, out_phase).to(spec.dtype)
    return istft(warped, [frames] * k, [waves.shape[-1]] * k)


def refit(waves: torch.Tensor, lengths: Sequence[int], n: int) -> torch.Tensor:
    """Fit row i's first ``lengths[i]`` samples to ``n`` as :func:`cyclelib.data.fit_length`
    does (the tests compare them): the last n of a longer row, a shorter one tiled.
    (k, L) -> (k, n); the index is made on the device from the k lengths."""
    length = to_device(torch.tensor(lengths), waves.device)[:, None]  # (k, 1)
    pos = torch.arange(n, device=waves.device)
    index = torch.where(length >= n, length - n + pos, pos % length)
    return waves.gather(1, index)
