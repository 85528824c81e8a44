"""ICBHI challenge metrics with exact 4-class matching (DESIGN §7).

Classes are ``CLASS_NAMES`` = normal, crackle, wheeze, both (label = crackle + 2*wheeze).

- Sp (specificity) = normal cycles predicted normal / all normal cycles;
- Se (sensitivity) = abnormal cycles predicted as their EXACT class / all abnormal cycles
  (a "both" cycle predicted "crackle" is a miss, not half a hit);
- Score = (Sp + Se) / 2; accuracy = correct cycles / all cycles.

When a class is absent the matching ratio is undefined and is ``nan``, never a made-up 0 or 1:
no normal cycles gives Sp = nan, no abnormal cycles gives Se = nan, and Score is then nan too
(``nan`` propagates, so an average over folds or seeds shows the gap instead of hiding it).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from cyclelib.constants import CLASS_NAMES


def _labels(y: ArrayLike, name: str, n_classes: int) -> np.ndarray:
    """``y`` as a 1-D int64 array of labels in ``0..n_classes-1``, or a ValueError saying why."""
    a = np.asarray(y)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per cycle), got shape {a.shape}")
    if a.size and a.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer class labels, got dtype {a.dtype}")
    a = a.astype(np.int64)
    bad = (a < 0) | (a >= n_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}[{i}] = {a[i]} is not a class label: expected 0..{n_classes - 1}"
        )
    return a


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int = 4) -> np.ndarray:
    """(n_classes, n_classes) int64 counts: ``cm[t, p]`` = cycles of true class t predicted p.

    Rows are true classes, columns predicted ones (sklearn's convention). Raises ValueError for
    labels out of range, non-integer labels or unequal lengths.
    """
    t = _labels(y_true, "y_true", n_classes)
    p = _labels(y_pred, "y_pred", n_classes)
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} labels but y_pred has {len(p)}: one per cycle each")
    return np.bincount(t * n_classes + p, minlength=n_classes**2).reshape(n_classes, n_classes)


def _ratio(num: int, den: int) -> float:
    """num / den as a float, nan when den is 0 (the class is absent)."""
    return num / den if den else math.nan


def scores_from_confusion(cm: ArrayLike) -> dict[str, float]:
    """``{"sp", "se", "score", "acc"}`` from a confusion matrix (rows true; class 0 = normal).

    Se counts only the diagonal of the abnormal classes (exact-class matching, DESIGN §7).
    """
    m = np.asarray(cm)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(f"confusion matrix must be square (n, n) with n >= 2, got {m.shape}")
    if m.dtype.kind not in "iu" or (m < 0).any():
        raise ValueError("confusion matrix must hold non-negative integer counts")
    sp = _ratio(int(m[0, 0]), int(m[0].sum()))
    se = _ratio(int(np.trace(m[1:, 1:])), int(m[1:].sum()))
    acc = _ratio(int(np.trace(m)), int(m.sum()))
    return {"sp": sp, "se": se, "score": (sp + se) / 2, "acc": acc}


def icbhi_scores(y_true: ArrayLike, y_pred: ArrayLike) -> dict:
    """Sp, Se, Score, accuracy and the confusion matrix (nested lists) of 4-class predictions.

    ``y_true``/``y_pred``: (N,) integer labels in 0..3 (``CLASS_NAMES`` order).
    """
    cm = confusion_matrix(y_true, y_pred, n_classes=len(CLASS_NAMES))
    return {**scores_from_confusion(cm), "confusion": cm.tolist()}


HEADLINE = ("sp", "se", "score", "acc")  # the figures tables and reports quote


def headline(figures: dict, prefix: str = "") -> dict[str, float]:
    """The quoted figures of :func:`icbhi_scores` (Sp, Se, Score, accuracy), keys prefixed."""
    return {f"{prefix}{k}": figures[k] for k in HEADLINE}
