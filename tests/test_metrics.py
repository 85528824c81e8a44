"""ICBHI metrics (DESIGN §7): a hand-worked example, exact-class matching, sklearn, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from cyclelib.metrics import confusion_matrix, icbhi_scores, scores_from_confusion

# 17 cycles, worked out by hand. Labels: 0 normal, 1 crackle, 2 wheeze, 3 both.
#   5 normal  -> predicted 0 0 0 1 2   (3 right)
#   5 crackle -> predicted 1 1 1 0 3   (3 right)
#   3 wheeze  -> predicted 2 2 0       (2 right)
#   4 both    -> predicted 3 3 1 2     (2 right: crackle or wheeze alone is a miss)
Y_TRUE = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3]
Y_PRED = [0, 0, 0, 1, 2, 1, 1, 1, 0, 3, 2, 2, 0, 3, 3, 1, 2]
EXPECTED_CM = [
    [3, 1, 1, 0],
    [1, 3, 0, 1],
    [1, 0, 2, 0],
    [0, 1, 1, 2],
]


def test_confusion_matrix_by_hand() -> None:
    cm = confusion_matrix(Y_TRUE, Y_PRED)
    assert cm.dtype == np.int64
    assert cm.tolist() == EXPECTED_CM


def test_scores_by_hand() -> None:
    s = icbhi_scores(Y_TRUE, Y_PRED)
    sp, se = 3 / 5, (3 + 2 + 2) / 12  # Se = 7/12: exact-class hits over 12 abnormal cycles
    assert s["sp"] == pytest.approx(sp)
    assert s["se"] == pytest.approx(7 / 12)
    assert s["score"] == pytest.approx((sp + se) / 2)  # 71/120
    assert s["score"] == pytest.approx(71 / 120)
    assert s["acc"] == pytest.approx(10 / 17)
    assert s["confusion"] == EXPECTED_CM
    json.dumps(s)  # plain floats and lists: ready for a results file
    from_cm = scores_from_confusion(np.array(EXPECTED_CM))
    assert from_cm == {k: s[k] for k in ("sp", "se", "score", "acc")}


def test_exact_class_matching() -> None:
    # Every "both" cycle called "crackle", every crackle called "both": no abnormal hit at all.
    s = icbhi_scores([0, 0, 3, 3, 1], [0, 0, 1, 1, 3])
    assert s["sp"] == 1.0
    assert s["se"] == 0.0
    assert s["score"] == 0.5
    # An abnormal cycle called normal or another abnormal class costs the same.
    assert icbhi_scores([2, 2], [0, 1])["se"] == 0.0
    assert icbhi_scores([2, 2], [2, 1])["se"] == 0.5


def test_perfect_predictions() -> None:
    y = [0, 1, 2, 3, 3, 0]
    s = icbhi_scores(y, y)
    assert (s["sp"], s["se"], s["score"], s["acc"]) == (1.0, 1.0, 1.0, 1.0)
    assert s["confusion"] == np.diag([2, 1, 1, 2]).tolist()


@pytest.mark.parametrize("seed", range(5))
def test_confusion_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    y_true = rng.integers(0, 4, n)
    y_pred = rng.integers(0, 3, n)  # class 3 never predicted: its column must stay there, zero
    expected = sk_confusion_matrix(y_true, y_pred, labels=[0, 1, 2, 3])
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred), expected)
    s = scores_from_confusion(expected)
    assert s["acc"] == pytest.approx(np.mean(y_true == y_pred))
    normal = y_true == 0
    if normal.any():
        assert s["sp"] == pytest.approx(np.mean(y_pred[normal] == 0))
    if (~normal).any():
        assert s["se"] == pytest.approx(np.mean(y_pred[~normal] == y_true[~normal]))


def test_other_class_counts() -> None:
    assert confusion_matrix([0, 1, 1], [1, 1, 0], n_classes=2).tolist() == [[0, 1], [1, 1]]


def test_absent_class_gives_nan() -> None:
    no_normal = icbhi_scores([1, 2, 3], [1, 2, 0])
    assert math.isnan(no_normal["sp"]) and math.isnan(no_normal["score"])
    assert no_normal["se"] == pytest.approx(2 / 3)
    no_abnormal = icbhi_scores([0, 0], [0, 1])
    assert math.isnan(no_abnormal["se"]) and no_abnormal["sp"] == 0.5
    empty = icbhi_scores([], [])
    assert empty["confusion"] == [[0] * 4] * 4 and math.isnan(empty["acc"])


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [
        ([0, 1, 2], [0, 1], "y_true has 3 labels but y_pred has 2"),
        ([0, 4], [0, 1], r"y_true\[1\] = 4 is not a class label: expected 0..3"),
        ([0, 1], [-1, 1], r"y_pred\[0\] = -1"),
        ([0.0, 1.5], [0, 1], "integer class labels"),
        ([[0, 1]], [[0, 1]], "must be 1-D"),
    ],
)
def test_bad_labels(y_true: list, y_pred: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        icbhi_scores(y_true, y_pred)


def test_bad_confusion_matrix() -> None:
    with pytest.raises(ValueError, match="square"):
        scores_from_confusion(np.zeros((4, 3), dtype=int))
    with pytest.raises(ValueError, match="non-negative integer"):
        scores_from_confusion(-np.eye(4, dtype=int))
