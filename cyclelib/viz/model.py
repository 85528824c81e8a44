"""Tables and pictures of the network for notebook 03 (DESIGN §5).

:func:`parameter_table` and :func:`config_table` size the parts and the configurations;
:func:`plot_cluster_timeline` shows, above a cycle's spectrogram, which of the K clusters each of
its 45 groups falls in; :func:`timeline_explorer` is the chapter's widget, a slider over cycles.
"""

from __future__ import annotations

from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from cyclelib.constants import CLASS_NAMES, MAP_NAMES
from cyclelib.model import CycleGuardian, ModelConfig
from cyclelib.model_size import count_flops, parameter_counts
from cyclelib.viz.spectrogram import frequency_ticks, row_frequencies
from cyclelib.viz.widgets import figure_explorer, slider


def parameter_table(model: CycleGuardian) -> pd.DataFrame:
    """Parameters per part of ``model`` with their share, and a total row."""
    counts = parameter_counts(model)
    total = sum(counts.values())
    table = pd.DataFrame({"part": [*counts, "total"], "parameters": [*counts.values(), total]})
    table["share %"] = (100 * table["parameters"] / total).round(1)
    return table


def config_table(configs: dict[str, ModelConfig]) -> pd.DataFrame:
    """Size and cost of each configuration: parameters, fp32 MB, GFLOP per cycle, widths."""
    rows = []
    for name, config in configs.items():
        model = CycleGuardian(config)
        params = sum(p.numel() for p in model.parameters())
        x = torch.zeros(1, config.in_channels, config.features.n_bins, config.features.n_frames)
        rows.append(
            {
                "config": name,
                "parameters": params,
                "fp32 MB": round(params * 4 / 1e6, 2),
                "GFLOP / cycle": round(count_flops(model, x) / 1e9, 3),
                "encoder channels": "-".join(map(str, config.channels)),
                "dense": config.dense_dim,
                "embedding": config.embed_dim,
                "z, r_k, g": f"{config.latent_dim}, {config.cluster_dim}, {config.cluster_dim}",
            }
        )
    return pd.DataFrame(rows).set_index("config")


def plot_cluster_timeline(
    spec: torch.Tensor | np.ndarray,
    q: torch.Tensor | np.ndarray,
    config: ModelConfig | None = None,
    title: str = "",
    channel: int = 2,
) -> plt.Figure:
    """One cycle: soft assignments q (45, K) of its groups over time, above its spectrogram.

    Top: q as a heat map (a row per cluster, a column per group at the group's place in time;
    colour scale from this cycle's smallest to largest q), with a white dot on the hard
    assignment argmax_k q_ik that the cluster fusion uses. Bottom: map ``channel`` of ``spec``
    (3, 84, 688), with the 20 frames of the first group outlined.
    """
    features = (config or ModelConfig()).features
    frame = features.hop_length / features.sample_rate  # seconds per spectrogram frame
    spec, q = np.asarray(spec), np.asarray(q)
    n_groups, n_clusters = q.shape
    seconds = features.group_stride * frame
    centres = (np.arange(n_groups) * features.group_stride + features.group_size / 2) * frame
    hard = q.argmax(1)

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(11, 5), sharex=True, gridspec_kw={"height_ratios": [1, 2.2]}
    )
    extent = (centres[0] - seconds / 2, centres[-1] + seconds / 2, -0.5, n_clusters - 0.5)
    image = top.imshow(q.T, origin="lower", aspect="auto", cmap="viridis", extent=extent)
    top.scatter(centres, hard, c="w", s=14, edgecolors="k", linewidths=0.5)
    fig.colorbar(image, cax=top.inset_axes((1.01, 0.0, 0.015, 1.0)), label="q")
    counts = np.bincount(hard, minlength=n_clusters).tolist()
    top.set(ylabel="cluster", yticks=range(n_clusters))
    top.set_title(f"{title}  groups per cluster (dots): {counts}".strip(), fontsize=10)

    bins, frames = spec.shape[-2:]
    bottom.imshow(
        spec[channel],
        origin="lower",
        aspect="auto",
        cmap="magma",
        extent=(0, frames * frame, -0.5, bins - 0.5),
    )
    first = plt.Rectangle((0, -0.5), features.group_size * frame, bins, fill=False, ec="c", lw=2)
    bottom.add_patch(first)
    bottom.annotate("group 0 (20 frames)", xy=(features.group_size * frame, bins * 0.8),
                    xytext=(8, 0), textcoords="offset points", va="center", fontsize=9,
                    bbox={"boxstyle": "round", "fc": "white", "ec": "c"},
                    arrowprops={"arrowstyle": "-", "color": "c"})
    bottom.set_yticks(*frequency_ticks(row_frequencies(features)[MAP_NAMES[channel]]))
    bottom.set(xlabel="time (s)", ylabel=f"{MAP_NAMES[channel]}, Hz")
    fig.tight_layout()
    return fig


def cluster_timeline(
    spec: torch.Tensor, q: torch.Tensor, labels: torch.Tensor, config: ModelConfig, cycle: int
) -> plt.Figure:
    """The timeline slider's callback: :func:`plot_cluster_timeline` of cycle ``cycle`` of the
    batch (spec (B, 3, 84, 688), q (B, 45, K), labels (B,)), titled with its class."""
    name = CLASS_NAMES[int(labels[cycle])]
    return plot_cluster_timeline(spec[cycle], q[cycle], config, title=f"cycle {cycle} ({name})")


def timeline_explorer(
    spec: torch.Tensor, q: torch.Tensor, labels: torch.Tensor, config: ModelConfig
):
    """A slider over the cycles of the batch above the cluster timeline of the chosen one."""
    cycles = slider("cycle", range(len(spec)), 0)
    return figure_explorer(partial(cluster_timeline, spec, q, labels, config), {"cycle": cycles})


def plot_window_statistics(
    embeddings: tuple[torch.Tensor, torch.Tensor], q: tuple[torch.Tensor, torch.Tensor]
) -> plt.Figure:
    """One batch through the same weights in training mode: BatchNorm statistics pooled over
    all B·45 groups (first of each pair) versus per group window, as the original (second).

    ``embeddings`` two (B, 45, E) tensors, ``q`` two (B, 45, K) soft assignments (DESIGN §5).
    Left: how far each group's embedding moves, ‖e_window − e_pooled‖ / ‖e_pooled‖ (a row per
    cycle, a column per group). Right: the hard cluster of each group, pooled and per-window
    rows of each cycle one above the other.
    """
    (e_pooled, e_window), (q_pooled, q_window) = embeddings, q
    change = ((e_window - e_pooled).norm(dim=-1) / e_pooled.norm(dim=-1)).numpy()
    hard = torch.stack([q_pooled.argmax(-1), q_window.argmax(-1)], 1).flatten(0, 1).numpy()
    batch, n_groups = change.shape
    n_clusters = q_pooled.shape[-1]
    agree = int((q_pooled.argmax(-1) == q_window.argmax(-1)).sum())

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.5 + 0.55 * batch + 1.5))
    image = left.imshow(change, aspect="auto", cmap="magma", interpolation="nearest")
    fig.colorbar(image, ax=left, label="relative change of the embedding")
    left.set(xlabel="group", ylabel="cycle", yticks=range(batch))
    left.set_title("embeddings: per-window vs pooled statistics", fontsize=10)
    cmap = plt.get_cmap("tab10", n_clusters)
    right.imshow(hard, aspect="auto", cmap=cmap, vmin=-0.5, vmax=n_clusters - 0.5,
                 interpolation="nearest")
    rows = [f"{i} {kind}" for i in range(batch) for kind in ("pooled", "per window")]
    right.set(xlabel="group", yticks=range(2 * batch), yticklabels=rows)
    right.set_title(f"hard clusters: {agree} of {batch * n_groups} groups agree", fontsize=10)
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(k)) for k in range(n_clusters)]
    right.legend(handles, [f"cluster {k}" for k in range(n_clusters)], fontsize=8,
                 loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig
