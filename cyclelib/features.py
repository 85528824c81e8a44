"""The hybrid spectrogram front end (DESIGN §4): waveforms (B, 176000) -> maps (B, 3, 84, 688).

Three 84-row maps share one time axis (hop 256, centred frames, 688 per 8 s cycle):

* channel 0, constant-Q transform magnitude in dB, computed octave by octave like librosa's
  ``cqt``: the top octave's 12 kernels run at the full rate, then the signal is low-passed and
  halved (and the hop with it) for each lower octave, so every kernel stays short;
* channel 1, gammatone-weighted power in dB: 84 bands on the ERB scale between 32.7 Hz and 3 kHz;
* channel 2, mel power in dB (HTK scale, no norm), identical to ``librosa.feature.melspectrogram``.

Both the gammatone and the mel map weight one STFT power spectrum (Hann window of 1000 centred in
n_fft 1024, reflect padding). Only the STFT bins below the top of the highest band are computed,
with a DFT basis folded about the window's centre (half the size of a plain one).
Everything is real arithmetic on precomputed buffers (conv1d and matmul, no complex tensors, no
``torch.stft``, no data-dependent control flow), so ``torch.export`` captures the module and
ExecuTorch lowers it (DESIGN §8). Each frequency row is then standardised over time. The filters
themselves are designed in :mod:`cyclelib.filterbanks`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cyclelib.constants import CYCLE_SAMPLES, SAMPLE_RATE
from cyclelib.filterbanks import (
    block_decimator,
    cqt_frequencies,
    cqt_kernels,
    cqt_q_factor,
    decimation_filter,
    gammatone_filterbank,
    lowest_fmax,
    mel_filterbank,
    stft_folded_bases,
)

DECIMATION_BLOCK = 32  # outputs per step of the polyphase decimation conv (speed only)


@dataclass(frozen=True)
class FeatureConfig:
    """Every parameter of the hybrid spectrogram (DESIGN §4); defaults are the original's."""

    sample_rate: int = SAMPLE_RATE  # every recording is resampled to the original's 22 kHz
    n_samples: int = CYCLE_SAMPLES  # 8 s cycles: 176,000 samples
    hop_length: int = 256  # 176,000 / 256 -> 688 centred frames
    n_bins: int = 84  # rows of every map: 7 octaves of CQT at 12 bins per octave
    fmin: float = 32.70  # C1: lowest CQT bin, lowest edge of the mel and gammatone bands
    bins_per_octave: int = 12  # semitone CQT resolution, Q = 17.3 (librosa's definition)
    filter_scale: float = 1.0  # CQT kernel length factor, as librosa's default
    n_fft: int = 1024  # STFT size of the mel and gammatone maps: 21.5 Hz bins
    win_length: int = 1000  # Hann window centred in n_fft (the original's mel window)
    fmax: float = 3000.0  # top of the mel and gammatone bands: adventitious sounds lie below
    amin: float = 1e-10  # floor before dB: 20 log10 for CQT magnitude, 10 log10 for power
    eps: float = 1e-5  # added to each row's std (the original had none: flat rows gave NaN)
    gammatone_floor: float = 1e-3  # gammatone weights below this are zero: bounds the STFT bins
    decimation_taps: int = 33  # FIR length of the 2x low-pass between CQT octaves (88 dB stop)
    group_size: int = 20  # frames per group fed to the network (DESIGN §4)
    group_stride: int = 15  # hop between groups: 45 groups, the last 8 frames unused

    def __post_init__(self) -> None:
        """Refuse a combination the front end cannot honour, naming the valid range."""
        octave_factor = 2 ** (self.n_octaves - 1)
        if self.hop_length <= 0 or self.hop_length % octave_factor:
            raise ValueError(
                f"hop_length={self.hop_length} must be a positive multiple of {octave_factor} "
                f"(e.g. {octave_factor}, {2 * octave_factor}, {4 * octave_factor}), so it can "
                f"be halved for each of the {self.n_octaves} CQT octaves of n_bins={self.n_bins}"
            )
        nyquist = self.sample_rate / 2
        if not 0 < self.fmin < self.fmax <= nyquist:
            raise ValueError(f"need 0 < fmin < fmax <= sample_rate/2 = {nyquist:.0f} Hz, "
                             f"got fmin={self.fmin}, fmax={self.fmax}")
        lowest = lowest_fmax(self)
        if self.fmax < lowest:
            raise ValueError(
                f"fmax={self.fmax:.0f} Hz packs {self.n_bins} mel bands so tightly that the "
                f"lowest fall between the {self.sample_rate / self.n_fft:.1f} Hz STFT bins and "
                f"stay empty: valid fmax for n_bins={self.n_bins} is {math.ceil(lowest)} to "
                f"{nyquist:.0f} Hz")
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"win_length={self.win_length} must be in 1..n_fft={self.n_fft}")
        # the top CQT kernel's upper band edge: half a Hann window's bandwidth above it (librosa)
        top = cqt_frequencies(self)[-1] * (1 + 0.75 / cqt_q_factor(self))
        if top >= nyquist:
            raise ValueError(f"the top CQT bin reaches {top:.0f} Hz, above the Nyquist frequency "
                             f"{nyquist:.0f} Hz: use fewer bins or a lower fmin")
        if self.n_frames < self.group_size:
            raise ValueError(f"{self.n_frames} frames cannot hold a group of {self.group_size}")

    @property
    def n_frames(self) -> int:
        """Centred frames per cycle: 1 + n_samples // hop_length (688)."""
        return 1 + self.n_samples // self.hop_length

    @property
    def n_octaves(self) -> int:
        """CQT octaves, the top one first at the full rate (7)."""
        return math.ceil(self.n_bins / self.bins_per_octave)

    @property
    def n_groups(self) -> int:
        """Groups of ``group_size`` frames at ``group_stride`` (45)."""
        return 1 + (self.n_frames - self.group_size) // self.group_stride


def validate_waveforms(
    x: torch.Tensor, n_samples: int = CYCLE_SAMPLES, values: bool = True
) -> None:
    """Raise ValueError unless ``x`` is a float32 tensor (B, n_samples), finite if ``values``.

    The shape and dtype checks read only static metadata, so they also run under ``torch.export``;
    the value check reads the data, so the module skips it while exporting.
    """
    expected = f"expected waveforms of shape (B, {n_samples}) float32"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{expected}, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != n_samples:
        raise ValueError(f"{expected}, got shape {tuple(x.shape)}")
    if x.dtype != torch.float32:
        raise ValueError(f"{expected}, got dtype {x.dtype}")
    # one cheap reduction first: a sum is finite unless a sample is NaN or infinite (or the
    # samples are near float32's limit, which the exact check then clears)
    if values and not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{expected} and finite, got NaN or infinite samples")


def standardise(maps: torch.Tensor, eps: float) -> torch.Tensor:
    """Standardise each row over time (the last axis): (x - mean) / (std + eps), any shape.

    The std is the unbiased one (N - 1), as the original's ``torch.std`` (DESIGN §4); ``eps``
    keeps a flat row finite.
    """
    centred = maps - maps.mean(dim=-1, keepdim=True)
    # the std as a norm: one fused reduction (torch.var is slow on CPU, var_mean not core ATen)
    std = torch.linalg.vector_norm(centred, dim=-1, keepdim=True) / math.sqrt(maps.shape[-1] - 1)
    return centred / (std + eps)


class HybridSpectrogram(nn.Module):
    """Batched hybrid spectrogram (DESIGN §4): (B, n_samples) float32 -> (B, 3, n_bins, n_frames).

    Channels are [CQT, gammatone, mel], each in dB and standardised per row over time. The
    filterbanks are buffers (persistent: ExecuTorch rejects the others), so they follow
    ``.to(device)``; ``forward`` also moves the module to its input's device. The module has no
    parameters and the same input always gives the same output.
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or FeatureConfig()
        bands = np.concatenate([gammatone_filterbank(config)[0], mel_filterbank(config)])
        self.n_stft_bins = int(np.flatnonzero(bands.any(axis=0))[-1]) + 1
        cos_basis, sin_basis = stft_folded_bases(config, self.n_stft_bins)
        self.stft_half = len(cos_basis) - 1  # h: the window spans centre - h .. centre + h
        self._buffer("stft_cos", cos_basis)  # (h + 1, K) even part of the windowed DFT
        self._buffer("stft_sin", sin_basis)  # (h + 1, K) odd part
        self._buffer("band_weights", bands[:, : self.n_stft_bins])  # (2 n_bins, K): [gt; mel]
        self._buffer("decimator", block_decimator(decimation_filter(config), DECIMATION_BLOCK))
        self._buffer("cqt_kernels", cqt_kernels(config)[:, None, None, :])  # (2 m, 1, 1, n)
        # Rows of the stacked power (B, 3 n_bins, T): the CQT octaves need a gain 2^octave
        # (lowest octave first, see cqt_kernels), folded into the dB conversion:
        # 10 log10(max(g P, floor)) = 10 log10(max(P, floor / g)) + 10 log10(g). Floors: amin on
        # the CQT magnitude is amin^2 on its power; amin on the band power (DESIGN §4).
        m = min(config.bins_per_octave, config.n_bins)
        gains = np.repeat(2.0 ** np.arange(config.n_octaves - 1, -1, -1), m)[-config.n_bins :]
        gains = np.concatenate([gains, np.ones(2 * config.n_bins)])
        floors = np.repeat([config.amin**2, config.amin, config.amin], config.n_bins)
        self._buffer("power_floor", (floors / gains)[:, None])
        self._buffer("decibel_offset", 10.0 * np.log10(gains)[:, None])

    def _buffer(self, name: str, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array, dtype=np.float32)  # no 0 strides: ExecuTorch refuses
        self.register_buffer(name, torch.from_numpy(array).clone())

    def _cqt_octaves(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Squared CQT magnitudes per octave, lowest first: (B, m, n_frames) each, m = 12.

        Octave by octave from the top: strided conv with the kernels at hop h, then a zero-phase
        low-pass and 2x decimation of the signal, and the hop halves (DESIGN §4). Octave i
        (from the top) still needs the gain 2^i in power (:func:`cqt_kernels`); the lowest
        octave may hold more rows than the n_bins left for it.
        """
        hop, signal, octaves = self.config.hop_length, x[:, None, :], []
        n_frames = self.config.n_frames
        pad, m = self.cqt_kernels.shape[-1] // 2, self.cqt_kernels.shape[0] // 2
        for octave in range(self.config.n_octaves):
            if octave:
                signal, hop = self._decimate(signal), hop // 2
            # centred frames; a decimated signal rounded up may add one frame past n_frames
            response = _conv(signal, self.cqt_kernels, hop, padding=pad)[..., :n_frames]
            octaves.insert(0, response[:, :m].square() + response[:, m:].square())
        return octaves

    def _decimate(self, signal: torch.Tensor) -> torch.Tensor:
        """Low-pass and keep every second sample: (B, 1, L) -> (B, 1, ceil(L / 2))."""
        block, width = self.decimator.shape[0], self.decimator.shape[-1]
        length, left = signal.shape[-1], self.config.decimation_taps // 2
        out_length = (length + 1) // 2
        n_steps = -(-out_length // block)
        right = 2 * block * (n_steps - 1) + width - length - left
        blocks = _conv(F.pad(signal, (left, right)), self.decimator, 2 * block)
        return blocks.transpose(1, 2).reshape(signal.shape[0], 1, -1)[..., :out_length]

    def stft_power(self, x: torch.Tensor) -> torch.Tensor:
        """Power (B, K, n_frames) of the K lowest STFT bins: centred, reflect-padded frames.

        n_frames = 1 + n_samples // hop_length, as ``librosa.stft(center=True)`` and the CQT.

        Each frame is cut around its centre sample c (``unfold``) and folded into its even and
        odd halves x[c+m] ± x[c−m], m = 0..h, which two matmuls with the folded bases of
        :func:`stft_folded_bases` turn into the real and imaginary parts.
        """
        h = self.stft_half
        # frame t is centred on sample t * hop, for t = 0 .. n_samples // hop: when hop divides
        # n_samples the last centre is one past the end, so the right pad is h + 1
        padded = F.pad(x[:, None, :], (h, h + 1), mode="reflect")[:, 0]
        frames = padded.unfold(-1, 2 * h + 1, self.config.hop_length)  # (B, T, 2h + 1)
        after, before = frames[..., h:], frames[..., : h + 1].flip(-1)  # x[c+m], x[c-m]
        real = torch.matmul(after + before, self.stft_cos)  # (B, T, K)
        imag = torch.matmul(after - before, self.stft_sin)
        return (real.square() + imag.square()).transpose(1, 2)

    def decibel_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Unstandardised maps in dB (B, 3, n_bins, n_frames): [CQT, gammatone, mel]."""
        self._follow_device(x)
        validate_waveforms(x, self.config.n_samples, values=not torch.compiler.is_exporting())
        bands = torch.matmul(self.band_weights, self.stft_power(x))  # (B, 2 n_bins, T)
        power = torch.cat([*self._cqt_octaves(x), bands], dim=1)
        n_rows = 3 * self.config.n_bins
        power = power[:, power.shape[1] - n_rows :]  # drop the rows below fmin, if any
        bels = torch.log10(torch.maximum(power, self.power_floor))
        decibels = torch.add(self.decibel_offset, bels, alpha=10.0)
        return decibels.unflatten(1, (3, self.config.n_bins))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Hybrid spectrogram (B, 3, n_bins, n_frames), each row standardised over time."""
        return standardise(self.decibel_maps(x), self.config.eps)

    def _follow_device(self, x: torch.Tensor) -> None:
        if isinstance(x, torch.Tensor) and x.device != self.stft_cos.device:
            self.to(x.device)


def _conv(
    signal: torch.Tensor, weight: torch.Tensor, stride: int, padding: int = 0
) -> torch.Tensor:
    """Strided 1-D convolution (B, 1, L) -> (B, C, L'), run as conv2d with weight (C, 1, 1, k).

    A 1-row conv2d, because ExecuTorch's XNNPACK pass that turns conv1d into conv2d breaks on
    a weight shared by several convs (our kernels serve every octave).
    """
    return F.conv2d(signal[:, :, None], weight, stride=(1, stride), padding=(0, padding))[:, :, 0]


def group_frames(spec: torch.Tensor, config: FeatureConfig | None = None) -> torch.Tensor:
    """Split (B, C, F, T) into groups of ``group_size`` frames every ``group_stride`` of
    ``config``: (B, G, C, F, group_size), a view (``Tensor.unfold``).

    G = 1 + (T - group_size) // group_stride: the default config gives the 45 groups of 20
    frames of DESIGN §4, and the last 8 of the 688 frames are unused.
    """
    config = config or FeatureConfig()
    if spec.ndim != 4 or spec.shape[-1] < config.group_size:
        raise ValueError(
            f"expected spectrograms (B, C, F, T) with T >= {config.group_size}, "
            f"got {tuple(spec.shape)}"
        )
    return spec.unfold(-1, config.group_size, config.group_stride).permute(0, 3, 1, 2, 4)
