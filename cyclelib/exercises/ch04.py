"""The checks of notebook 04's exercises (docs/teaching.md).

- 4.1 one training step by hand: the learner's step against :func:`cyclelib.train.training_step`
  on the same weights, batches and generator (two steps: losses and updated parameters);
- 4.2 Sp, Se and Score from a confusion matrix: against
  :func:`cyclelib.metrics.scores_from_confusion` on several matrices (DESIGN §7);
- 4.3 the best of N noisy test evaluations is biased upwards: the learner's simulated bias
  against the exact expectation of the maximum of N binomial measurements.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from types import MethodType
from typing import Any

import numpy as np
import torch

from cyclelib.exercises._core import Wrong, call, exercise
from cyclelib.losses import CycleGuardianObjective, LossConfig
from cyclelib.metrics import scores_from_confusion
from cyclelib.model import CycleGuardian, ModelConfig
from cyclelib.train import training_step

# --- 4.1 -------------------------------------------------------------------------------------

# weights unlike the defaults, so a step that hard-codes them (or leaves one out) is caught
CHECK_LOSS = LossConfig(ce_weight=0.8, kl_weight=0.5, contrastive_weight=0.3,
                        similarity_weight=0.7, temperature=0.1)


def _guarded(objective: CycleGuardianObjective) -> CycleGuardianObjective:
    """``objective`` whose ``forward`` refuses to run: the learner writes the passes."""

    def refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise Wrong("you called objective(...) (or training_step), which runs cyclelib's step: "
                    "write the two passes and the weighted loss yourself from objective.model, "
                    "objective.projector and objective.config")

    objective.forward = MethodType(refuse, objective)
    return objective


def _parameters_differ(a: torch.nn.Module, b: list[torch.Tensor]) -> str | None:
    """The name of the first parameter of ``a`` that differs from ``b`` (None: all close)."""
    for (name, p), q in zip(a.named_parameters(), b, strict=True):
        if not torch.allclose(p, q, rtol=1e-4, atol=1e-6):
            return name
    return None


def _snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def step_setup(seed: int = 0, batch: int = 4) -> tuple[CycleGuardianObjective, list]:
    """A small objective (weights from ``seed``, loss weights CHECK_LOSS) and two batches
    ((batch, 3, 84, 688) spectrograms, (batch,) labels covering the 4 classes)."""
    torch.manual_seed(seed)
    objective = CycleGuardianObjective(CycleGuardian(ModelConfig.small()), CHECK_LOSS)
    data = torch.Generator().manual_seed(seed + 1)
    batches = [(torch.randn(batch, 3, 84, 688, generator=data), torch.arange(batch) % 4)
                for _ in range(2)]
    return objective, batches


def _weighted(terms: dict[str, torch.Tensor], c: LossConfig) -> dict[str, float]:
    """Totals a step typically gets wrong: unweighted, default weights, normal pass only."""
    default = LossConfig()
    return {
        "you added the terms without their weights: take them from objective.config "
        "(ce_weight, kl_weight, contrastive_weight, similarity_weight)":
            float(sum(v for k, v in terms.items() if k != "total")),
        "you used the default weights: take them from objective.config (the check uses others)":
            float(default.ce_weight * terms["ce"] + default.kl_weight * (terms["kl_o"] + terms[
                "kl_m"]) + default.contrastive_weight * terms["con"]
                + default.similarity_weight * (terms["sim_o"] + terms["sim_m"])),
        "your loss has only the normal pass's terms: add KL_m, Sim_m and the contrastive loss "
        "of the group-mix pass":
            float(c.ce_weight * terms["ce"] + c.kl_weight * terms["kl_o"]
                  + c.similarity_weight * terms["sim_o"]),
    }


@exercise("4.1", "one training step by hand")
def _check_step(my_step: Callable) -> str:
    objective, batches = step_setup()
    reference = copy.deepcopy(objective)
    learner = _guarded(objective)
    before = _snapshot(reference)
    opt_learner = torch.optim.Adam(learner.parameters(), lr=1e-3)
    opt_reference = torch.optim.Adam(reference.parameters(), lr=1e-3)
    gen_learner, gen_reference = (torch.Generator().manual_seed(5) for _ in range(2))
    for step, (x, labels) in enumerate(batches, start=1):
        loss = call(my_step, learner, opt_learner, x.clone(), labels.clone(), gen_learner)
        terms, _ = training_step(reference, opt_reference, x, labels, gen_reference)
        terms = {name: value.detach() for name, value in terms.items()}
        try:
            got = float(loss.detach() if hasattr(loss, "detach") else loss)
        except (TypeError, ValueError):
            raise Wrong(f"my_step should return the total loss (a scalar tensor), got "
                        f"{type(loss).__name__}") from None
        want = float(terms["total"])
        if not math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-6):
            for hint, value in _weighted(terms, CHECK_LOSS).items():
                if math.isclose(got, value, rel_tol=1e-5, abs_tol=1e-6):
                    raise Wrong(f"step {step}: {hint}")
            raise Wrong(f"step {step}: total loss {got:.6f}, the trainer's is {want:.6f}: run "
                        "model.embed once, forward_from_embeddings on the embeddings, group_mix "
                        "of out.embeddings with the generator given, forward_from_embeddings on "
                        "the mixed ones, then the six terms")
        if gen_learner.get_state().ne(gen_reference.get_state()).any():
            raise Wrong(f"step {step}: the loss is right but the generator was used differently "
                        "(draw only group_mix from it, once)")
        if _parameters_differ(learner, before) is None:
            raise Wrong(f"step {step}: the parameters did not change: call backward() on the "
                        "total loss, then optimizer.step()")
        name = _parameters_differ(learner, _snapshot(reference))
        if name is not None:
            hint = ("call optimizer.zero_grad() before backward(): the gradients of step 1 "
                    "were added to step 2's") if step == 2 else "back-propagate the total loss"
            raise Wrong(f"step {step}: the loss is right but the updated parameter {name} "
                        f"differs from the trainer's: {hint}")
        before = _snapshot(learner)
    return "two steps give the trainer's losses and updated weights"


# --- 4.2 -------------------------------------------------------------------------------------

HAND_MATRIX = np.array([[50, 5, 3, 2],   # true normal: 50 of 60 predicted normal
                        [4, 20, 1, 5],   # true crackle: 20 exact
                        [6, 2, 10, 2],   # true wheeze: 10 exact
                        [1, 3, 2, 4]])   # true both: 4 exact  -> Se = 34/60
HAND_SCORES = {"sp": 50 / 60, "se": 34 / 60, "score": (50 / 60 + 34 / 60) / 2}


def confusion_matrices(seed: int = 4) -> list[np.ndarray]:
    """The check's 4x4 matrices: the hand example, random ones, one without 'both' cycles, one
    without normal cycles and one without abnormal cycles (rows = true class)."""
    rng = np.random.default_rng(seed)
    random = [rng.integers(0, 40, (4, 4)) for _ in range(3)]
    no_both, no_normal, no_abnormal = (rng.integers(0, 40, (4, 4)) for _ in range(3))
    no_both[3] = 0
    no_normal[0] = 0
    no_abnormal[1:] = 0
    return [HAND_MATRIX, *random, no_both, no_normal, no_abnormal]


def _same(got: float, want: float) -> bool:
    return (math.isnan(got) and math.isnan(want)) or math.isclose(got, want, rel_tol=1e-9,
                                                                  abs_tol=1e-12)


@exercise("4.2", "Sp, Se and Score from a confusion matrix")
def _check_scores(icbhi_by_hand: Callable) -> str:
    for cm in confusion_matrices():
        want = scores_from_confusion(cm)
        got = call(icbhi_by_hand, cm.copy())
        if not isinstance(got, dict) or not {"sp", "se", "score"} <= set(got):
            raise Wrong("return a dict with the keys 'sp', 'se' and 'score'")
        try:
            got = {k: float(got[k]) for k in ("sp", "se", "score")}
        except (TypeError, ValueError):
            raise Wrong("'sp', 'se' and 'score' should be numbers") from None
        if all(_same(got[k], want[k]) for k in got):
            continue
        rows = cm.tolist()
        if any(math.isnan(want[k]) and not math.isnan(got[k]) for k in got):
            raise Wrong(f"for {rows} (a class with no cycles) expected {want['sp']:.3g} / "
                        f"{want['se']:.3g} / {want['score']:.3g}: a ratio over no cycles is "
                        "undefined, return nan (not 0 or 1), and Score is then nan too")
        transposed = scores_from_confusion(cm.T)
        if all(_same(got[k], transposed[k]) for k in got):
            raise Wrong("you read the matrix by columns: rows are the true classes "
                        "(cm[t, p] = cycles of true class t predicted p)")
        lenient = cm[1:, 1:].sum() / cm[1:].sum() if cm[1:].sum() else math.nan
        if _same(got["se"], lenient):
            raise Wrong("your Se counts an abnormal cycle predicted as another abnormal class as "
                        "a hit: ICBHI Se counts only the exact class (the diagonal)")
        wrong = [k for k in ("sp", "se", "score") if not _same(got[k], want[k])]
        raise Wrong(f"for {rows}: {', '.join(wrong)} should be "
                    f"{', '.join(f'{want[k]:.4f}' for k in wrong)}, got "
                    f"{', '.join(f'{got[k]:.4f}' for k in wrong)}")
    return "Sp, Se and Score match cyclelib.metrics on 7 matrices, empty classes included"


# --- 4.3 -------------------------------------------------------------------------------------

BIAS_CASE = {"s": 0.7, "n_test": 100, "trials": 4000}  # the check's simulation
BIAS_NS = (1, 5, 30)  # numbers of checkpoints compared
BIAS_TOL = 0.003  # the simulated bias's standard error is about 0.0005 with 4000 trials


def expected_best_bias(s: float, n_test: int, n_checkpoints: int) -> float:
    """E[max of N measured accuracies] − s, exactly: each of the N checkpoints is right on each
    of the n test cycles with probability s, so it measures Binomial(n, s)/n."""
    k = np.arange(n_test + 1)
    log_pmf = np.array([math.lgamma(n_test + 1) - math.lgamma(i + 1) - math.lgamma(n_test - i + 1)
                        for i in k]) + k * math.log(s) + (n_test - k) * math.log1p(-s)
    cdf = np.clip(np.cumsum(np.exp(log_pmf)), 0.0, 1.0)
    below = np.concatenate([[0.0], cdf[:-1]])
    p_max = cdf**n_checkpoints - below**n_checkpoints  # P(max = k)
    return float((k / n_test * p_max).sum() - s)


@exercise("4.3", "the best of N noisy test evaluations is biased upwards")
def _check_bias(best_of_n_bias: Callable) -> str:
    c = BIAS_CASE
    got, want = {}, {}
    for n in BIAS_NS:
        value = call(best_of_n_bias, c["s"], c["n_test"], n, c["trials"],
                     np.random.default_rng(2024 + n))
        try:
            got[n] = float(value)
        except (TypeError, ValueError):
            raise Wrong(f"return the bias as a number, got {type(value).__name__}") from None
        want[n] = round(expected_best_bias(c["s"], c["n_test"], n), 9) + 0.0  # no -0
    if all(abs(got[n] - want[n] - c["s"]) < BIAS_TOL for n in BIAS_NS):
        raise Wrong("you returned the mean of the best measurement: the bias is that minus s")
    if all(abs(got[n]) < BIAS_TOL for n in BIAS_NS):
        raise Wrong("your bias is about 0 for every N: take the max over the N checkpoints of "
                    "each trial (not the mean), then average it over the trials")
    if not got[BIAS_NS[0]] < got[BIAS_NS[1]] < got[BIAS_NS[2]]:
        values = ", ".join(f"N={n}: {got[n]:.4f}" for n in BIAS_NS)
        raise Wrong(f"the bias should grow with N (more checkpoints to pick from); got {values}")
    for n in BIAS_NS:
        if abs(got[n] - want[n]) > BIAS_TOL:
            raise Wrong(f"s={c['s']}, n_test={c['n_test']}, N={n}: expected a bias of "
                        f"{want[n]:.4f} (exact), got {got[n]:.4f}: each measurement is "
                        "Binomial(n_test, s) / n_test, one per checkpoint")
    return ("bias " + ", ".join(f"N={n}: {got[n]:+.3f}" for n in BIAS_NS)
            + f" (exact {', '.join(f'{want[n]:+.3f}' for n in BIAS_NS)})")
