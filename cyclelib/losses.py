"""CycleGuardian's multi-objective loss (DESIGN §6).

One training step runs the network twice on the same batch, sharing the group embeddings (the
encoder runs once):

- normal pass: logits (cross entropy), clustering loss KL_o, similarity constraint Sim_o, g_o;
- group-mix pass (:func:`group_mix` on the embeddings, then ``forward_from_embeddings``):
  KL_m, Sim_m, g_m;
- contrastive loss L_con between projections of g_m and g_o with soft targets.

Total = CE + w_kl·(KL_o + KL_m) + w_con·L_con + 0.2·(Sim_o + Sim_m), weights in :class:`LossConfig`.
The original used w_kl = 1 on KL summed over the batch and the groups and w_con = 0.5
(:meth:`LossConfig.original`); with those, the clustering and contrastive terms outweigh the
cross entropy by two orders of magnitude and the network never leaves the class prior (notebook
04 measures it). The defaults average KL per group and weigh L_con 0.1.
All randomness comes from an explicit ``torch.Generator``: a seeded generator gives the same loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cyclelib.gpu import encoder_autocast, to_device
from cyclelib.model import CycleGuardian, CycleGuardianOutput
from cyclelib.window_norm import running_stat_passes

_TINY = 1e-12  # floor under probabilities and norms, so an empty cluster never divides by zero
ORIGINAL_PASSES = 2  # full network passes per step in the original: normal and group-mix


@dataclass(frozen=True)
class LossConfig:
    """Weights of the loss terms (DESIGN §6). :meth:`original` gives the original's values."""

    ce_weight: float = 1.0  # cross entropy of the normal pass (the task itself)
    kl_weight: float = 1.0  # clustering loss, applied to KL_o + KL_m (original 1.0)
    contrastive_weight: float = 0.1  # group-mix contrastive loss L_con (original 0.5: the
    #   cross entropy learned much more slowly with it in our runs)
    similarity_weight: float = 0.2  # similarity constraint, applied to Sim_o + Sim_m (original)
    temperature: float = 0.06  # tau of the contrastive logits: sharp, as the original
    kl_reduction: Literal["sum", "batchmean", "mean"] = "mean"  # one group's KL on average
    #   (original "sum" over batch and groups: 45·B times larger, and growing with the batch)

    @classmethod
    def original(cls) -> LossConfig:
        """The original's weights: KL summed over batch and groups, L_con weighted 0.5."""
        return cls(contrastive_weight=0.5, kl_reduction="sum")


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """DEC target p (B, G, K) from soft assignments q (B, G, K) (DESIGN §5).

    p_ik ∝ q_ik² / f_k with f_k = Σ_i q_ik over the G groups of the same sample, normalised
    over k: it sharpens q and discounts clusters that take many groups.
    """
    weight = q.pow(2) / q.sum(-2, keepdim=True).clamp_min(_TINY)
    return weight / weight.sum(-1, keepdim=True)


def kl_divergence(
    p: torch.Tensor, q: torch.Tensor, reduction: Literal["sum", "batchmean", "mean"] = "sum"
) -> torch.Tensor:
    """KL(p‖q) = Σ p·log(p/q) over the last axis of (B, ..., K), then reduced over the rest.

    ``reduction="sum"`` (the original) sums over the batch and the groups, so the term grows
    with the batch size; ``"batchmean"`` divides that sum by B; ``"mean"`` by the number of
    distributions (B·G for q of shape (B, G, K)): one group's KL on average. 0 log 0 counts as 0.
    """
    kl = torch.xlogy(p, p) - p * torch.log(q.clamp_min(_TINY))
    divisor = {"sum": 1, "batchmean": p.shape[0], "mean": p.shape[:-1].numel()}[reduction]
    return kl.sum() / divisor


def clustering_loss(
    q: torch.Tensor, reduction: Literal["sum", "batchmean", "mean"] = "sum"
) -> torch.Tensor:
    """DEC clustering loss KL(p‖q) for q (B, G, K) (DESIGN §5-6); p is a constant target.

    As in DEC, the target p = :func:`target_distribution` (q) is detached: the gradient only
    pulls q (hence z and the centres) towards it. (The original also back-propagated through p.)
    """
    return kl_divergence(target_distribution(q).detach(), q, reduction)


def similarity_constraint(r: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
    """Sum over the K(K−1)/2 cluster pairs of the batch-mean ``|soft cosine|`` (DESIGN §5).

    For cluster vectors r (B, K, C) and the learnable S (C, C), the pair (a, b), a < b, scores
    ``|r_a · (r_b S)| / (‖r_a S‖ ‖r_b S‖)`` per sample, as the original; with S = I it is the
    absolute cosine similarity. Minimising it pushes the cluster vectors apart.
    """
    projected = r @ similarity  # (B, K, C): r_k S
    dots = torch.einsum("bkc,blc->bkl", r, projected)  # [b, a, b'] = r_a · (r_b' S)
    norms = projected.norm(dim=-1)
    cosine = dots / (norms.unsqueeze(-1) * norms.unsqueeze(-2)).clamp_min(_TINY)
    a, b = torch.triu_indices(r.shape[1], r.shape[1], offset=1, device=r.device)
    return cosine[:, a, b].abs().mean(0).sum()


class GroupMix(NamedTuple):
    """Result of :func:`group_mix`."""

    embeddings: torch.Tensor  # (B, G, E) mixed group embeddings
    perm: torch.Tensor  # (B,) int64: sample i took its mixed groups from sample perm[i]
    lam: float  # λ' = 1 − n/G, the share of its own groups each sample keeps
    positions: torch.Tensor  # (n,) int64 group positions replaced (the same for the batch)


def group_mix(
    embeddings: torch.Tensor, generator: torch.Generator, n_mixed: int | None = None
) -> GroupMix:
    """Mix group embeddings (B, G, E) across the batch (DESIGN §6).

    λ ~ Beta(1, 1) (uniform on [0, 1)); n = int(G·(1 − λ)) positions drawn once per batch; a
    random permutation π of the batch; sample i takes sample π(i)'s groups at those positions.
    ``n_mixed`` fixes n instead of drawing λ (n = 0 returns the embeddings unchanged).
    ``generator`` is a CPU ``torch.Generator``; the indices move to the embeddings' device.
    """
    batch, n_groups = embeddings.shape[:2]
    if n_mixed is None:
        lam = torch.rand((), generator=generator).item()
        n_mixed = int(n_groups * (1.0 - lam))
    if not 0 <= n_mixed <= n_groups:
        raise ValueError(f"n_mixed must lie in [0, {n_groups}], got {n_mixed}")
    positions = torch.randperm(n_groups, generator=generator)[:n_mixed]
    perm = torch.randperm(batch, generator=generator)
    positions, perm = to_device(positions, embeddings.device), to_device(perm, embeddings.device)
    replaced = torch.zeros(n_groups, dtype=torch.bool, device=embeddings.device)
    replaced[positions] = True
    mixed = torch.where(replaced[:, None], embeddings[perm], embeddings)
    return GroupMix(mixed, perm, 1.0 - n_mixed / n_groups, positions)


class Projector(nn.Module):
    """Contrastive projection head (DESIGN §6): linear, BatchNorm1d, ReLU, linear; (B, D) -> (B, D).

    Trained with the network here (the original never handed it to the optimiser).
    """

    def __init__(self, dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, dim), nn.BatchNorm1d(dim), nn.ReLU(inplace=True), nn.Linear(dim, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, D)."""
        return self.net(x)


def contrastive_loss(
    g_mixed: torch.Tensor,
    g_original: torch.Tensor,
    perm: torch.Tensor,
    lam: float,
    projector: nn.Module,
    tau: float = 0.06,
) -> torch.Tensor:
    """Soft-target contrastive loss between mixed and original global vectors (B, D) (DESIGN §6).

    u = normalise(projector(g_mixed)), v = normalise(projector(g_original)); logits = u·vᵀ/τ
    (B, B). Row i targets λ' on column i and 1 − λ' on column π(i) (they add when π(i) = i);
    the loss is −Σ_j target_ij · log_softmax(logits)_ij, averaged over the rows.
    """
    u = F.normalize(projector(g_mixed), dim=-1)
    v = F.normalize(projector(g_original), dim=-1)
    log_prob = F.log_softmax(u @ v.T / tau, dim=-1)
    batch = g_mixed.shape[0]
    target = lam * torch.eye(batch, device=log_prob.device, dtype=log_prob.dtype)
    target = target + (1.0 - lam) * F.one_hot(perm, batch).to(log_prob.dtype)
    return -(target * log_prob).sum(-1).mean()


def total_loss(terms: dict[str, torch.Tensor], config: LossConfig) -> torch.Tensor:
    """CE + w_kl·(KL_o + KL_m) + w_con·L_con + w_sim·(Sim_o + Sim_m) (DESIGN §6)."""
    return (
        config.ce_weight * terms["ce"]
        + config.kl_weight * (terms["kl_o"] + terms["kl_m"])
        + config.contrastive_weight * terms["con"]
        + config.similarity_weight * (terms["sim_o"] + terms["sim_m"])
    )


class CycleGuardianObjective(nn.Module):
    """The model, the projector and the weighted loss of one training step (DESIGN §6).

    Hand ``objective.parameters()`` (model + projector) to the optimiser. ``forward`` runs the
    encoder once, the normal pass and the group-mix pass from the shared embeddings, and returns
    the loss terms with their weighted total, and the normal pass's output (for accuracy).
    In training mode a batch needs at least 2 cycles (drop a last batch of 1).

    The original ran the whole network for each of the two passes, so its encoder's BatchNorms
    took the running-statistics updates of the same batch twice: with per-window statistics
    (``ModelConfig.window_stats``) the encoder's single call counts as both passes
    (:func:`cyclelib.window_norm.running_stat_passes`, DESIGN §5).
    """

    def __init__(self, model: CycleGuardian, config: LossConfig | None = None) -> None:
        super().__init__()
        self.model = model
        self.config = config or LossConfig()
        self.projector = Projector(model.config.cluster_dim)
        self.encoder_dtype: torch.dtype | None = None  # bfloat16: the encoder under autocast
        #   (:mod:`cyclelib.gpu`, CUDA only); None: float32

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> tuple[dict[str, torch.Tensor], CycleGuardianOutput]:
        """x (B, 3, 84, 688) or (B, 45, 3, 84, 20), labels (B,) int64 ->
        ({"total", "ce", "kl_o", "kl_m", "sim_o", "sim_m", "con"} scalar tensors, output)."""
        if self.training and x.shape[0] < 2:
            raise ValueError(
                f"a training batch needs at least 2 cycles (the projector's BatchNorm and the "
                f"group-mix partners), got x of shape {tuple(x.shape)}"
            )
        reduction, similarity = self.config.kl_reduction, self.model.similarity
        with running_stat_passes(self.model, ORIGINAL_PASSES), \
                encoder_autocast(self.encoder_dtype, x.device):
            embeddings = self.model.embed(x)
        if self.encoder_dtype is not None:  # the rest in float32
            embeddings = embeddings.float()
        out = self.model.forward_from_embeddings(embeddings)
        mix = group_mix(out.embeddings, generator)
        mixed = self.model.forward_from_embeddings(mix.embeddings)
        terms = {
            "ce": F.cross_entropy(out.logits, labels),
            "kl_o": clustering_loss(out.q, reduction),
            "kl_m": clustering_loss(mixed.q, reduction),
            "sim_o": similarity_constraint(out.r, similarity),
            "sim_m": similarity_constraint(mixed.r, similarity),
            "con": contrastive_loss(
                mixed.g, out.g, mix.perm, mix.lam, self.projector, self.config.temperature
            ),
        }
        return {"total": total_loss(terms, self.config), **terms}, out
