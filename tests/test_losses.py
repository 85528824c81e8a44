"""CycleGuardian's losses (DESIGN §6) against hand-computed references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cyclelib.losses import (
    CycleGuardianObjective,
    LossConfig,
    Projector,
    clustering_loss,
    contrastive_loss,
    group_mix,
    kl_divergence,
    similarity_constraint,
    target_distribution,
)
from cyclelib.model import CycleGuardian, ModelConfig

torch.set_num_threads(2)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- clustering loss ------------------------------------------------------------------------


def test_target_distribution_by_hand() -> None:
    # sample 0: 2 groups; cluster totals over the groups f = (1.2, 0.8)
    q = torch.tensor([[[0.8, 0.2], [0.4, 0.6]], [[0.5, 0.5], [0.1, 0.9]]])
    w = [[0.64 / 1.2, 0.04 / 0.8], [0.16 / 1.2, 0.36 / 0.8]]
    expected = torch.tensor([[a / (a + b), b / (a + b)] for a, b in w])
    p = target_distribution(q)
    torch.testing.assert_close(p[0], expected)  # sample 1 does not enter sample 0's target
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 2))


def test_kl_is_zero_for_equal_distributions_and_positive_otherwise() -> None:
    p = torch.tensor([[[0.5, 0.5]]])
    assert float(kl_divergence(p, p)) == 0.0
    q = torch.tensor([[[0.8, 0.2]]])
    hand = 0.5 * math.log(0.5 / 0.8) + 0.5 * math.log(0.5 / 0.2)
    assert float(kl_divergence(p, q)) == pytest.approx(hand, rel=1e-6)
    assert hand > 0
    one_hot = torch.tensor([[[1.0, 0.0]]])  # 0 log 0 = 0, no NaN
    assert float(kl_divergence(one_hot, one_hot)) == 0.0


def test_kl_reduction_sums_or_averages_over_the_batch() -> None:
    q = torch.softmax(torch.randn(3, 45, 4, generator=generator(0)), -1)
    p = target_distribution(q)
    per_sample = [float(kl_divergence(p[i : i + 1], q[i : i + 1])) for i in range(3)]
    assert float(kl_divergence(p, q)) == pytest.approx(sum(per_sample), rel=1e-5)
    assert float(kl_divergence(p, q, "batchmean")) == pytest.approx(sum(per_sample) / 3, rel=1e-5)
    per_group = sum(per_sample) / (3 * 45)
    assert float(kl_divergence(p, q, "mean")) == pytest.approx(per_group, rel=1e-5)


def test_clustering_loss_vanishes_at_its_fixed_points_only() -> None:
    uniform = torch.full((2, 45, 4), 0.25)  # p = q when every cluster takes the same share
    assert float(clustering_loss(uniform)) == pytest.approx(0.0, abs=1e-6)
    q = torch.softmax(torch.randn(2, 45, 4, generator=generator(1)), -1)
    assert float(clustering_loss(q)) > 1e-3


def test_clustering_target_is_a_constant() -> None:
    # p is detached (DEC): d/dq of -Σ p log q is -p/q, nothing flows through p
    q = torch.softmax(torch.randn(1, 45, 4, generator=generator(2)), -1).requires_grad_()
    clustering_loss(q).backward()
    p = target_distribution(q.detach())
    torch.testing.assert_close(q.grad, -p / q.detach())


# --- similarity constraint ------------------------------------------------------------------


def test_similarity_constraint_by_hand() -> None:
    r = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    # S = I: |cos| of the pairs (0,1), (0,2), (1,2) = 0, 1/√2, 1/√2
    assert float(similarity_constraint(r, torch.eye(2))) == pytest.approx(math.sqrt(2), rel=1e-6)
    # S = diag(2, 1): r_b S = (2, 0), (0, 1), (2, 1); pair score |r_a · r_b S| / (‖r_a S‖ ‖r_b S‖)
    # (0,1): 0; (0,2): 2 / (2·√5); (1,2): 1 / (1·√5)
    s = torch.diag(torch.tensor([2.0, 1.0]))
    assert float(similarity_constraint(r, s)) == pytest.approx(2 / math.sqrt(5), rel=1e-6)
    # the batch mean of absolute values: a second sample with opposite signs scores the same
    both = torch.cat([r, r * torch.tensor([[[-1.0], [1.0], [1.0]]])])
    assert float(similarity_constraint(both, torch.eye(2))) == pytest.approx(math.sqrt(2))


def test_similarity_constraint_is_finite_for_an_all_zero_cluster() -> None:
    r = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [3.0, -1.0], [0.5, 0.5]]], requires_grad=True)
    s = torch.eye(2, requires_grad=True)
    loss = similarity_constraint(r, s)
    loss.backward()
    assert math.isfinite(loss.item())
    assert bool(torch.isfinite(r.grad).all() and torch.isfinite(s.grad).all())


# --- group mix ------------------------------------------------------------------------------


def test_group_mix_with_no_position_is_the_identity() -> None:
    e = torch.randn(5, 45, 8, generator=generator(3))
    mix = group_mix(e, generator(0), n_mixed=0)
    assert mix.lam == 1.0 and mix.positions.numel() == 0
    torch.testing.assert_close(mix.embeddings, e, rtol=0, atol=0)


def test_group_mix_moves_exactly_the_chosen_positions() -> None:
    e = torch.randn(6, 45, 8, generator=generator(4))
    mix = group_mix(e, generator(7))
    n = mix.positions.numel()
    assert mix.lam == pytest.approx(1 - n / 45)
    assert sorted(mix.perm.tolist()) == list(range(6))
    assert len(set(mix.positions.tolist())) == n
    kept = [g for g in range(45) if g not in set(mix.positions.tolist())]
    for i in range(6):
        source = int(mix.perm[i])
        torch.testing.assert_close(mix.embeddings[i, mix.positions], e[source, mix.positions])
        torch.testing.assert_close(mix.embeddings[i, kept], e[i, kept], rtol=0, atol=0)
    again = group_mix(e, generator(7))  # same seed, same draw
    assert again.lam == mix.lam and torch.equal(again.perm, mix.perm)
    assert torch.equal(again.positions, mix.positions)


def test_group_mix_ratio_is_uniform() -> None:
    # λ ~ Beta(1, 1) = U(0, 1), n = int(45 (1 - λ)) is uniform on 0..44: mean λ' = 1 - 22/45
    e = torch.zeros(2, 45, 1)
    gen = generator(5)
    lams = [group_mix(e, gen).lam for _ in range(2000)]
    assert min(lams) >= 1 / 45 - 1e-9 and max(lams) <= 1.0
    assert sum(lams) / len(lams) == pytest.approx(1 - 22 / 45, abs=0.02)
    with pytest.raises(ValueError, match="n_mixed"):
        group_mix(e, gen, n_mixed=46)


# --- contrastive loss -----------------------------------------------------------------------


def test_contrastive_loss_by_hand() -> None:
    g_original = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    g_mixed = torch.tensor([[3.0, 4.0], [2.0, 0.0], [0.0, 5.0]])  # unit: (.6,.8), (1,0), (0,1)
    # logits = u·vᵀ / 0.5:
    # row 0: (0.6, 0.8, 1.0) / 0.5 = (1.2, 1.6, 2.0)
    # row 1: (1.0, 0.0, 0.6) / 0.5 = (2.0, 0.0, 1.2)
    # row 2: (0.0, 1.0, 0.8) / 0.5 = (0.0, 2.0, 1.6)
    lse0 = math.log(math.exp(1.2) + math.exp(1.6) + math.exp(2.0))
    lse1 = math.log(math.exp(2.0) + math.exp(0.0) + math.exp(1.2))
    lse2 = math.log(math.exp(0.0) + math.exp(2.0) + math.exp(1.6))
    # π = (1, 2, 0), λ' = 0.6: row i targets 0.6 on column i and 0.4 on column π(i)
    hand = (
        (lse0 - (0.6 * 1.2 + 0.4 * 1.6))
        + (lse1 - (0.6 * 0.0 + 0.4 * 1.2))
        + (lse2 - (0.6 * 1.6 + 0.4 * 0.0))
    ) / 3
    loss = contrastive_loss(g_mixed, g_original, torch.tensor([1, 2, 0]), 0.6, nn.Identity(), 0.5)
    assert float(loss) == pytest.approx(hand, rel=1e-6)
    # π = (0, 2, 1), λ' = 0.75: row 0 is its own partner, the two targets add up to 1
    hand = (
        (lse0 - 1.2) + (lse1 - (0.75 * 0.0 + 0.25 * 1.2)) + (lse2 - (0.75 * 1.6 + 0.25 * 2.0))
    ) / 3
    loss = contrastive_loss(g_mixed, g_original, torch.tensor([0, 2, 1]), 0.75, nn.Identity(), 0.5)
    assert float(loss) == pytest.approx(hand, rel=1e-6)


def test_projector_shape() -> None:
    assert tuple(Projector(128)(torch.randn(4, 128)).shape) == (4, 128)


# --- the objective --------------------------------------------------------------------------


def objective(seed: int = 0, config: LossConfig | None = None) -> CycleGuardianObjective:
    torch.manual_seed(seed)
    return CycleGuardianObjective(CycleGuardian(ModelConfig.small()), config)


def batch(size: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(size, 3, 84, 688, generator=generator(11))
    return x, torch.arange(size) % 4


def occupy_every_cluster(model: CycleGuardian, x: torch.Tensor) -> None:
    """Put the centres on the latents of 4 groups: each cluster then holds at least one group."""
    with torch.no_grad():
        model.clustering.centres.copy_(model(x).z[0, [0, 15, 30, 44]])
        assigned = model(x).q.argmax(-1)
    assert set(assigned.flatten().tolist()) == {0, 1, 2, 3}


def test_total_is_the_weighted_sum_of_the_terms() -> None:
    config = LossConfig(
        ce_weight=2.0, kl_weight=0.5, contrastive_weight=0.25, similarity_weight=3.0
    )
    x, y = batch()
    terms, out = objective(config=config)(x, y, generator(0))
    assert set(terms) == {"total", "ce", "kl_o", "kl_m", "sim_o", "sim_m", "con"}
    assert all(t.ndim == 0 for t in terms.values())
    t = {k: float(v.detach()) for k, v in terms.items()}
    hand = (
        2 * t["ce"]
        + 0.5 * (t["kl_o"] + t["kl_m"])
        + 0.25 * t["con"]
        + 3 * (t["sim_o"] + t["sim_m"])
    )
    assert t["total"] == pytest.approx(hand, rel=1e-6)
    assert t["ce"] == pytest.approx(float(F.cross_entropy(out.logits.detach(), y)), rel=1e-6)


def test_a_training_batch_of_one_is_refused() -> None:
    x, y = batch(1)
    with pytest.raises(ValueError, match="at least 2 cycles"):
        objective()(x, y, generator(0))


def test_the_encoder_runs_once_per_step() -> None:
    obj = objective()
    calls = []
    obj.model.encoder.register_forward_hook(lambda *_: calls.append(1))
    obj(*batch(), generator(0))
    assert len(calls) == 1


def test_every_trainable_parameter_gets_a_gradient() -> None:
    obj = objective()
    x, y = batch()
    occupy_every_cluster(obj.model, x)
    terms, _ = obj(x, y, generator(0))
    terms["total"].backward()
    # A bias right before a BatchNorm has no effect on the output (the normalisation removes
    # any constant shift): its gradient is zero up to rounding. The original has them; the
    # faithful parameter count includes them.
    before_batchnorm = {f"model.encoder.convs.{i}.bias" for i in (0, 3, 6, 9, 13)} | {
        "model.encoder.dense.1.bias",
        "projector.net.0.bias",
    }
    named = dict(obj.named_parameters())
    assert before_batchnorm <= set(named)
    for name, p in named.items():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        size = float(p.grad.abs().max())
        if name in before_batchnorm:
            weight = named[name.replace("bias", "weight")].grad.abs().max()
            assert size < 1e-3 * float(weight), name
        else:
            assert size > 0, f"{name} has no gradient"
    for name in ("model.clustering.centres", "model.similarity", "projector.net.3.weight"):
        assert float(named[name].grad.abs().max()) > 0


def test_same_seed_same_loss() -> None:
    x, y = batch()
    first = objective(seed=3)(x, y, generator(9))[0]
    second = objective(seed=3)(x, y, generator(9))[0]
    for key in first:
        assert torch.equal(first[key], second[key]), key
    other = objective(seed=3)(x, y, generator(10))[0]
    assert not torch.equal(first["con"], other["con"])


def test_an_empty_cluster_gives_no_nan() -> None:
    obj = objective()
    x, y = batch()
    occupy_every_cluster(obj.model, x)
    with torch.no_grad():
        obj.model.clustering.centres[3] = 1e3  # far from every latent: cluster 3 stays empty
    terms, out = obj(x, y, generator(0))
    assert not bool((out.q.argmax(-1) == 3).any())
    terms["total"].backward()
    assert all(math.isfinite(float(v.detach())) for v in terms.values())
    assert bool(torch.isfinite(out.r).all())
    for name, p in obj.named_parameters():
        assert bool(torch.isfinite(p.grad).all()), name
