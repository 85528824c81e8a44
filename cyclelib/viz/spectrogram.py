"""Pictures of the hybrid spectrogram for notebook 02 (DESIGN §4): scales, kernels, maps, groups.

Every plotting function returns the matplotlib figure it drew (or draws into the axes it is
given), so a notebook shows it and a script can save it. Maps are (F, T) arrays in dB or
standardised units, row 0 the lowest frequency. :func:`map_explorer` is the chapter's widget:
:func:`explore_maps` redrawn over the settings of :data:`EXPLORER_OPTIONS`.
"""

from __future__ import annotations

from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle

from cyclelib.constants import MAP_NAMES
from cyclelib.features import FeatureConfig, HybridSpectrogram
from cyclelib.filterbanks import (
    cqt_frequencies,
    cqt_kernels,
    cqt_lengths,
    cqt_q_factor,
    fft_frequencies,
    gammatone_filterbank,
    mel_edges,
    mel_filterbank,
)
from cyclelib.viz.widgets import dropdown, figure_explorer, slider

# What the explorer offers; every combination is a valid FeatureConfig (tests check them all).
EXPLORER_OPTIONS: dict[str, tuple] = {
    "n_bins": tuple(range(24, 85, 12)),  # 2 to 7 CQT octaves of 12 bins
    "hop_length": (64, 128, 256, 512),  # multiples of 64: halved once per CQT octave, 7 octaves
    "fmax": tuple(range(2000, 8001, 1000)),  # from above 1.8 kHz: below it 84 mel bands go empty
}


def row_frequencies(config: FeatureConfig) -> dict[str, np.ndarray]:
    """Centre frequency (Hz) of every row of each map."""
    return {
        MAP_NAMES[0]: cqt_frequencies(config),
        MAP_NAMES[1]: gammatone_filterbank(config)[1],
        MAP_NAMES[2]: mel_edges(config)[1:-1],
    }


_ROUND_HZ = (50, 100, 200, 500, 1000, 2000, 3000)  # tick values of the log-spaced maps


def frequency_ticks(freqs: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Row positions and labels of round frequencies for a map whose row r is centred at
    ``freqs[r]`` (increasing): steps of 500 Hz on a linear axis (from 0 Hz), else 50, 100, 200,
    500 Hz, 1, 2, 3 kHz."""
    if freqs[0] == 0:  # linear STFT bins
        values = np.arange(0, freqs[-1] + 1, 500 if freqs[-1] > 1500 else 250)
    else:
        values = np.array([f for f in _ROUND_HZ if freqs[0] <= f <= freqs[-1]])
    rows = np.interp(values, freqs, np.arange(len(freqs)))
    keep = [0]
    for i in range(1, len(rows)):  # drop a tick that would crowd the one below it
        if rows[i] - rows[keep[-1]] >= len(freqs) / 14:
            keep.append(i)
    return rows[keep], [f"{v / 1000:g}k" if v >= 1000 else f"{v:g}" for v in values[keep]]


def show_map(ax: plt.Axes, image: np.ndarray, config: FeatureConfig, freqs: np.ndarray,
             title: str = "", colorbar: bool | str = False, **imshow) -> None:
    """Draw one (F, T) map with time in seconds and round row frequencies on the y axis;
    ``colorbar``: True or its label ("dB", "z") to draw one."""
    seconds = image.shape[1] * config.hop_length / config.sample_rate
    shown = ax.imshow(image, origin="lower", aspect="auto", cmap="magma",
                      extent=(0, seconds, -0.5, image.shape[0] - 0.5), **imshow)
    ax.set_yticks(*frequency_ticks(freqs[: image.shape[0]]))  # the rows drawn
    ax.set(title=title, xlabel="time (s)", ylabel="Hz", ylim=(-0.5, image.shape[0] - 0.5))
    if colorbar:
        bar = ax.figure.colorbar(shown, ax=ax, pad=0.01)
        if isinstance(colorbar, str):
            bar.set_label(colorbar)


def plot_waveform(wave: np.ndarray, sample_rate: int, title: str = "") -> plt.Figure:
    """The 8 s cycle fed to the front end."""
    fig, ax = plt.subplots(figsize=(11, 2.2))
    ax.plot(np.arange(len(wave)) / sample_rate, wave, lw=0.4, color="0.2")
    ax.set(title=title, xlabel="time (s)", ylabel="amplitude", xlim=(0, len(wave) / sample_rate))
    fig.tight_layout()
    return fig


def plot_stft(power_db: np.ndarray, config: FeatureConfig) -> plt.Figure:
    """The STFT power (K, T) in dB: the K lowest bins, all that the mel and gammatone maps use."""
    fig, ax = plt.subplots(figsize=(11, 3.2))
    show_map(ax, power_db, config, fft_frequencies(config),
             title=f"STFT power, bins 0-{len(power_db) - 1} "
                   f"(0-{fft_frequencies(config)[len(power_db) - 1]:.0f} Hz)", colorbar="dB")
    fig.tight_layout()
    return fig


def plot_filterbanks(config: FeatureConfig) -> plt.Figure:
    """Mel and gammatone weights over the STFT bins, and where each scale puts its 84 rows."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    freqs = fft_frequencies(config)
    top = int(np.flatnonzero((gammatone_filterbank(config)[0] > 0).any(axis=0))[-1]) + 1
    for ax, (name, bank) in zip(axes[:2], (("mel (HTK, no norm)", mel_filterbank(config)),
                                            ("gammatone (ERB)", gammatone_filterbank(config)[0])),
                                strict=True):
        for row in bank[::6]:
            ax.plot(freqs[:top], row[:top] / row.max(), lw=0.8)
        ax.set(title=f"{name}: every 6th band", xlabel="Hz", ylabel="weight (peak = 1)")
    for name, centres in row_frequencies(config).items():
        axes[2].plot(centres, label=name)
    axes[2].set(yscale="log", title="row centre frequencies", xlabel="row", ylabel="Hz")
    axes[2].legend()
    fig.tight_layout()
    return fig


def plot_cqt_kernels(config: FeatureConfig, rows: tuple[int, ...] = (0, 6, 11)) -> plt.Figure:
    """Real parts of a few top-octave CQT kernels, and the kernel length per bin at full rate."""
    kernels = cqt_kernels(config)
    m = kernels.shape[0] // 2
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 3.2))
    freqs = cqt_frequencies(config)
    for row in rows:
        ax0.plot(kernels[row] / np.abs(kernels[row]).max(), lw=0.8,
                 label=f"{freqs[len(freqs) - m + row]:.0f} Hz")
    ax0.set(title="top-octave kernels (real part); every octave reuses them at half the rate",
            xlabel="sample", ylabel="normalised")
    ax0.legend()
    ax1.loglog(freqs, cqt_lengths(config) / config.sample_rate * 1000)
    ax1.set(title=f"window length = Q / f (Q = {cqt_q_factor(config):.1f})", xlabel="Hz",
            ylabel="ms")
    fig.tight_layout()
    return fig


def plot_maps(examples: dict[str, np.ndarray], config: FeatureConfig,
              standardised: bool = False) -> plt.Figure:
    """One row per example (labelled by its key up to " ("), the three maps (3, F, T) side by
    side; dB maps span their top 5-100%, standardised ones -3..3."""
    freqs = row_frequencies(config)
    fig, axes = plt.subplots(len(examples), 3, figsize=(14, 2.5 * len(examples)), squeeze=False)
    for row, (title, maps) in enumerate(examples.items()):
        for col, name in enumerate(MAP_NAMES):
            limits = dict(vmin=-3, vmax=3) if standardised else dict(
                vmin=np.percentile(maps[col], 5), vmax=maps[col].max())
            show_map(axes[row, col], maps[col], config, freqs[name], name,
                     colorbar="z" if standardised else "dB", **limits)
        axes[row, 0].set_ylabel(f"{title.split(' (')[0]}\nHz", fontsize=11)
    fig.tight_layout()
    return fig


def plot_standardisation(before: np.ndarray, after: np.ndarray, config: FeatureConfig,
                         rows: tuple[int, ...] = (10, 40, 70)) -> plt.Figure:
    """A few rows of one map over time before (dB) and after per-row standardisation."""
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 3))
    seconds = np.arange(before.shape[1]) * config.hop_length / config.sample_rate
    for row in rows:
        ax0.plot(seconds, before[row], lw=0.8, label=f"row {row}")
        ax1.plot(seconds, after[row], lw=0.8, label=f"row {row}")
    ax0.set(title="dB: each row has its own level and spread", xlabel="time (s)", ylabel="dB")
    ax1.set(title="standardised: mean 0, std 1 per row", xlabel="time (s)", ylabel="z")
    ax1.legend(loc="upper right")
    fig.tight_layout()
    return fig


def draw_groups(ax: plt.Axes, config: FeatureConfig, n_rows: int) -> None:
    """Outline the groups of ``group_size`` frames every ``group_stride`` on a drawn map."""
    frame = config.hop_length / config.sample_rate
    for g in range(config.n_groups):
        start = g * config.group_stride * frame
        ax.add_patch(Rectangle((start, -0.5 + (g % 2) * 0.15 * n_rows),
                               config.group_size * frame, n_rows * 0.85, fill=False,
                               lw=0.9, edgecolor="cyan" if g % 2 else "white"))
    unused = config.n_groups * config.group_stride - config.group_stride + config.group_size
    ax.axvspan(unused * frame, config.n_frames * frame, facecolor="none", edgecolor="lime",
               hatch="////", lw=1.2)
    ax.annotate(f"last {config.n_frames - unused} frames: in no group", xy=(
        config.n_frames * frame, n_rows - 0.5), xytext=(0, 4), textcoords="offset points",
        ha="right", va="bottom", color="green", fontsize=9, annotation_clip=False)


def plot_groups(maps: np.ndarray, config: FeatureConfig, title: str = "") -> plt.Figure:
    """The CQT map with the network's groups drawn on it (the hatched strip is never used)."""
    fig, ax = plt.subplots(figsize=(13, 3.4))
    show_map(ax, maps[0], config, cqt_frequencies(config), title, vmin=-3, vmax=3)
    draw_groups(ax, config, maps.shape[1])
    fig.tight_layout()
    return fig


def explore_maps(
    waves: dict[str, np.ndarray], example: str, n_bins: int, hop_length: int, fmax: float
) -> plt.Figure:
    """The explorer's callback: the three dB maps of ``waves[example]`` (176,000 samples) under
    ``FeatureConfig(n_bins=n_bins, hop_length=hop_length, fmax=fmax)``."""
    config = FeatureConfig(n_bins=n_bins, hop_length=hop_length, fmax=float(fmax))
    with torch.inference_mode():
        maps = HybridSpectrogram(config).decibel_maps(torch.from_numpy(waves[example])[None])
    fig = plot_maps({example: maps[0].numpy()}, config)
    fig.suptitle(f"{n_bins} rows, hop {hop_length} ({maps.shape[-1]} frames), fmax {fmax:.0f} Hz",
                 y=1.02)
    return fig


def map_explorer(waves: dict[str, np.ndarray], config: FeatureConfig | None = None):
    """A cycle drop-down and sliders over :data:`EXPLORER_OPTIONS`, above the three maps."""
    config = config or FeatureConfig()
    start = {name: getattr(config, name) for name in EXPLORER_OPTIONS}
    controls = {
        "example": dropdown("cycle", list(waves)),
        **{name: slider(name, options, type(options[0])(start[name]))
           for name, options in EXPLORER_OPTIONS.items()},
    }
    return figure_explorer(partial(explore_maps, waves), controls)


def map_statistics(maps: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Per cycle, per map and per row of standardised maps (N, 3, F, T): the mean ``|z|`` over time
    and the lag-1 autocorrelation over time (N, 3, F, 2). After standardisation every row has
    mean 0 and std 1, so what is left is the shape of its values (a noise floor is Gaussian and
    uncorrelated from frame to frame; breath sound is not)."""
    out = np.empty((len(maps), *maps.shape[1:3], 2), dtype=np.float32)
    for start in range(0, len(maps), chunk):
        z = np.asarray(maps[start:start + chunk], dtype=np.float32)
        out[start:start + chunk, ..., 0] = np.abs(z).mean(-1)
        out[start:start + chunk, ..., 1] = (z[..., 1:] * z[..., :-1]).mean(-1)
    return out


def device_probe(statistics: np.ndarray, devices: np.ndarray, patients: np.ndarray,
                 rows: np.ndarray | None = None, folds: int = 5) -> dict[str, float]:
    """How well a linear classifier tells the recording device from :func:`map_statistics`
    (N, 3, F, 2) of standardised maps (DESIGN §4), cross-validated over whole patients (a fold's
    patients are never trained on, so it cannot recognise a patient instead of a device).
    ``rows``: the map rows to use (all by default). Returns the accuracy, the share of the most
    common device (what always guessing it scores), and the balanced accuracy (chance: one over
    the number of devices)."""
    from sklearn.linear_model import RidgeClassifier
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = statistics if rows is None else statistics[:, :, rows]
    x = x.reshape(len(x), -1)
    devices = np.asarray(devices)
    classifier = make_pipeline(StandardScaler(), RidgeClassifier(alpha=100.0))
    split = GroupKFold(n_splits=min(folds, len(np.unique(patients))))
    predicted = cross_val_predict(classifier, x, devices, groups=patients, cv=split)
    _, counts = np.unique(devices, return_counts=True)
    return {"accuracy": float((predicted == devices).mean()),
            "majority_share": float(counts.max() / counts.sum()),
            "balanced_accuracy": float(balanced_accuracy_score(devices, predicted)),
            "chance_balanced": 1 / len(counts)}
