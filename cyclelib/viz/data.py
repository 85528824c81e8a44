"""Pictures of the database for notebook 01 (DESIGN §2–3): who, what device, how long, which class.

Every plot function takes the tables of :func:`cyclelib.data.scan_icbhi` and returns the
matplotlib figure it drew, so a notebook shows it and a script can save it. :func:`class_player`
is the chapter's widget: a class drop-down and a player for a random cycle of that class.
"""

from __future__ import annotations

import textwrap
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from cyclelib.constants import CLASS_NAMES, CYCLE_SECONDS, SAMPLE_RATE
from cyclelib.data.audio import load_recording
from cyclelib.viz.widgets import audio_player, dropdown, wav_bytes

_PALETTE = dict(zip(CLASS_NAMES, sns.color_palette("colorblind", len(CLASS_NAMES)), strict=True))


def _named(cycles: pd.DataFrame) -> pd.DataFrame:
    """``cycles`` with a categorical ``class`` column holding the class names in label order."""
    named = cycles.assign(**{"class": [CLASS_NAMES[i] for i in cycles["label"]]})
    named["class"] = pd.Categorical(named["class"], categories=CLASS_NAMES)
    return named


def plot_patients(recordings: pd.DataFrame, diagnosis: pd.DataFrame) -> plt.Figure:
    """Left: patients per diagnosis. Right: recordings per device, split by train/test."""
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.6))
    patients = diagnosis[diagnosis["patient"].isin(recordings["patient"])]
    order = patients["diagnosis"].value_counts().index
    sns.countplot(data=patients, y="diagnosis", order=order, ax=ax0, color="0.55")
    ax0.set(title=f"{len(patients)} patients by diagnosis", xlabel="patients", ylabel="")
    sns.countplot(data=recordings, x="device", hue="split", ax=ax1, hue_order=["train", "test"])
    ax1.set(title=f"{len(recordings)} recordings by device", ylabel="recordings")
    ax1.yaxis.set_major_locator(MaxNLocator(integer=True))
    sns.move_legend(ax1, "upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)  # off the bars
    fig.tight_layout()
    return fig


def format_table(recordings: pd.DataFrame) -> pd.DataFrame:
    """Recordings with audio counted per device, sample rate and PCM subtype (bit depth)."""
    audio = recordings[recordings["has_audio"]]
    table = audio.groupby(["device", "sample_rate", "subtype"]).size().rename("recordings")
    return table.reset_index().sort_values(["device", "sample_rate"], ignore_index=True)


def plot_durations(recordings: pd.DataFrame, cycles: pd.DataFrame) -> plt.Figure:
    """Histograms of recording durations (where audio is present) and of cycle durations.

    The dashed line is the fixed 8 s cycle length of DESIGN §3; the title says how many cycles
    are longer (cut to their last 8 s) and how many shorter (tiled).
    """
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.4))
    durations = recordings.loc[recordings["has_audio"], "duration"]
    ax0.hist(durations, bins=30, color="0.55")
    ax0.set(title=f"{len(durations)} recordings with audio", xlabel="duration (s)",
            ylabel="recordings")
    lengths = cycles["end"] - cycles["start"]
    ax1.hist(lengths, bins=np.linspace(0, max(lengths.max(), CYCLE_SECONDS + 1), 50), color="0.55")
    ax1.axvline(CYCLE_SECONDS, color="k", ls="--", label=f"{CYCLE_SECONDS:g} s")
    longer = float((lengths > CYCLE_SECONDS).mean())
    ax1.set(title=f"{len(lengths)} cycles: {longer:.1%} longer than 8 s",
            xlabel="cycle duration (s)", ylabel="cycles")
    ax1.legend()
    fig.tight_layout()
    return fig


def plot_class_balance(cycles: pd.DataFrame) -> plt.Figure:
    """Cycles per class in each split (train, test and, when present, val)."""
    named = _named(cycles)
    fig, ax = plt.subplots(figsize=(7, 3.4))
    sns.countplot(data=named, x="split", hue="class", palette=_PALETTE, ax=ax)
    for container in ax.containers:
        ax.bar_label(container, fontsize=8)
    ax.set(title="Cycles per class and split", ylabel="cycles")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def plot_cycle(wave: np.ndarray, sample_rate: int, title: str, ax_wave, ax_spec) -> None:
    """One cycle's waveform (top) and its log-power spectrogram up to 4 kHz (bottom)."""
    t = np.arange(len(wave)) / sample_rate
    ax_wave.plot(t, wave, lw=0.4, color="0.2")
    ax_wave.set(title=title, xlim=(0, t[-1]), yticks=[])
    ax_spec.specgram(wave, NFFT=1024, Fs=sample_rate, noverlap=768, cmap="magma")
    ax_spec.set(ylim=(0, 4000), xlabel="time (s)", ylabel="Hz")


def plot_examples(waves: dict[str, np.ndarray], sample_rate: int) -> plt.Figure:
    """One column per class: waveform above spectrogram, for cycles cut at ``sample_rate``."""
    fig, axes = plt.subplots(2, len(waves), figsize=(3.2 * len(waves), 4.6), squeeze=False,
                             gridspec_kw={"height_ratios": [1, 2]})
    for col, (title, wave) in enumerate(waves.items()):  # titles wrapped: columns are narrow
        plot_cycle(wave, sample_rate, textwrap.fill(title, 32), axes[0, col], axes[1, col])
        if col:
            axes[1, col].set_ylabel("")
    fig.tight_layout()
    return fig


def plot_leak(cycles: pd.DataFrame, patients: tuple[int, ...] = (156, 218)) -> plt.Figure:
    """Test cycles of ``patients`` per class: the original trained on all of them (DESIGN §7)."""
    named = _named(cycles[cycles["patient"].isin(patients)])
    fig, ax = plt.subplots(figsize=(7, 3.2))
    sns.countplot(data=named, x="patient", hue="split", ax=ax, hue_order=["train", "test"])
    for container in ax.containers:
        ax.bar_label(container, fontsize=8)
    ax.set(title="Cycles of the patients on both sides of the official split", ylabel="cycles")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: whole numbers only
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def classes_present(cycles: pd.DataFrame) -> list[str]:
    """The class names that have at least one cycle in ``cycles``, in label order."""
    return [name for label, name in enumerate(CLASS_NAMES) if (cycles["label"] == label).any()]


def random_cycle(
    cycles: pd.DataFrame, data_dir: Path, class_name: str, rng: np.random.Generator
) -> tuple[str, np.ndarray]:
    """A random cycle of ``class_name`` among ``cycles`` (rows whose audio is present).

    Returns its title (class and recording) and its samples at 22 kHz from start to end, as
    annotated (not yet fitted to 8 s). Raises ValueError for a class with no cycle.
    """
    if class_name not in CLASS_NAMES:
        raise ValueError(f"class_name must be one of {CLASS_NAMES}, got {class_name!r}")
    rows = cycles[cycles["label"] == CLASS_NAMES.index(class_name)]
    if rows.empty:
        raise ValueError(f"no {class_name} cycle among the {len(cycles)} given")
    row = rows.iloc[rng.integers(len(rows))]
    wave = load_recording(Path(data_dir) / f"{row.recording}.wav")
    cut = wave[int(row.start * SAMPLE_RATE) : int(row.end * SAMPLE_RATE)]
    return f"{class_name}: {row.recording}, {row.start:.2f}-{row.end:.2f} s", cut


def play_class(
    cycles: pd.DataFrame, data_dir: Path, rng: np.random.Generator, class_name: str
) -> tuple[str, bytes]:
    """The class player's callback: a random cycle of ``class_name`` as (title, WAV bytes)."""
    title, wave = random_cycle(cycles, data_dir, class_name, rng)
    return title, wav_bytes(wave, SAMPLE_RATE)


def class_player(cycles: pd.DataFrame, data_dir: Path, rng: np.random.Generator):
    """A drop-down of the classes present in ``cycles`` above a player of a random cycle."""
    classes = dropdown("class", classes_present(cycles))
    return audio_player(partial(play_class, cycles, data_dir, rng), {"class_name": classes})
