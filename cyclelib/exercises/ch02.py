"""The checks of notebook 02's exercises (docs/teaching.md).

Each check runs the learner's function on several inputs and compares it with what
:mod:`cyclelib.features` and :mod:`cyclelib.filterbanks` compute (DESIGN §4): the frame and
group counts of the front end for other lengths and hops than the defaults, the row
standardisation of a real map, the HTK mel scale and the mel filterbank's bands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from cyclelib.exercises._core import NotDone, Wrong, call, exercise, expect_close
from cyclelib.exercises._source import refuse_shortcut
from cyclelib.filterbanks import fft_frequencies, hz_to_mel, mel_edges, mel_filterbank, mel_to_hz

if TYPE_CHECKING:
    from cyclelib.features import FeatureConfig

# (n_samples, hop, group_size, stride): the default first, then shorter cycles, other hops,
# a hop that divides the length exactly, groups that do not overlap, a hop no CQT could use
FRAME_CASES = ((176000, 256, 20, 15), (22000, 256, 20, 15), (176000, 512, 20, 15),
               (44100, 128, 10, 10), (25600, 256, 20, 20), (30000, 100, 7, 3))


def _unpack(answer: Any, names: str, count: int) -> tuple:
    """The learner's tuple of ``count`` items; NotDone while one of them is ``...``."""
    if not isinstance(answer, tuple) or len(answer) != count:
        raise Wrong(f"pass the tuple ({names}), got {type(answer).__name__}")
    if any(item is ... for item in answer):
        raise NotDone
    return answer


def _frame_config(n_samples: int, hop: int, group_size: int, stride: int) -> FeatureConfig:
    from cyclelib.features import FeatureConfig  # torch: loaded by the checks that need it

    # 12 rows from 500 Hz: one CQT octave, so any hop is valid; rows do not change the frames
    return FeatureConfig(n_samples=n_samples, hop_length=hop, group_size=group_size,
                         group_stride=stride, n_bins=12, fmin=500.0)


@exercise("2.1", "frames and groups from the sample count")
def check_frames_and_groups(function: Any) -> str:
    """``function(n_samples, hop, group_size, stride)`` -> ``(frames, groups)``, compared with
    ``FeatureConfig.n_frames`` / ``n_groups``, with ``group_frames`` on that many frames and
    with the shape of a real :class:`HybridSpectrogram` output, for :data:`FRAME_CASES`."""
    refuse_shortcut(function, ("FeatureConfig", "group_frames", "HybridSpectrogram", "unfold"),
                    "count the frames and groups")
    import torch

    from cyclelib.features import HybridSpectrogram, group_frames

    for case in FRAME_CASES:
        config = _frame_config(*case)
        grouped = group_frames(torch.zeros(1, 1, 1, config.n_frames), config)
        want = (config.n_frames, grouped.shape[1])
        got = call(function, *case)
        if not isinstance(got, tuple | list) or len(got) != 2:
            raise Wrong(f"return the pair (frames, groups), got {got!r}")
        what = (f"{case[0]} samples, hop {case[1]}, groups of {case[2]} every {case[3]}")
        if int(got[0]) != want[0]:
            raise Wrong(f"{what}: {want[0]} frames, you said {got[0]} (frames are centred, the "
                        "first on sample 0, one every hop up to the last sample)")
        if int(got[1]) != want[1]:
            raise Wrong(f"{what}: {want[1]} groups, you said {got[1]} (a group needs "
                        "group_size whole frames; the frames left over are dropped)")
    n_samples, hop = 22000, 128  # one real front end: its output has that many frames
    config = _frame_config(n_samples, hop, 20, 15)
    with torch.inference_mode():
        frames = HybridSpectrogram(config).decibel_maps(torch.zeros(1, n_samples)).shape[-1]
    if int(call(function, n_samples, hop, 20, 15)[0]) != frames:
        raise Wrong(f"{n_samples} samples at hop {hop}: the front end gives {frames} frames")
    return (f"{len(FRAME_CASES) + 1} settings agree with the front end, "
            "e.g. 176,000 samples at hop 256 -> 688 frames -> 45 groups")


def _standardised(function: Callable, maps: np.ndarray, eps: float) -> np.ndarray:
    """The learner's standardised ``maps`` as float64; Wrong naming eps when a row is not finite
    (the maps are finite, so only a flat row, std 0, divides 0 by 0)."""
    with np.errstate(all="ignore"):
        got = call(function, maps.copy(), eps)
    got = np.asarray(got.detach().cpu() if hasattr(got, "detach") else got, dtype=np.float64)
    if got.shape == maps.shape and not np.isfinite(got).all():
        raise Wrong("NaN or inf where a row is flat (its std is 0, e.g. a silent band at the dB "
                    "floor): add eps to the row's std before dividing, as cyclelib does")
    return got


@exercise("2.2", "row standardisation")
def check_standardisation(answer: Any) -> str:
    """``answer``: ``(standardise_rows, maps)``; ``standardise_rows(maps, eps)`` standardises
    the last axis of any array, compared with :func:`cyclelib.features.standardise` on the
    notebook's dB maps (e.g. (4, 3, 84, 688)) and on a map with a flat row."""
    function, maps = _unpack(answer, "standardise_rows, decibels", 2)
    refuse_shortcut(function, ("standardise", "front_end", "HybridSpectrogram"),
                     "standardise the rows")
    import torch

    from cyclelib.features import FeatureConfig, standardise

    eps = FeatureConfig().eps
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim < 2 or maps.shape[-1] < 2:
        raise Wrong(f"pass maps with frames on the last axis, e.g. decibels, got {maps.shape}")
    want = standardise(torch.from_numpy(maps).double(), eps).numpy()
    got = _standardised(function, maps, eps)
    if got.shape == want.shape:
        centred = maps - maps.mean(-1, keepdims=True, dtype=np.float64)
        biased = centred / (centred.std(-1, keepdims=True) + eps)
        if np.allclose(got, biased, rtol=1e-4, atol=1e-4) and not np.allclose(
                got, want, rtol=1e-4, atol=1e-4):
            raise Wrong("divided by the biased std (N): cyclelib, as the original's torch.std, "
                        "uses the unbiased one (N - 1), e.g. np.std(..., ddof=1)")
    expect_close(got, want, f"standardised maps of shape {maps.shape}", rtol=1e-4, atol=1e-4)
    flat = maps[0].reshape(-1, maps.shape[-1])[:3].copy()
    flat[1] = -100.0  # a silent row (the amin floor): its std is 0
    expect_close(_standardised(function, flat, eps),
                 standardise(torch.from_numpy(flat).double(), eps).numpy(),
                 "a map with a flat row", rtol=1e-4, atol=1e-4)
    return f"{np.prod(maps.shape[:-1]):,} rows standardised as the front end does, flat rows too"


def _probe_frequencies(config: FeatureConfig) -> list[tuple[float, np.ndarray]]:
    """Frequencies and their mel weights (n_bins,): every STFT bin some band holds (its column
    of :func:`mel_filterbank`), then, between each two neighbouring peaks, one frequency past
    the mel midpoint but before the midpoint in Hz, where only triangles straight in Hz tell
    which band weighs more."""
    bank = mel_filterbank(config)  # (n_bins, n_fft // 2 + 1)
    probes = [(float(f), bank[:, k]) for k, f in enumerate(fft_frequencies(config))
              if bank[:, k].max() > 0]  # below fmin or above fmax no band holds a bin
    edges = mel_edges(config)
    peaks = edges[1:-1]
    in_hz = (peaks[:-1] + peaks[1:]) / 2
    in_mel = mel_to_hz((hz_to_mel(peaks[:-1]) + hz_to_mel(peaks[1:])) / 2)
    for freq in (in_hz + in_mel) / 2:
        rising = (freq - edges[:-2]) / np.diff(edges)[:-1]
        falling = (edges[2:] - freq) / np.diff(edges)[1:]
        probes.append((float(freq), np.maximum(0.0, np.minimum(rising, falling))))
    return probes


@exercise("2.3", "HTK mel of a frequency")
def check_mel(answer: Any) -> str:
    """``answer``: ``(htk_mel, mel_band)``; ``htk_mel(freq)`` (a number or an array) compared
    with :func:`cyclelib.filterbanks.hz_to_mel` and librosa's ``hz_to_mel(htk=True)``;
    ``mel_band(freq, config)``, the band whose triangle weighs ``freq`` most, compared with the
    largest weight of the STFT bin's column of :func:`mel_filterbank`, for every bin the bands
    cover, and with the triangles between the peaks (:func:`_probe_frequencies`), in the default
    configuration and in one with 48 bands up to 2 kHz."""
    htk_mel, mel_band = _unpack(answer, "htk_mel, mel_band", 2)
    refuse_shortcut(htk_mel, ("hz_to_mel", "librosa"), "write the HTK formula")
    refuse_shortcut(mel_band, ("mel_filterbank", "mel_edges", "librosa", "filterbanks"),
                     "find the band from the mel scale")
    freqs = np.array([0.0, 32.7, 100.0, 440.0, 700.0, 1000.0, 2999.0, 11000.0])
    got = np.asarray(call(htk_mel, freqs), dtype=np.float64)
    want = hz_to_mel(freqs)
    if got.shape == want.shape and np.allclose(got, 2595 * np.log(1 + freqs / 700)):
        raise Wrong("that is 2595·ln(1 + f/700): the HTK formula uses log10 (2595·log10 = "
                    "1127·ln)")
    try:
        import librosa

        slaney = librosa.hz_to_mel(freqs, htk=False)
        if got.shape == want.shape and np.allclose(got, slaney, rtol=1e-4):
            raise Wrong("that is the Slaney mel scale (librosa's default), not HTK: "
                        "mel = 2595·log10(1 + f/700)")
        expect_close(librosa.hz_to_mel(freqs, htk=True), want, "librosa's HTK mel")
    except ImportError:  # librosa is only a test dependency: cyclelib's formula is the reference
        pass
    expect_close(got, want, f"htk_mel of {freqs.tolist()} Hz", rtol=1e-6, atol=1e-6)
    from cyclelib.features import FeatureConfig

    configs = {"the default configuration": FeatureConfig(),
               "48 bands up to 2 kHz": FeatureConfig(n_bins=48, hop_length=512, fmax=2000.0)}
    checked = 0
    for where, config in configs.items():
        for freq, weights in _probe_frequencies(config):
            band = call(mel_band, float(freq), config)
            best, yours = int(np.argmax(weights)), int(band)
            if yours != best:
                weight = weights[yours] if 0 <= yours < len(weights) else 0.0
                raise Wrong(f"{where}: {freq:.1f} Hz weighs most in band {best} (weight "
                            f"{weights[best]:.2f}), you said {band} (weight {weight:.2f}): band "
                            "j peaks at point j + 1 of the n_bins + 2 points equally spaced in "
                            "mel, and the triangles are straight lines in Hz")
            checked += 1
    return (f"htk_mel(700 Hz) = {hz_to_mel(700.0):.1f} mel as librosa's htk=True; "
            f"{checked} frequencies fall in the bands of the front end's filterbank")
