"""The hybrid spectrogram's fixed filters, designed once in float64 numpy (DESIGN §4).

Frequencies of the three maps' rows, the gammatone and HTK mel filterbanks over the STFT bins,
the folded windowed DFT of the STFT, librosa's constant-Q kernels and the low-pass of the CQT's
octave-by-octave decimation. :class:`cyclelib.features.HybridSpectrogram` turns them into
float32 buffers; the plots of notebook 02 draw them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cyclelib.features import FeatureConfig


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


def hz_to_mel(freq: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def lowest_fmax(config: FeatureConfig) -> float:
    """The lowest fmax (Hz) at which every mel band holds an STFT bin (DESIGN §4).

    The lowest triangle is the narrowest in Hz; it spans two of the n_bins + 1 equal mel steps
    from fmin. It is sure to hold a bin with non-zero weight once it is wider than one STFT bin
    spacing (sample_rate / n_fft), so fmin + spacing must lie within two steps of fmin.
    """
    spacing = config.sample_rate / config.n_fft
    step = (hz_to_mel(config.fmin + spacing) - hz_to_mel(config.fmin)) / 2
    return float(mel_to_hz(hz_to_mel(config.fmin) + (config.n_bins + 1) * step))


def mel_edges(config: FeatureConfig) -> np.ndarray:
    """n_bins + 2 frequencies (Hz) equally spaced on the HTK mel scale from fmin to fmax: the
    mel bands' edges; band j peaks at edge j + 1."""
    return mel_to_hz(np.linspace(*hz_to_mel([config.fmin, config.fmax]), config.n_bins + 2))


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


def block_decimator(taps: np.ndarray, block: int) -> np.ndarray:
    """Polyphase form of filter-and-keep-every-second-sample: (block, 1, 1, 2 block + taps - 2).

    Row p holds the filter shifted by 2p, so a conv1d with stride 2 block yields ``block``
    consecutive outputs per step: one efficient multi-channel conv instead of a 1-channel one.
    """
    rows = np.zeros((block, 2 * block + len(taps) - 2))
    for p in range(block):
        rows[p, 2 * p : 2 * p + len(taps)] = taps
    return rows[:, None, None, :]
