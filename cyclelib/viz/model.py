"""Tables and pictures of the network for notebook 03 (DESIGN §5).

:func:`parameter_table` and :func:`config_table` size the parts and the configurations;
:func:`plot_cluster_timeline` shows, above a cycle's spectrogram, which of the K clusters each of
its 45 groups falls in.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from cyclelib.constants import MAP_NAMES
from cyclelib.model import CycleGuardian, ModelConfig, count_flops, parameter_counts


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
        extent=(0, frames * frame, 0, bins),
    )
    first = plt.Rectangle((0, 0), features.group_size * frame, bins, fill=False, ec="c", lw=2)
    bottom.add_patch(first)
    bottom.text(0.02, bins * 0.9, " group 0", color="c", fontsize=8)
    bottom.set(xlabel="time (s)", ylabel=f"{MAP_NAMES[channel]} bin")
    fig.tight_layout()
    return fig
