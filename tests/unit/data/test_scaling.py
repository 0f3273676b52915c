"""Scalers from federatable sufficient statistics: federated == pooled, and agreement with sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import preprocessing as skp

from fediot.data.scaling import MinMaxScaler, StandardScaler, SufficientStats, scaler_from_dict
from fediot.errors import DataError


def _skewed_rows(seed: int, n: int = 900, d: int = 7) -> np.ndarray:
    """Rows with skewed, shifted and very differently scaled features (like N-BaIoT's)."""
    rng = np.random.default_rng(seed)
    x = rng.lognormal(0.0, 2.0, (n, d)) * np.logspace(-3, 5, d)
    x[:, 0] += 1e6  # a large offset with a small spread stresses a naive sum-of-squares variance
    return x


def _client_stats(x: np.ndarray, cuts: list[int]) -> SufficientStats:
    parts = [SufficientStats.from_array(x[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    merged = parts[0]
    for p in parts[1:]:
        merged = merged + p
    return merged


def test_federated_stats_equal_pooled_stats() -> None:
    # Prepare
    x = _skewed_rows(0)
    cuts = [0, 13, 13, 400, 401, 900]  # includes an empty client and a one-row client

    # Execute
    merged = _client_stats(x, cuts)
    pooled = SufficientStats.from_array(x)

    # Assert
    assert merged.count == pooled.count == 900
    np.testing.assert_allclose(merged.mean, pooled.mean, rtol=1e-9)
    np.testing.assert_allclose(merged.var(), pooled.var(), rtol=1e-9)
    np.testing.assert_allclose(merged.var(), x.var(axis=0), rtol=1e-9)
    np.testing.assert_allclose(merged.sum, x.sum(axis=0), rtol=1e-9)
    np.testing.assert_allclose(merged.sum_sq, (x * x).sum(axis=0), rtol=1e-9)
    np.testing.assert_array_equal(merged.min, x.min(axis=0))
    np.testing.assert_array_equal(merged.max, x.max(axis=0))


def test_variance_of_large_offset_is_stable() -> None:
    # Prepare: mean 1e9, std 1e-3; the naive E[x^2] - E[x]^2 in float64 loses every digit here.
    rng = np.random.default_rng(1)
    x = (1e9 + rng.normal(0.0, 1e-3, 1000)).reshape(-1, 1)

    # Execute
    merged = _client_stats(x, [0, 250, 600, 1000])

    # Assert
    np.testing.assert_allclose(merged.var(ddof=1), np.var(x, ddof=1), rtol=1e-5)


@pytest.mark.parametrize("kind", ["minmax", "standard"])
def test_transform_matches_sklearn_when_fitted_on_federated_stats(kind: str) -> None:
    # Prepare
    x = _skewed_rows(2)
    x_new = _skewed_rows(3, n=50)
    stats = _client_stats(x, [0, 300, 700, 900])

    # Execute
    ours = (MinMaxScaler if kind == "minmax" else StandardScaler).from_stats(stats).transform(x_new)
    reference = (skp.MinMaxScaler() if kind == "minmax" else skp.StandardScaler()).fit(x).transform(x_new)

    # Assert
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference.astype(np.float32), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["minmax", "standard"])
def test_constant_feature_gets_scale_one_like_sklearn(kind: str) -> None:
    # Prepare: column 1 is constant (0.1 repeated: its float mean is not exactly 0.1).
    x = np.column_stack([np.arange(10.0), np.full(10, 0.1)])
    x_new = np.array([[3.0, 0.1], [4.0, 1.1]])

    # Execute
    scaler = (MinMaxScaler if kind == "minmax" else StandardScaler).from_array(x)
    ours = scaler.transform(x_new)
    reference = (skp.MinMaxScaler() if kind == "minmax" else skp.StandardScaler()).fit(x).transform(x_new)

    # Assert
    assert scaler.scale_[1] == 1.0
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_names_the_column(bad: float) -> None:
    # Prepare
    x = np.ones((4, 5))
    x[2, 3] = bad
    scaler = MinMaxScaler.from_array(np.arange(10.0).reshape(2, 5))

    # Execute / Assert
    with pytest.raises(DataError, match="column 3") as fit_err:
        SufficientStats.from_array(x)
    with pytest.raises(DataError, match="column 3") as transform_err:
        scaler.transform(x)
    assert fit_err.value.column == 3
    assert transform_err.value.column == 3


def test_bad_shapes_and_empty_fits_are_rejected() -> None:
    # Prepare
    scaler = StandardScaler.from_array(np.arange(6.0).reshape(3, 2))

    # Execute / Assert
    with pytest.raises(DataError, match="2-D"):
        SufficientStats.from_array(np.arange(3.0))
    with pytest.raises(DataError, match=r"\(n_samples, 2\)"):
        scaler.transform(np.zeros((4, 3)))
    with pytest.raises(DataError, match="zero rows"):
        MinMaxScaler.from_stats(SufficientStats.empty(2))
    with pytest.raises(DataError, match="merge"):
        SufficientStats.empty(2) + SufficientStats.empty(3)


def test_empty_stats_are_the_merge_identity() -> None:
    # Prepare
    s = SufficientStats.from_array(_skewed_rows(4, n=20, d=3))

    # Execute
    left, right = SufficientStats.empty(3) + s, s + SufficientStats.from_array(np.zeros((0, 3)))

    # Assert
    for merged in (left, right):
        assert merged.count == 20
        np.testing.assert_array_equal(merged.mean, s.mean)
        np.testing.assert_array_equal(merged.min, s.min)


def test_stats_round_trip_through_plain_values() -> None:
    # Prepare
    s = SufficientStats.from_array(_skewed_rows(5, n=40, d=4))

    # Execute: as JSON-like lists (what a network message may carry), and as sum/sum_sq.
    as_lists = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in s.to_dict().items()}
    back = SufficientStats.from_dict(as_lists)
    from_sums = SufficientStats.from_dict(
        {"count": s.count, "sum": s.sum, "sum_sq": s.sum_sq, "min": s.min, "max": s.max}
    )

    # Assert
    assert back.count == s.count
    np.testing.assert_array_equal(back.mean, s.mean)
    np.testing.assert_array_equal(back.m2, s.m2)
    np.testing.assert_allclose(from_sums.mean, s.mean, rtol=1e-12)
    # Column 0 (offset 1e6) loses its variance to cancellation in sum_sq: why (mean, M2) is what we send.
    np.testing.assert_allclose(from_sums.var()[1:], s.var()[1:], rtol=1e-6)
    with pytest.raises(DataError, match="'max'"):
        SufficientStats.from_dict({"count": 1, "mean": [0.0], "m2": [0.0], "min": [0.0]})


@pytest.mark.parametrize("cls", [MinMaxScaler, StandardScaler])
def test_scaler_round_trips_through_dict(cls: type[MinMaxScaler] | type[StandardScaler]) -> None:
    # Prepare
    x = _skewed_rows(6, n=30, d=3)
    scaler = cls.from_array(x)

    # Execute
    back = scaler_from_dict(scaler.to_dict())

    # Assert
    assert type(back) is cls
    np.testing.assert_array_equal(back.transform(x), scaler.transform(x))
    with pytest.raises(DataError, match="unknown scaler kind"):
        scaler_from_dict({"kind": "robust"})
