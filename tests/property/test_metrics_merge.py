"""Hypothesis: metrics from counts merged over K client splits equal the pooled metrics."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fediot.data.scaling import SufficientStats
from fediot.detect.metrics import BINARY_METRICS, BinaryCounts, confusion_matrix, pool_counts


@st.composite
def labelled_splits(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Binary truth/prediction of n rows and K-1 sorted cut points splitting them into K clients."""
    n = draw(st.integers(0, 200))
    y_true = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    y_pred = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    k = draw(st.integers(1, 8))
    cuts = sorted(draw(st.lists(st.integers(0, n), min_size=k - 1, max_size=k - 1)))
    return y_true, y_pred, [0, *cuts, n]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@settings(max_examples=200, deadline=None)
@given(labelled_splits())
def test_merged_binary_counts_finalise_to_pooled_metrics(
    case: tuple[np.ndarray, np.ndarray, list[int]],
) -> None:
    # Prepare
    y_true, y_pred, cuts = case

    # Execute
    parts = [
        BinaryCounts.from_predictions(y_true[a:b], y_pred[a:b])
        for a, b in zip(cuts[:-1], cuts[1:], strict=True)
    ]
    merged = pool_counts(parts)

    # Assert
    pooled = BinaryCounts.from_predictions(y_true, y_pred)
    assert merged == pooled
    for m in BINARY_METRICS:
        assert _same(getattr(merged, m), getattr(pooled, m)), m


@settings(max_examples=100, deadline=None)
@given(labelled_splits(), st.integers(2, 6))
def test_merged_confusion_matrices_equal_pooled(
    case: tuple[np.ndarray, np.ndarray, list[int]], num_classes: int
) -> None:
    # Prepare: multi-class labels from a generator seeded by the drawn size and class count.
    y_true_b, _, cuts = case
    rng = np.random.default_rng(len(y_true_b) * 7 + num_classes)
    y_true = rng.integers(0, num_classes, y_true_b.size)
    y_pred = rng.integers(0, num_classes, y_true_b.size)

    # Execute
    parts = [
        confusion_matrix(y_true[a:b], y_pred[a:b], num_classes)
        for a, b in zip(cuts[:-1], cuts[1:], strict=True)
    ]

    # Assert
    np.testing.assert_array_equal(np.sum(parts, axis=0), confusion_matrix(y_true, y_pred, num_classes))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=120),
    st.lists(st.integers(0, 120), max_size=6),
)
def test_merged_sufficient_stats_equal_pooled(values: list[float], raw_cuts: list[int]) -> None:
    # Prepare
    x = np.array(values, dtype=np.float64).reshape(-1, 1)
    cuts = [0, *sorted(min(c, x.shape[0]) for c in raw_cuts), x.shape[0]]

    # Execute
    parts = [SufficientStats.from_array(x[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    merged = parts[0]
    for p in parts[1:]:
        merged = merged + p

    # Assert
    scale = max(1.0, float(np.abs(x).max()))
    assert merged.count == x.shape[0]
    assert merged.min[0] == x.min()
    assert merged.max[0] == x.max()
    assert abs(merged.mean[0] - x.mean()) <= 1e-9 * scale
    assert abs(merged.var()[0] - x.var()) <= 1e-9 * scale**2
