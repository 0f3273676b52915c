"""Classification and detection metrics against sklearn.metrics, and their merge/finalise contract."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from fediot.detect.metrics import (
    BINARY_METRICS,
    BinaryCounts,
    classification_report,
    confusion_matrix,
    counts_by_group,
    macro_metrics,
    pool_counts,
)

NAMES5 = ["normal", "dos", "probe", "r2l", "u2r"]


def _random_labels(seed: int, n: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, num_classes, n)
    # Predictions agree with the truth 60 % of the time, so every metric is away from 0 and 1.
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, num_classes, n))
    return y_true, y_pred


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matrix_matches_sklearn(seed: int) -> None:
    # Prepare
    y_true, y_pred = _random_labels(seed, 500, 5)

    # Execute
    cm = confusion_matrix(y_true, y_pred, 5)

    # Assert
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y_true, y_pred, labels=list(range(5))))


def test_confusion_matrices_of_clients_sum_to_pooled() -> None:
    # Prepare
    y_true, y_pred = _random_labels(3, 600, 4)
    cuts = [0, 100, 350, 600]

    # Execute
    parts = [confusion_matrix(y_true[a:b], y_pred[a:b], 4) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]

    # Assert
    np.testing.assert_array_equal(sum(parts[1:], parts[0]), confusion_matrix(y_true, y_pred, 4))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_report_matches_sklearn_on_random_data(seed: int) -> None:
    # Prepare
    y_true, y_pred = _random_labels(seed, 400, 5)

    # Execute
    report = classification_report(confusion_matrix(y_true, y_pred, 5), NAMES5)

    # Assert
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)
    assert report["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"), abs=1e-12)
    assert report["balanced_accuracy"] == pytest.approx(
        skm.balanced_accuracy_score(y_true, y_pred), abs=1e-12
    )
    recall = skm.recall_score(y_true, y_pred, average=None, labels=list(range(5)))
    precision = skm.precision_score(y_true, y_pred, average=None, labels=list(range(5)))
    f1 = skm.f1_score(y_true, y_pred, average=None, labels=list(range(5)))
    for i, name in enumerate(NAMES5):
        assert report["per_class"][name]["recall"] == pytest.approx(recall[i], abs=1e-12)
        assert report["per_class"][name]["precision"] == pytest.approx(precision[i], abs=1e-12)
        assert report["per_class"][name]["f1"] == pytest.approx(f1[i], abs=1e-12)
        assert report["per_class"][name]["support"] == int(np.sum(y_true == i))
    assert report["num_rows"] == 400


def test_absent_classes_are_left_out_of_macro_f1_like_sklearn_default_labels() -> None:
    # Prepare: class 3 ("r2l") and 4 ("u2r") never occur; class 2 is predicted but never true.
    y_true = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    y_pred = np.array([0, 0, 1, 1, 1, 2, 0, 1])

    # Execute
    report = classification_report(confusion_matrix(y_true, y_pred, 5), NAMES5)

    # Assert
    assert report["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"), abs=1e-12)
    explicit = skm.f1_score(y_true, y_pred, average="macro", labels=np.union1d(y_true, y_pred))
    assert report["macro_f1"] == pytest.approx(explicit, abs=1e-12)
    with pytest.warns(UserWarning, match="classes not in y_true"):
        reference_balanced = skm.balanced_accuracy_score(y_true, y_pred)
    assert report["balanced_accuracy"] == pytest.approx(reference_balanced, abs=1e-12)
    assert report["per_class"]["probe"]["f1"] == 0.0
    assert math.isnan(report["per_class"]["probe"]["recall"])
    assert math.isnan(report["per_class"]["u2r"]["f1"])
    assert report["per_class"]["u2r"]["support"] == 0


def test_class_never_predicted_has_nan_precision_and_zero_f1() -> None:
    # Prepare
    y_true = np.array([0, 1, 1, 2])
    y_pred = np.array([0, 0, 0, 2])

    # Execute
    report = classification_report(confusion_matrix(y_true, y_pred, 3), ["a", "b", "c"])

    # Assert
    precision = skm.precision_score(y_true, y_pred, average=None, zero_division=np.nan)
    assert math.isnan(precision[1])
    assert math.isnan(report["per_class"]["b"]["precision"])
    assert report["per_class"]["b"]["f1"] == 0.0
    assert report["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"), abs=1e-12)


def test_single_class_perfect_and_empty_inputs() -> None:
    # Prepare
    cm_one = confusion_matrix([1, 1, 1], [1, 1, 1], 3)
    cm_empty = confusion_matrix([], [], 3)

    # Execute
    one = classification_report(cm_one, ["a", "b", "c"])
    empty = classification_report(cm_empty, ["a", "b", "c"])

    # Assert
    assert (one["accuracy"], one["macro_f1"], one["balanced_accuracy"]) == (1.0, 1.0, 1.0)
    assert math.isnan(empty["accuracy"])
    assert math.isnan(empty["macro_f1"])
    assert empty["num_rows"] == 0


def test_confusion_matrix_and_report_reject_bad_input() -> None:
    # Prepare / Execute / Assert
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="differ in shape"):
        confusion_matrix([0, 1], [0], 3)
    with pytest.raises(ValueError, match="square"):
        classification_report(np.zeros((3, 3), dtype=np.int64), ["a", "b"])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_binary_counts_match_sklearn(seed: int) -> None:
    # Prepare
    rng = np.random.default_rng(seed)
    y_true = rng.random(300) < 0.7
    y_pred = np.where(rng.random(300) < 0.8, y_true, ~y_true)

    # Execute
    c = BinaryCounts.from_predictions(y_true, y_pred)

    # Assert
    assert c.total == 300
    assert c.tpr == pytest.approx(skm.recall_score(y_true, y_pred), abs=1e-12)
    assert c.tnr == pytest.approx(skm.recall_score(y_true, y_pred, pos_label=0), abs=1e-12)
    assert c.fpr == pytest.approx(1 - skm.recall_score(y_true, y_pred, pos_label=0), abs=1e-12)
    assert c.precision == pytest.approx(skm.precision_score(y_true, y_pred), abs=1e-12)
    assert c.f1 == pytest.approx(skm.f1_score(y_true, y_pred), abs=1e-12)
    assert c.balanced_accuracy == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred), abs=1e-12)
    assert c.accuracy == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)


def test_zero_denominators_are_nan_and_json_writes_null() -> None:
    # Prepare: a client with attacks only (no benign rows) and no alerts.
    c = BinaryCounts.from_predictions([1, 1, 1], [0, 0, 0])

    # Execute
    plain = c.as_dict()
    safe = c.as_dict(nan_as_none=True)

    # Assert
    assert c.tpr == 0.0
    assert c.f1 == 0.0
    assert math.isnan(c.fpr)
    assert math.isnan(c.precision)
    assert math.isnan(c.balanced_accuracy)
    assert isinstance(plain["fpr"], float)
    assert math.isnan(plain["fpr"])
    assert safe["fpr"] is None
    assert safe["tpr"] == 0.0
    assert json.loads(json.dumps(safe, allow_nan=False))["precision"] is None


def test_binary_counts_add_and_validate() -> None:
    # Prepare
    a, b = BinaryCounts(1, 2, 3, 4), BinaryCounts(10, 20, 30, 40)

    # Execute
    s = a + b

    # Assert
    assert s == BinaryCounts(11, 22, 33, 44)
    assert a + BinaryCounts.zero() == a
    with pytest.raises(ValueError, match=">= 0"):
        BinaryCounts(-1, 0, 0, 0)
    with pytest.raises(ValueError, match="shape"):
        BinaryCounts.from_predictions([1, 0], [1])


def test_counts_by_group_gives_per_attack_tpr() -> None:
    # Prepare
    y_true = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    y_pred = np.array([0, 1, 0, 1, 1, 0, 1, 1])
    groups = np.array(["benign"] * 3 + ["scan"] * 3 + ["udp"] * 2)

    # Execute
    by = counts_by_group(y_true, y_pred, groups)

    # Assert
    assert set(by) == {"benign", "scan", "udp"}
    assert by["scan"].tpr == pytest.approx(2 / 3)
    assert by["udp"].tpr == 1.0
    assert by["benign"].fpr == pytest.approx(1 / 3)
    assert pool_counts(by.values()) == BinaryCounts.from_predictions(y_true, y_pred)


def test_macro_is_nan_aware_unweighted_mean_and_pooled_sums_counts() -> None:
    # Prepare: client b has no benign rows, so its FPR is NaN and is skipped by the macro mean.
    a = BinaryCounts(tp=90, fp=5, tn=95, fn=10)
    b = BinaryCounts(tp=1, fp=0, tn=0, fn=3)

    # Execute
    macro = macro_metrics([a, b])
    pooled = pool_counts([a, b]).metrics()

    # Assert
    assert macro["tpr"] == pytest.approx((0.9 + 0.25) / 2)
    assert macro["fpr"] == pytest.approx(0.05)
    assert pooled["tpr"] == pytest.approx(91 / 104)
    assert set(macro) == set(BINARY_METRICS) == set(pooled)
    assert math.isnan(macro_metrics([b])["fpr"])
    assert math.isnan(macro_metrics([])["tpr"])
