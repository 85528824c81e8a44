"""Notebook 04's exercise checks: the reference answers pass, typical mistakes get their hint,
the stubs are "not done yet" (cyclelib.exercises.ch04)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cyclelib.exercises import NOT_DONE, check
from cyclelib.exercises.ch04 import (
    HAND_MATRIX,
    HAND_SCORES,
    confusion_matrices,
    expected_best_bias,
    step_setup,
)
from cyclelib.losses import clustering_loss, contrastive_loss, group_mix, similarity_constraint
from cyclelib.metrics import scores_from_confusion
from cyclelib.train import training_step


def verdict(capsys, number: str, answer) -> tuple[bool, str]:
    passed = check(number, answer)
    line = capsys.readouterr().out
    assert line.count("\n") == 1, line  # exactly one line
    return passed, line


# --- 4.1 one training step by hand -----------------------------------------------------------

def step(objective, optimizer, x, labels, generator, *, zero_grad=True, weighted=True,
         mixed_terms=True, update=True):
    """The reference step of notebook 04 (with switches for the typical mistakes)."""
    model, c = objective.model, objective.config
    out = model.forward_from_embeddings(model.embed(x))
    mix = group_mix(out.embeddings, generator)
    mixed = model.forward_from_embeddings(mix.embeddings)
    ce = F.cross_entropy(out.logits, labels)
    kl_o, kl_m = clustering_loss(out.q, c.kl_reduction), clustering_loss(mixed.q, c.kl_reduction)
    sim_o = similarity_constraint(out.r, model.similarity)
    sim_m = similarity_constraint(mixed.r, model.similarity)
    con = contrastive_loss(mixed.g, out.g, mix.perm, mix.lam, objective.projector, c.temperature)
    if not mixed_terms:
        total = c.ce_weight * ce + c.kl_weight * kl_o + c.similarity_weight * sim_o
    elif weighted:
        total = (c.ce_weight * ce + c.kl_weight * (kl_o + kl_m) + c.contrastive_weight * con
                 + c.similarity_weight * (sim_o + sim_m))
    else:
        total = ce + kl_o + kl_m + con + sim_o + sim_m
    if zero_grad:
        optimizer.zero_grad()
    if update:
        total.backward()
        optimizer.step()
    return total


@pytest.mark.slow  # a few small training steps: seconds on a loaded 2-core CPU
def test_4_1_reference_passes(capsys) -> None:
    passed, line = verdict(capsys, "4.1", step)
    assert passed and line.startswith("✓ Exercise 4.1"), line


@pytest.mark.slow  # a few small training steps: seconds on a loaded 2-core CPU
def test_4_1_the_check_reproduces_the_trainers_step() -> None:
    """The check's reference is the trainer's step: the reference answer gives its loss."""
    objective, batches = step_setup()
    twin = step_setup()[0]
    x, labels = batches[0]
    terms, _ = training_step(objective, torch.optim.Adam(objective.parameters()), x, labels,
                             torch.Generator().manual_seed(1))
    total = step(twin, torch.optim.Adam(twin.parameters()), x, labels,
                 torch.Generator().manual_seed(1))
    assert math.isclose(float(total.detach()), float(terms["total"].detach()), rel_tol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(("mistake", "hint"), [
    ({"zero_grad": False}, "zero_grad"),
    ({"weighted": False}, "without their weights"),
    ({"mixed_terms": False}, "only the normal pass"),
    ({"update": False}, "did not change"),
])
def test_4_1_typical_mistakes_get_their_hint(capsys, mistake, hint) -> None:
    passed, line = verdict(capsys, "4.1", lambda *args: step(*args, **mistake))
    assert not passed and hint in line, line


@pytest.mark.slow  # a few small training steps: seconds on a loaded 2-core CPU
def test_4_1_calling_the_objective_is_refused(capsys) -> None:
    def packaged(objective, optimizer, x, labels, generator):
        return training_step(objective, optimizer, x, labels, generator)[0]["total"]

    passed, line = verdict(capsys, "4.1", packaged)
    assert not passed and "write the two passes" in line, line


def test_4_1_stub_is_not_done(capsys) -> None:
    def my_step(objective, optimizer, x, labels, generator):
        ...

    passed, line = verdict(capsys, "4.1", my_step)
    assert not passed and NOT_DONE in line


# --- 4.2 Sp, Se and Score from a confusion matrix --------------------------------------------

def icbhi_by_hand(cm):
    normal, abnormal = cm[0].sum(), cm[1:].sum()
    sp = cm[0, 0] / normal if normal else math.nan
    se = (cm[1, 1] + cm[2, 2] + cm[3, 3]) / abnormal if abnormal else math.nan
    return {"sp": sp, "se": se, "score": (sp + se) / 2}


def test_4_2_hand_example_and_reference(capsys) -> None:
    for k, v in HAND_SCORES.items():  # the example computed by hand in the exercise
        assert math.isclose(scores_from_confusion(HAND_MATRIX)[k], v)
        assert math.isclose(icbhi_by_hand(HAND_MATRIX)[k], v)
    assert any(np.isnan(scores_from_confusion(m)["sp"]) for m in confusion_matrices())
    assert any(np.isnan(scores_from_confusion(m)["se"]) for m in confusion_matrices())
    passed, line = verdict(capsys, "4.2", icbhi_by_hand)
    assert passed and line.startswith("✓ Exercise 4.2"), line


def lenient(cm):
    return {**icbhi_by_hand(cm), "se": cm[1:, 1:].sum() / cm[1:].sum(),
            "score": (icbhi_by_hand(cm)["sp"] + cm[1:, 1:].sum() / cm[1:].sum()) / 2}


def zero_for_empty(cm):
    normal, abnormal = cm[0].sum(), cm[1:].sum()
    sp = cm[0, 0] / normal if normal else 0.0
    se = np.trace(cm[1:, 1:]) / abnormal if abnormal else 0.0
    return {"sp": sp, "se": se, "score": (sp + se) / 2}


@pytest.mark.parametrize(("answer", "hint"), [
    (lambda cm: icbhi_by_hand(cm.T), "by columns"),
    (lenient, "only the exact class"),
    (zero_for_empty, "return nan"),
    (lambda cm: {**icbhi_by_hand(cm), "score": np.trace(cm) / cm.sum()}, "score should be"),
])
def test_4_2_typical_mistakes_get_their_hint(capsys, answer, hint) -> None:
    passed, line = verdict(capsys, "4.2", answer)
    assert not passed and hint in line, line


def test_4_2_stub_is_not_done(capsys) -> None:
    passed, line = verdict(capsys, "4.2", lambda cm: None)
    assert not passed and NOT_DONE in line
    passed, line = verdict(capsys, "4.2", ...)
    assert not passed and NOT_DONE in line


# --- 4.3 the best of N noisy test evaluations is biased upwards ------------------------------

def best_of_n_bias(s, n_test, n_checkpoints, trials, rng):
    measured = rng.binomial(n_test, s, size=(trials, n_checkpoints)) / n_test
    return measured.max(axis=1).mean() - s


def test_4_3_exact_bias() -> None:
    assert abs(expected_best_bias(0.7, 100, 1)) < 1e-9  # one checkpoint: no bias
    rng = np.random.default_rng(0)  # the exact value agrees with a large simulation
    assert abs(best_of_n_bias(0.7, 100, 5, 200_000, rng) - expected_best_bias(0.7, 100, 5)) < 5e-4


def test_4_3_reference_passes(capsys) -> None:
    passed, line = verdict(capsys, "4.3", best_of_n_bias)
    assert passed and line.startswith("✓ Exercise 4.3"), line


@pytest.mark.parametrize(("answer", "hint"), [
    (lambda s, n, k, t, rng: best_of_n_bias(s, n, k, t, rng) + s, "minus s"),
    (lambda s, n, k, t, rng: (rng.binomial(n, s, (t, k)) / n).mean(1).mean() - s, "not the mean"),
    (lambda s, n, k, t, rng: best_of_n_bias(s, n, k + 1, t, rng), "expected a bias"),
    (lambda s, n, k, t, rng: -best_of_n_bias(s, n, k, t, rng), "grow with N"),
])
def test_4_3_typical_mistakes_get_their_hint(capsys, answer, hint) -> None:
    passed, line = verdict(capsys, "4.3", answer)
    assert not passed and hint in line, line


def test_4_3_stub_is_not_done(capsys) -> None:
    passed, line = verdict(capsys, "4.3", lambda s, n_test, n_checkpoints, trials, rng: None)
    assert not passed and NOT_DONE in line
