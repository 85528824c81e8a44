"""Pictures of training and evaluation for notebook 04 (DESIGN §6-7).

Each function takes what :func:`cyclelib.train.train` and :func:`cyclelib.evaluation.predict` return
(the per-epoch history, labels, global vectors, cluster assignments) and returns its figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from cyclelib.constants import CLASS_NAMES
from cyclelib.train import LOSS_TERMS

_TERM_NAMES = {
    "total": "total", "ce": "cross entropy", "kl_o": "clustering KL (normal pass)",
    "kl_m": "clustering KL (mix pass)", "sim_o": "similarity (normal pass)",
    "sim_m": "similarity (mix pass)", "con": "contrastive",
}  # fmt: skip


def plot_history(history: list[dict], selected_epoch: int | None = None) -> plt.Figure:
    """Every loss term (one panel each), the learning rate, and validation Sp/Se/Score per epoch.

    The dotted vertical line marks ``selected_epoch`` (the checkpoint kept; epochs count from 1).
    """
    frame = pd.DataFrame(history)
    epochs = frame["epoch"]
    fig, axes = plt.subplots(3, 3, figsize=(12, 8.5), sharex=True)
    for ax, term in zip(axes.flat, LOSS_TERMS, strict=False):
        ax.plot(epochs, frame[f"loss_{term}"], "o-", color="0.3", ms=3)
        ax.set(title=_TERM_NAMES[term])
    lr_ax, eval_ax = axes.flat[len(LOSS_TERMS)], axes.flat[len(LOSS_TERMS) + 1]
    lr_ax.plot(epochs, frame["lr"], "o-", color="0.3", ms=3)
    lr_ax.set(title="learning rate", yscale="log")
    prefix = "val" if "val_score" in frame else "test"
    for key, style in (("sp", ":"), ("se", "--"), ("score", "-")):
        eval_ax.plot(epochs, frame[f"{prefix}_{key}"], style, marker="o", ms=3,
                     label=key.capitalize())
    eval_ax.set(title=f"{prefix} Sp / Se / Score", ylim=(0, 1.3), yticks=np.linspace(0, 1, 6))
    eval_ax.legend(loc="upper center", ncol=3, fontsize=8)  # above the curves, not on them
    for ax in axes.flat:
        if selected_epoch is not None:
            ax.axvline(selected_epoch, color="tab:red", ls=":", lw=1)
    for ax in axes[-1]:
        ax.set(xlabel="epoch", xlim=(0.5, epochs.max() + 0.5))  # whole epochs, even for one
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    fig.tight_layout()
    return fig


def plot_confusion(confusion: list | np.ndarray, title: str = "test") -> plt.Figure:
    """Seaborn heatmap of a 4x4 confusion matrix (rows true, columns predicted), with counts and
    each row's share in %."""
    cm = np.asarray(confusion)
    shares = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    annotations = np.array([[f"{n}\n{100 * s:.0f}%" for n, s in zip(row, srow, strict=True)]
                            for row, srow in zip(cm, shares, strict=True)])
    fig, ax = plt.subplots(figsize=(4.8, 4))
    sns.heatmap(shares, annot=annotations, fmt="", cmap="Blues", vmin=0, vmax=1, cbar=False,
                xticklabels=CLASS_NAMES, yticklabels=CLASS_NAMES, ax=ax)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig


def plot_tsne(g: np.ndarray, labels: np.ndarray, seed: int = 0) -> plt.Figure:
    """t-SNE (sklearn) of the global vectors g (N, 128), coloured by true class."""
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (len(g) - 1) // 3)))
    points = TSNE(perplexity=perplexity, random_state=seed, init="pca").fit_transform(g)
    names = pd.Categorical([CLASS_NAMES[i] for i in labels], categories=CLASS_NAMES)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    sns.scatterplot(x=points[:, 0], y=points[:, 1], hue=names, palette="colorblind", s=18,
                    ax=ax)
    ax.set(title="t-SNE of the global vectors g", xticks=[], yticks=[])
    fig.tight_layout()
    return fig


def cluster_usage(clusters: np.ndarray, labels: np.ndarray, n_clusters: int = 4) -> pd.DataFrame:
    """Share of a class's groups (rows) assigned to each cluster (columns); rows sum to 1.

    ``clusters`` (N, 45) is the hard cluster of each group of each cycle.
    """
    rows = {}
    for label, name in enumerate(CLASS_NAMES):
        mine = clusters[labels == label].ravel()
        counts = np.bincount(mine, minlength=n_clusters)
        rows[name] = counts / max(counts.sum(), 1)
    return pd.DataFrame.from_dict(rows, orient="index",
                                  columns=[f"cluster {k}" for k in range(n_clusters)])


def plot_cluster_usage(clusters: np.ndarray, labels: np.ndarray) -> plt.Figure:
    """Stacked bars: how each class's 45 groups per cycle spread over the 4 clusters."""
    table = cluster_usage(clusters, labels)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    table.plot.barh(stacked=True, ax=ax, colormap="viridis", width=0.7)
    ax.set(xlabel="share of groups", xlim=(0, 1), title="cluster use per class")
    ax.invert_yaxis()
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1), frameon=False)
    fig.tight_layout()
    return fig


SELF_PAIR = "rk·rk"  # the row of similarity_check that pairs each cluster vector with itself


def similarity_check(model, spectrograms) -> tuple[pd.DataFrame, float]:
    """For each pair of cluster vectors (r_a, r_b) of a batch, the plain ``|cosine|`` and the score
    the similarity constraint gives it through the learned S (DESIGN §5), batch means; a last
    row ``SELF_PAIR`` pairs each cluster vector with itself (identical vectors: plain 1, by
    construction), averaged over the clusters; and how much S scales a vector on average
    (‖r S‖ / ‖r‖; 1 for the identity it starts from)."""
    import torch

    from cyclelib.losses import similarity_constraint

    model.eval()
    with torch.no_grad():
        r = model(spectrograms).r  # (B, K, C)
        similarity = model.similarity
        rows = {}
        k = r.shape[1]
        for a in range(k):
            for b in range(a + 1, k):
                pair = r[:, [a, b]]
                plain = torch.nn.functional.cosine_similarity(pair[:, 0], pair[:, 1], dim=-1)
                rows[f"r{a}·r{b}"] = {"plain |cosine|": float(plain.abs().mean()),
                                      "learned S score": float(similarity_constraint(pair,
                                                                                     similarity))}
        itself = [r[:, [a, a]] for a in range(k)]
        rows[SELF_PAIR] = {
            "plain |cosine|": float(np.mean([torch.nn.functional.cosine_similarity(
                p[:, 0], p[:, 1], dim=-1).abs().mean() for p in itself])),
            "learned S score": float(np.mean([similarity_constraint(p, similarity)
                                              for p in itself]))}
        scale = float(((r @ similarity).norm(dim=-1) / r.norm(dim=-1).clamp_min(1e-12)).mean())
    return pd.DataFrame(rows).T, scale


def plot_similarity(history: list[dict], table: pd.DataFrame) -> plt.Figure:
    """Left: the logged similarity term per epoch. Right: per cluster pair, the plain ``|cosine|``
    of the cluster vectors next to the learned S score (:func:`similarity_check`)."""
    frame = pd.DataFrame(history)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.4))
    left.plot(frame["epoch"], frame["loss_sim_o"], "o-", color="0.3", ms=3)
    left.set(title="similarity term Sim_o (training loss)", xlabel="epoch",
             ylabel="sum over the 6 pairs", xlim=(0.5, frame["epoch"].max() + 0.5))
    left.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    table.plot.bar(ax=right, color=["tab:gray", "tab:purple"], rot=0)
    right.set(title="selected checkpoint: per pair", ylabel="batch mean", ylim=(0, 1.05))
    right.legend(loc="upper left", bbox_to_anchor=(1, 1), frameon=False)
    fig.tight_layout()
    return fig
