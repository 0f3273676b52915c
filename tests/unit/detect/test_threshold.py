"""Thresholds: N-BaIoT's mean + k*std and the quantile rule, local, pooled and federated."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fediot.data.scaling import SufficientStats
from fediot.detect.threshold import (
    ErrorHistogram,
    ThresholdRule,
    error_summary,
    fit_threshold,
    local_thresholds,
    threshold_from_errors,
    threshold_from_summaries,
    threshold_quantile,
)
from fediot.errors import DataError


def _skewed_errors(seed: int, sizes: tuple[int, ...] = (50, 400, 3, 1200, 97)) -> list[np.ndarray]:
    """Per-client reconstruction-MSE-like errors: lognormal, clients with different scales and sizes."""
    rng = np.random.default_rng(seed)
    return [rng.lognormal(np.log(1e-3) + 0.5 * i, 1.5, n) for i, n in enumerate(sizes)]


def test_mean_std_uses_the_sample_std() -> None:
    # Prepare
    errors = np.random.default_rng(0).lognormal(-5.0, 1.0, 99)

    # Execute
    tr = threshold_from_errors(errors, k=1.0)

    # Assert
    assert tr == pytest.approx(errors.mean() + errors.std(ddof=1), rel=1e-12)
    assert threshold_from_errors(errors, k=2.5) == pytest.approx(errors.mean() + 2.5 * errors.std(ddof=1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_federated_mean_std_equals_pooled(seed: int) -> None:
    # Prepare
    rule = ThresholdRule(kind="mean_std", k=1.0)
    clients = _skewed_errors(seed)

    # Execute
    federated = threshold_from_summaries([error_summary(e, rule) for e in clients], rule)
    pooled = fit_threshold(np.concatenate(clients), rule)

    # Assert
    assert federated == pytest.approx(pooled, rel=1e-6)
    assert math.isclose(federated, pooled, rel_tol=1e-12)


def test_quantile_rule_is_the_inverted_cdf_order_statistic() -> None:
    # Prepare
    errors = np.random.default_rng(3).lognormal(-4.0, 2.0, 1000)

    # Execute
    tr = fit_threshold(errors, ThresholdRule(kind="quantile", q=0.95))

    # Assert: an observed value, and exactly 5 % of the rows lie above it.
    assert tr == np.sort(errors)[949]
    assert np.mean(errors > tr) == pytest.approx(0.05)
    assert tr == threshold_quantile(errors, 0.95)


@pytest.mark.parametrize(("seed", "q", "bins_per_decade"), [(0, 0.5, 100), (1, 0.95, 100), (2, 0.99, 20)])
def test_federated_quantile_is_within_the_stated_bound(seed: int, q: float, bins_per_decade: int) -> None:
    # Prepare
    rule = ThresholdRule(kind="quantile", q=q, bins_per_decade=bins_per_decade)
    clients = _skewed_errors(seed)

    # Execute
    federated = threshold_from_summaries([error_summary(e, rule) for e in clients], rule)
    exact = fit_threshold(np.concatenate(clients), rule)

    # Assert: never below the exact quantile, at most one bin's ratio above it.
    assert exact <= federated <= exact * 10 ** (1 / bins_per_decade) * (1 + 1e-12)


def test_histogram_under_and_overflow_stay_conservative() -> None:
    # Prepare: errors below 10**lo_exp and above 10**hi_exp.
    tiny = np.array([1e-15, 2e-15, 3e-15, 4e-15])
    huge = np.array([1e7, 2e7, 3e7, 5e7])

    # Execute
    q_tiny = ErrorHistogram.from_errors(tiny).quantile(0.5)
    q_huge = ErrorHistogram.from_errors(huge).quantile(0.5)

    # Assert
    assert 2e-15 <= q_tiny <= 1e-12
    assert q_huge == 5e7
    assert ErrorHistogram.from_errors([0.25]).quantile(0.9) == 0.25


def test_histogram_merge_and_round_trip() -> None:
    # Prepare
    a, b = _skewed_errors(4, sizes=(30, 70))
    ha, hb = ErrorHistogram.from_errors(a), ErrorHistogram.from_errors(b)

    # Execute
    merged = ErrorHistogram.from_dict((ha + hb).to_dict())

    # Assert
    pooled = ErrorHistogram.from_errors(np.concatenate([a, b]))
    np.testing.assert_array_equal(merged.counts, pooled.counts)
    assert (merged.min, merged.max, merged.count) == (pooled.min, pooled.max, 100)
    with pytest.raises(DataError, match="layouts"):
        ha + ErrorHistogram.from_errors(b, bins_per_decade=10)


def test_local_thresholds_use_each_clients_errors_only() -> None:
    # Prepare
    rule = ThresholdRule()
    clients = dict(zip(["a", "b"], _skewed_errors(5, sizes=(40, 60)), strict=True))

    # Execute
    local = local_thresholds(clients, rule)

    # Assert
    assert local["a"] == pytest.approx(clients["a"].mean() + clients["a"].std(ddof=1))
    assert local["b"] == pytest.approx(clients["b"].mean() + clients["b"].std(ddof=1))
    assert local["a"] != local["b"]


def test_invalid_rules_and_inputs_fail_clearly() -> None:
    # Prepare
    rule = ThresholdRule(kind="mean_std")
    quant = ThresholdRule(kind="quantile")

    # Execute / Assert
    with pytest.raises(ValueError, match="q must be in"):
        ThresholdRule(kind="quantile", q=1.0)
    with pytest.raises(ValueError, match="kind must be"):
        ThresholdRule(kind="median")  # type: ignore[arg-type]
    with pytest.raises(DataError, match=">= 2 error values"):
        fit_threshold([1.0], rule)
    with pytest.raises(DataError, match="index 1"):
        fit_threshold([1.0, np.nan, 2.0], rule)
    with pytest.raises(DataError, match="ErrorHistogram"):
        threshold_from_summaries([SufficientStats.from_array(np.ones((3, 1)))], quant)
    with pytest.raises(DataError, match=">= 0"):
        ErrorHistogram.from_errors([-1.0])
    with pytest.raises(DataError, match="no client summaries"):
        threshold_from_summaries([], rule)
    assert ThresholdRule.from_dict(quant.to_dict()) == quant
