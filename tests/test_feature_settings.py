"""Every setting FeatureConfig accepts gives three aligned maps; the others are refused.

The grid of issue-style settings: hops 64/128/256/512, n_bins 24-84, fmax 1-8 kHz (DESIGN §4).
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import torch

from cyclelib.features import FeatureConfig, HybridSpectrogram
from cyclelib.filterbanks import cqt_frequencies, lowest_fmax, mel_filterbank

HOPS = (64, 128, 256, 512)
N_BINS = tuple(range(24, 85, 12))
FMAX = tuple(float(f) for f in range(1000, 8001, 500))
N_SAMPLES = 176_000


def _accepts(**settings) -> FeatureConfig | None:
    try:
        return FeatureConfig(**settings)
    except ValueError:
        return None


def test_the_grid_is_accepted_exactly_where_every_mel_band_holds_a_bin() -> None:
    accepted = 0
    for hop, n_bins, fmax in itertools.product(HOPS, N_BINS, FMAX):
        config = _accepts(hop_length=hop, n_bins=n_bins, fmax=fmax)
        if config is None:
            assert fmax < lowest_fmax(FeatureConfig(n_bins=n_bins)), (hop, n_bins, fmax)
            continue
        accepted += 1
        assert config.n_frames == 1 + N_SAMPLES // hop
        assert (mel_filterbank(config).max(axis=1) > 0).all(), (n_bins, fmax)
    assert accepted > 0.8 * len(HOPS) * len(N_BINS) * len(FMAX)


@pytest.mark.parametrize("n_bins", N_BINS)
def test_a_refused_fmax_names_the_valid_range(n_bins: int) -> None:
    with pytest.raises(ValueError, match="valid fmax") as refused:
        FeatureConfig(n_bins=n_bins, fmax=300.0)
    low, high = map(float, re.search(r"is (\d+) to (\d+) Hz", str(refused.value)).groups())
    assert high == 11_000
    FeatureConfig(n_bins=n_bins, fmax=low)  # the lower end of the named range is accepted


def test_a_refused_hop_names_the_valid_multiples() -> None:
    for n_bins, factor in ((84, 64), (36, 4), (24, 2)):
        with pytest.raises(ValueError, match=f"multiple of {factor}"):
            FeatureConfig(n_bins=n_bins, hop_length=factor * 3 + 1)
        FeatureConfig(n_bins=n_bins, hop_length=factor * 3)


@pytest.mark.slow
@pytest.mark.parametrize("hop", HOPS)
def test_every_map_has_the_stft_frame_count_and_the_cqt_peaks_in_its_bin(hop: int) -> None:
    seconds = np.arange(N_SAMPLES) / 22_000
    for n_bins in N_BINS:
        config = FeatureConfig(hop_length=hop, n_bins=n_bins, fmax=2000.0)
        tone_bin = n_bins // 2 + 3
        tone = np.sin(2 * np.pi * cqt_frequencies(config)[tone_bin] * seconds)
        with torch.inference_mode():
            maps = HybridSpectrogram(config).decibel_maps(
                torch.from_numpy(tone.astype(np.float32))[None])
        assert maps.shape == (1, 3, n_bins, 1 + N_SAMPLES // hop), (hop, n_bins)
        assert torch.isfinite(maps).all()
        assert int(maps[0, 0].mean(-1).argmax()) == tone_bin, (hop, n_bins)
