"""Every interactive control of the notebooks, exercised headless over its options.

Each widget's callback is a named function in cyclelib.viz; these tests call it for every option
of its drop-downs and both ends (and every step) of its sliders, then build the widget itself and
move its controls, as a learner would in JupyterLab.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from cyclelib.constants import CLASS_NAMES, SAMPLE_RATE
from cyclelib.data import cut_cycle, load_recording, scan_icbhi, synthetic_dir
from cyclelib.features import FeatureConfig
from cyclelib.model import ModelConfig
from cyclelib.viz import data as vd
from cyclelib.viz import model as vm
from cyclelib.viz import spectrogram as vs
from cyclelib.viz.widgets import figure_png

widgets = pytest.importorskip("ipywidgets")
PNG, WAV = b"\x89PNG", b"RIFF"


@pytest.fixture(scope="module")
def folder() -> Path:
    return synthetic_dir()


@pytest.fixture(scope="module")
def with_audio(folder: Path) -> pd.DataFrame:
    cycles = scan_icbhi(folder).cycles
    return cycles[cycles["has_audio"]]


@pytest.fixture(scope="module")
def waves(folder: Path, with_audio: pd.DataFrame) -> dict[str, np.ndarray]:
    """Two 8 s cycles, as notebook 02 prepares its examples."""
    out = {}
    for row in with_audio.groupby("label").head(1).head(2).itertuples():
        rate_wave = load_recording(folder / f"{row.recording}.wav")
        out[f"{CLASS_NAMES[row.label]} ({row.recording})"] = cut_cycle(
            rate_wave, SAMPLE_RATE, row.start, row.end)
    return out


def _children(box, kind):
    return [w for w in box.children if isinstance(w, kind)]


# 01 · the class player -------------------------------------------------------------------------


def test_class_player_callback_plays_every_class_it_offers(folder, with_audio) -> None:
    offered = vd.classes_present(with_audio)
    assert offered == list(CLASS_NAMES)  # the teaching set has every class
    rng = np.random.default_rng(0)
    for name in offered:
        title, wav = vd.play_class(with_audio, folder, rng, name)
        assert title.startswith(f"{name}: ") and wav[:4] == WAV and len(wav) > 1000


def test_class_player_offers_only_classes_with_audio(folder, with_audio) -> None:
    no_both = with_audio[with_audio["label"] != 3]
    player = vd.class_player(no_both, folder, np.random.default_rng(0))
    (pick,) = _children(player, widgets.Dropdown)
    assert list(pick.options) == ["normal", "crackle", "wheeze"]
    with pytest.raises(ValueError, match="no both cycle"):
        vd.random_cycle(no_both, folder, "both", np.random.default_rng(0))
    with pytest.raises(ValueError, match="must be one of"):
        vd.random_cycle(no_both, folder, "rhonchus", np.random.default_rng(0))


def test_class_player_widget_reloads_on_every_pick(folder, with_audio) -> None:
    player = vd.class_player(with_audio, folder, np.random.default_rng(0))
    (pick,), (audio,), (title,) = (_children(player, k) for k in
                                   (widgets.Dropdown, widgets.Audio, widgets.HTML))
    assert audio.value[:4] == WAV and title.value.startswith("normal: ")
    for name in pick.options[::-1]:
        pick.value = name
        assert title.value.startswith(f"{name}: ") and audio.value[:4] == WAV


# 02 · the spectrogram explorer -----------------------------------------------------------------


def test_explorer_offers_only_valid_settings() -> None:
    options = vs.EXPLORER_OPTIONS
    for n_bins, hop, fmax in itertools.product(*options.values()):
        FeatureConfig(n_bins=n_bins, hop_length=hop, fmax=float(fmax))  # never raises
    default = FeatureConfig()
    assert all(getattr(default, name) in values for name, values in options.items())


def _covering_grid(options: dict[str, tuple]) -> list[dict]:
    """Every option of every control at least once, and the corners of the ranges."""
    longest = max(len(values) for values in options.values())
    diagonal = [{name: values[i % len(values)] for name, values in options.items()}
                for i in range(longest)]
    corners = [dict(zip(options, ends, strict=True))
               for ends in itertools.product(*((v[0], v[-1]) for v in options.values()))]
    return diagonal + corners


@pytest.mark.slow
def test_explorer_callback_draws_every_setting(waves) -> None:
    grid = _covering_grid(vs.EXPLORER_OPTIONS)
    names = list(waves)
    for i, settings in enumerate(grid):
        fig = vs.explore_maps(waves, names[i % len(names)], **settings)
        images = [ax.images[0].get_array() for ax in fig.axes if ax.images]
        assert len(images) == 3, settings
        expected = (settings["n_bins"], 1 + 176_000 // settings["hop_length"])
        assert all(image.shape == expected for image in images), settings
        assert all(np.isfinite(image).all() and image.std() > 0 for image in images), settings
        assert figure_png(fig)[:4] == PNG


def test_explorer_widget_redraws_when_a_control_moves(waves) -> None:
    open_figures = set(plt.get_fignums())
    explorer = vs.map_explorer(waves)
    (image,) = _children(explorer, widgets.Image)
    sliders = {s.description: s for s in _children(explorer, widgets.SelectionSlider)}
    assert set(sliders) == set(vs.EXPLORER_OPTIONS)
    (example,) = _children(explorer, widgets.Dropdown)
    first = image.value
    assert first[:4] == PNG
    sliders["hop_length"].value = 512
    sliders["n_bins"].value = sliders["n_bins"].options[0]
    example.value = example.options[-1]
    assert image.value[:4] == PNG and image.value != first
    assert set(plt.get_fignums()) == open_figures, "the explorer must close what it renders"


# 03 · the cluster timeline ---------------------------------------------------------------------


def test_timeline_callback_and_slider_cover_every_cycle() -> None:
    config = ModelConfig.small()
    generator = torch.Generator().manual_seed(0)
    spec = torch.randn(3, 3, 84, 688, generator=generator)
    q = torch.softmax(torch.randn(3, 45, config.n_clusters, generator=generator), -1)
    labels = torch.tensor([0, 2, 3])
    for cycle in range(3):
        fig = vm.cluster_timeline(spec, q, labels, config, cycle)
        assert f"cycle {cycle} ({CLASS_NAMES[int(labels[cycle])]})" in fig.axes[0].get_title()
        plt.close(fig)
    open_figures = set(plt.get_fignums())
    explorer = vm.timeline_explorer(spec, q, labels, config)
    (slider,) = _children(explorer, widgets.SelectionSlider)
    (image,) = _children(explorer, widgets.Image)
    assert list(slider.options) == [0, 1, 2]
    seen = {image.value}
    for cycle in slider.options[::-1]:
        slider.value = cycle
        seen.add(image.value)
    assert len(seen) == 3 and set(plt.get_fignums()) == open_figures
