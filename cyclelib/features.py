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
ExecuTorch lowers it (DESIGN §8). Each frequency row is then standardised over time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cyclelib.constants import CYCLE_SAMPLES, SAMPLE_RATE

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
        octave_factor = 2 ** (self.n_octaves - 1)
        if self.hop_length % octave_factor:
            raise ValueError(
                f"hop_length={self.hop_length} must be divisible by {octave_factor} so it can "
                f"be halved for each of the {self.n_octaves} CQT octaves"
            )
        if not 0 < self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"need 0 < fmin < fmax <= sample_rate/2, got {self.fmin}, {self.fmax}")
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"win_length={self.win_length} must be in 1..n_fft={self.n_fft}")
        # the top CQT kernel's upper band edge: half a Hann window's bandwidth above it (librosa)
        top = cqt_frequencies(self)[-1] * (1 + 0.75 / cqt_q_factor(self))
        if top >= self.sample_rate / 2:
            raise ValueError(f"the top CQT bin reaches {top:.0f} Hz, above the Nyquist frequency "
                             f"{self.sample_rate / 2:.0f} Hz: use fewer bins or a lower fmin")
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


def erb(freq: np.ndarray | float) -> np.ndarray:
    """Equivalent rectangular bandwidth in Hz (Glasberg & Moore 1990): 24.7 (4.37 f/1000 + 1)."""
    return 24.7 * (4.37 * np.asarray(freq, dtype=np.float64) / 1000.0 + 1.0)


def erb_space(fmin: float, fmax: float, n: int) -> np.ndarray:
    """``n`` centre frequencies equally spaced on the ERB-rate scale from fmin to fmax (Hz)."""
    rate = np.linspace(*(21.4 * np.log10(1.0 + 0.00437 * np.array([fmin, fmax]))), n)
    return (10.0 ** (rate / 21.4) - 1.0) / 0.00437


def fft_frequencies(config: FeatureConfig) -> np.ndarray:
    """Centre frequency in Hz of each of the n_fft // 2 + 1 STFT bins."""
    return np.arange(config.n_fft // 2 + 1) * config.sample_rate / config.n_fft


def _hann(n: int) -> np.ndarray:
    """Periodic Hann window of n samples (``scipy.signal.get_window("hann", n)``)."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


def cqt_frequencies(config: FeatureConfig) -> np.ndarray:
    """Centre frequencies of the n_bins CQT bins: fmin * 2 ** (k / bins_per_octave)."""
    return config.fmin * 2.0 ** (np.arange(config.n_bins) / config.bins_per_octave)


def gammatone_filterbank(config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Gammatone weights (n_bins, n_fft // 2 + 1) over the STFT bins, and their centres (Hz).

    Band j is the power response |H(f)|^2 = (1 + ((f - f_j) / b_j)^2)^-4 of a 4th-order gammatone
    filter with b_j = 1.019 ERB(f_j), the centres f_j evenly spaced on the ERB scale (the weights
    multiply a power spectrum, hence the squared magnitude). Weights below ``gammatone_floor`` of
    the peak are zero, which bounds the highest STFT bin the module computes. Each band is then
    scaled for unit gain at its centre: a pure tone at f_j puts its whole power (spread by the
    STFT window over a few bins) into band j. Unscaled, the low bands, narrower than one 21.5 Hz
    bin, would weigh a tone by where it falls between bins, and it could peak in a neighbour.
    """
    centres = erb_space(config.fmin, config.fmax, config.n_bins)
    offset = (fft_frequencies(config)[None, :] - centres[:, None]) / (1.019 * erb(centres)[:, None])
    weights = (1.0 + offset**2) ** -4
    weights[weights < config.gammatone_floor] = 0.0
    times = np.arange(config.n_fft) / config.sample_rate
    tones = stft_window(config) * np.exp(2j * np.pi * centres[:, None] * times)
    tone_power = np.abs(np.fft.fft(tones, axis=1)[:, : config.n_fft // 2 + 1]) ** 2
    gains = tone_power.sum(axis=1) / (weights * tone_power).sum(axis=1)
    return weights * gains[:, None], centres


def mel_edges(config: FeatureConfig) -> np.ndarray:
    """n_bins + 2 frequencies (Hz) equally spaced on the HTK mel scale from fmin to fmax: the
    mel bands' edges; band j peaks at edge j + 1."""
    mel = 2595.0 * np.log10(1.0 + np.array([config.fmin, config.fmax]) / 700.0)
    return 700.0 * (10.0 ** (np.linspace(*mel, config.n_bins + 2) / 2595.0) - 1.0)


def mel_filterbank(config: FeatureConfig) -> np.ndarray:
    """HTK mel filterbank without norm (n_bins, n_fft // 2 + 1), as ``librosa.filters.mel``.

    Triangles between n_bins + 2 points equally spaced on mel = 2595 log10(1 + f / 700) from
    fmin to fmax, each peaking at 1.
    """
    edges = mel_edges(config)
    ramps = edges[:, None] - fft_frequencies(config)[None, :]
    widths = np.diff(edges)[:, None]
    rising, falling = -ramps[:-2] / widths[:-1], ramps[2:] / widths[1:]
    return np.maximum(0.0, np.minimum(rising, falling))


def stft_window(config: FeatureConfig) -> np.ndarray:
    """The periodic Hann window of win_length, centred in n_fft with zeros (as librosa pads it)."""
    window = np.zeros(config.n_fft)
    start = (config.n_fft - config.win_length) // 2
    window[start : start + config.win_length] = _hann(config.win_length)
    return window


def stft_folded_bases(config: FeatureConfig, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """The windowed DFT of the ``n_bins`` lowest bins, folded: (h + 1, n_bins) twice.

    The window is symmetric about c = n_fft // 2 and zero beyond c ± h (h = 499 for a Hann of
    1000). With the phase measured from c, the power of bin k is |Σ_m w[c+m] x[c+m] e^(−2πikm/N)|²
    (a phase shift leaves it unchanged); the cosine part is even in m and the sine part odd, so
    row m of the bases weights x[c+m] + x[c−m] and x[c+m] − x[c−m]: half the multiplies and
    half the stored numbers of a plain DFT basis (row 0 is halved: c itself is counted twice).
    """
    window = stft_window(config)
    centre = config.n_fft // 2
    h = int(np.flatnonzero(window)[-1]) - centre
    m = np.arange(h + 1)
    if np.flatnonzero(window)[0] != centre - h or not np.allclose(window[centre + m],
                                                                   window[centre - m]):
        raise ValueError("the STFT window must be symmetric about n_fft // 2")
    phase = 2 * np.pi * np.outer(m, np.arange(n_bins)) / config.n_fft  # (h + 1, K)
    weight = window[centre + m][:, None] * np.where(m == 0, 0.5, 1.0)[:, None]
    return np.cos(phase) * weight, np.sin(phase) * weight


def _sparsify_rows(rows: np.ndarray, quantile: float = 0.01) -> np.ndarray:
    """Zero each row's smallest entries that together hold ``quantile`` of its L1 mass (librosa)."""
    mags = np.abs(rows)
    ordered = np.sort(mags, axis=1)
    cumulative = np.cumsum(ordered / mags.sum(axis=1, keepdims=True), axis=1)
    threshold = ordered[np.arange(len(rows)), np.argmin(cumulative < quantile, axis=1)]
    return np.where(mags >= threshold[:, None], rows, 0.0)


def cqt_q_factor(config: FeatureConfig) -> float:
    """librosa's Q = filter_scale / alpha, alpha = (2^(2/b) - 1) / (2^(2/b) + 1) for b bins per
    octave: 17.3 for b = 12 (older librosa used 1 / (2^(1/b) - 1) = 16.8)."""
    ratio = 2.0 ** (2 / config.bins_per_octave)
    return config.filter_scale * (ratio + 1) / (ratio - 1)


def cqt_lengths(config: FeatureConfig) -> np.ndarray:
    """Window length in samples at the full rate of each CQT bin: Q sr / f."""
    return cqt_q_factor(config) * config.sample_rate / cqt_frequencies(config)


def cqt_kernels(config: FeatureConfig) -> np.ndarray:
    """The top octave's CQT kernels as real rows [real parts; imag parts]: (2 m, n) float64.

    As in ``librosa.cqt``: kernel k is a Hann-windowed phasor of length l_k (:func:`cqt_lengths`),
    L1-normalised and centred in n = the next power of two. librosa multiplies the rectangular
    rfft of each n-sample frame by the kernels' FFT (times l_k / n, positive frequencies only,
    the entries holding the smallest 1% of each row's mass dropped); that is a dot product of the
    frame with the inverse transform built here, so a strided conv1d gives the same numbers,
    scaled by 1 / sqrt(l_k) (librosa's ``scale=True``).

    Every lower octave, at half the rate of the one above, has the same kernels in samples: only
    its gain differs, x2 in power per octave (librosa's sqrt(2) per resampling for the signal and
    for the basis, against our unit-gain decimation).
    """
    m = min(config.bins_per_octave, config.n_bins)
    freqs, lengths = cqt_frequencies(config)[-m:], cqt_lengths(config)[-m:]
    n_fft = int(2 ** np.ceil(np.log2(lengths.max())))
    kernels = np.zeros((m, n_fft), dtype=np.complex128)
    for row, (length, freq) in enumerate(zip(lengths, freqs, strict=True)):
        times = np.arange(-length // 2, length // 2)
        kernel = np.exp(2j * np.pi * freq * times / config.sample_rate) * _hann(len(times))
        start = (n_fft - len(times)) // 2
        kernels[row, start : start + len(times)] = kernel / np.abs(kernel).sum()
    basis = np.fft.fft(kernels * lengths[:, None] / n_fft, axis=1)[:, : n_fft // 2 + 1]
    basis = _sparsify_rows(basis)
    # sum_k basis[k] rfft(frame)[k] = sum_t frame[t] kernel[t], with kernel = basis @ phase:
    phase = np.exp(-2j * np.pi * np.outer(np.arange(n_fft // 2 + 1), np.arange(n_fft)) / n_fft)
    kernels = (basis @ phase) / np.sqrt(lengths)[:, None]
    return np.concatenate([kernels.real, kernels.imag])


def decimation_filter(config: FeatureConfig) -> np.ndarray:
    """Zero-phase low-pass FIR for 2x decimation (Kaiser-windowed sinc, cutoff 0.225 sr, unit DC
    gain, as ``scipy.signal.firwin``): flat within 1e-4 to 0.1 sr, -88 dB beyond 0.35 sr."""
    offsets = np.arange(config.decimation_taps) - (config.decimation_taps - 1) / 2
    taps = np.sinc(2 * 0.225 * offsets) * np.kaiser(config.decimation_taps, 8.6)
    return taps / taps.sum()


def _block_decimator(taps: np.ndarray, block: int) -> np.ndarray:
    """Polyphase form of filter-and-keep-every-second-sample: (block, 1, 1, 2 block + taps - 2).

    Row p holds the filter shifted by 2p, so a conv1d with stride 2 block yields ``block``
    consecutive outputs per step: one efficient multi-channel conv instead of a 1-channel one.
    """
    rows = np.zeros((block, 2 * block + len(taps) - 2))
    for p in range(block):
        rows[p, 2 * p : 2 * p + len(taps)] = taps
    return rows[:, None, None, :]


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
    """Standardise each row over time (the last axis): (x - mean) / (std + eps), any shape."""
    centred = maps - maps.mean(dim=-1, keepdim=True)
    # the std as a norm: one fused reduction (torch.var is slow on CPU, var_mean not core ATen)
    std = torch.linalg.vector_norm(centred, dim=-1, keepdim=True) / math.sqrt(maps.shape[-1])
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
        self._buffer("decimator", _block_decimator(decimation_filter(config), DECIMATION_BLOCK))
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
        pad, m = self.cqt_kernels.shape[-1] // 2, self.cqt_kernels.shape[0] // 2
        for octave in range(self.config.n_octaves):
            if octave:
                signal, hop = self._decimate(signal), hop // 2
            response = _conv(signal, self.cqt_kernels, hop, padding=pad)  # n_frames, centred
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

        Each frame is cut around its centre sample c (``unfold``) and folded into its even and
        odd halves x[c+m] ± x[c−m], m = 0..h, which two matmuls with the folded bases of
        :func:`stft_folded_bases` turn into the real and imaginary parts.
        """
        h = self.stft_half
        padded = F.pad(x[:, None, :], (h, h), mode="reflect")[:, 0]
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
