"""Hypothesis properties of the robust rules as the engine calls them.

Weights: the strategies ``strategy_for`` builds from an ``FLConfig`` (what ``run_fl`` aggregates with),
fed ``ClientUpdate`` lists. Statistics: client summaries sent through the wire encoding
(``encode_summary`` / ``decode_summary``, as ``collect_summaries`` receives them), combined by
``merge_summaries`` and finalised by ``threshold_from_summaries``, as the engine's statistics rounds do.
The pure-function properties (median / trimmed mean inside the per-coordinate range, Krum ignoring
outliers offset along one axis, ...) live in ``test_aggregate.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fediot.config import FLConfig
from fediot.data.scaling import SufficientStats
from fediot.detect.threshold import (
    ErrorHistogram,
    ErrorSummary,
    ThresholdRule,
    error_summary,
    threshold_from_summaries,
)
from fediot.federated.settings import strategy_for
from fediot.federated.statistics import (
    decode_summary,
    encode_summary,
    honest_threshold_bounds,
    merge_summaries,
)
from fediot.federated.strategy import Strategy
from fediot.federated.types import ClientUpdate, Weights

_SHAPES: st.SearchStrategy[list[tuple[int, ...]]] = st.sampled_from(
    [[(3,)], [(2, 3), (3,)], [(4, 2), (2,), (1, 2)]]
)
_FEW = settings(max_examples=40)
_Draw = Callable[..., Any]  # st.DrawFn or st.DataObject.draw


def _strategy(name: str, **federated: Any) -> Strategy:
    """The engine's strategy for ``federated.strategy = name`` (validated by the schema)."""
    return strategy_for(FLConfig.from_dict({"federated": {"strategy": name, **federated}}))


def _close(a: Weights, b: Weights, *, rtol: float = 0.0, atol: float = 0.0) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.dtype == np.float32
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


# --- weights: permutation invariance ----------------------------------------------------------------


@st.composite
def rounds(draw: st.DrawFn) -> tuple[Weights, list[ClientUpdate], int]:
    """A round: the current model, ``n`` updates drawn from a continuous distribution, and ``f``.

    Ties are broken by input order, as in Flower, so only a tie-free round is order-free for Krum,
    Multi-Krum and Bulyan. Continuous draws (a seeded normal, some of them shifted far away) have no
    accidental ties with probability 1; one tie is structural: with ``n - f - 2 = 1`` a Krum score is
    the distance to the nearest neighbour, so the two mutually nearest replies always tie (found by this
    test). Hence ``n - f - 2 >= 2`` here; in the engine the order is the seeded selection order, so a
    tied round is still reproducible.
    """
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shapes = draw(_SHAPES)
    n = draw(st.integers(4, 13))
    f = draw(st.integers(0, (n - 3) // 2))  # Krum's n >= 2 f + 3; with n >= 4 also n - f - 2 >= 2
    scale = draw(st.sampled_from([1e-3, 1.0, 1e2]))
    outliers = draw(st.integers(0, f))
    current = [rng.normal(0.0, scale, s).astype(np.float32) for s in shapes]
    updates = []
    for k in range(n):
        shift = 1e3 * scale if k < outliers else 0.0
        w = [
            (c + shift + rng.normal(0.0, scale, s)).astype(np.float32)
            for c, s in zip(current, shapes, strict=True)
        ]
        updates.append(ClientUpdate(w, int(rng.integers(1, 10_000)), {}))
    return current, updates, f


def _robust_strategies(n: int, f: int) -> list[tuple[str, Strategy]]:
    out = [
        ("median", _strategy("median")),
        ("trimmed-mean", _strategy("trimmed-mean", trimmed_fraction=0.3)),
        ("krum", _strategy("krum", num_malicious=f)),
        ("multi-krum", _strategy("multi-krum", num_malicious=f)),  # m = n - f
        ("multi-krum m=2", _strategy("multi-krum", num_malicious=f, krum_select=2)),
        ("norm-bounded", _strategy("norm-bounded", clip_norm=0.5)),
    ]
    bulyan_f = min(f, (n - 3) // 4)  # Bulyan's n >= 4 f + 3
    out.append(("bulyan", _strategy("bulyan", num_malicious=bulyan_f)))
    return out


@_FEW
@given(rounds(), st.randoms(use_true_random=False))
def test_every_robust_strategy_is_invariant_to_the_order_of_the_replies(
    case: tuple[Weights, list[ClientUpdate], int], rnd: Any
) -> None:
    # Prepare
    current, updates, f = case
    shuffled = list(updates)
    rnd.shuffle(shuffled)
    for name, strategy in _robust_strategies(len(updates), f):
        # Execute
        a = strategy.aggregate(1, current, updates)
        b = strategy.aggregate(1, current, shuffled)
        # Assert: the same replies chosen, the same coordinates kept; a weighted mean (Krum's FedAvg
        # of its choice, norm bounding) may differ in the float64 sum's last bits before the cast
        try:
            _close(a, b, rtol=1e-6, atol=1e-6 * float(max(np.abs(w).max() for w in a) + 1.0))
        except AssertionError as exc:
            raise AssertionError(f"{name}: order changed the aggregate") from exc


# --- weights: Krum ignores f far-away outliers in any direction -------------------------------------


@st.composite
def honest_ball_and_far_outliers(draw: st.DrawFn) -> tuple[list[ClientUpdate], int, int]:
    """``n - f`` honest updates uniform in [-1, 1]^d, ``f`` outliers at distance >= 100 sqrt(d).

    The outliers either collude (one point plus tiny noise: each has ``f - 1`` close neighbours, Krum's
    worst case) or scatter in random directions; either way ``n >= 2 f + 3``.
    Returns the shuffled updates, ``f`` and the number of honest ones (the first ``honest`` of the
    unshuffled list; identified below by their norm).
    """
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shapes = draw(_SHAPES)
    d = sum(int(np.prod(s)) for s in shapes)
    f = draw(st.integers(1, 3))
    honest = draw(st.integers(f + 3, f + 8))
    distance = draw(st.sampled_from([100.0, 1e3, 1e6])) * np.sqrt(d)
    collude = draw(st.booleans())
    updates = [
        ClientUpdate(
            [rng.uniform(-1.0, 1.0, s).astype(np.float32) for s in shapes], int(rng.integers(1, 100)), {}
        )
        for _ in range(honest)
    ]
    shared = rng.normal(size=d)
    for _ in range(f):
        direction = shared if collude else rng.normal(size=d)
        point = direction / np.linalg.norm(direction) * distance + rng.normal(0.0, 1e-3, d)
        layers, at = [], 0
        for s in shapes:
            size = int(np.prod(s))
            layers.append(point[at : at + size].reshape(s).astype(np.float32))
            at += size
        updates.append(ClientUpdate(layers, 1_000_000, {}))  # counts must not buy a place
    order = draw(st.permutations(range(len(updates))))
    return [updates[i] for i in order], f, honest


def _is_honest(u: ClientUpdate) -> bool:
    return max(float(np.abs(w).max()) for w in u.weights) <= 1.0


@_FEW
@given(honest_ball_and_far_outliers())
def test_krum_returns_an_honest_update_and_multi_krum_stays_in_the_honest_range(
    case: tuple[list[ClientUpdate], int, int],
) -> None:
    # Prepare
    updates, f, n_honest = case
    honest = [u for u in updates if _is_honest(u)]
    assert len(honest) == n_honest
    current = [np.zeros_like(w) for w in updates[0].weights]
    # Execute
    krum = _strategy("krum", num_malicious=f).aggregate(1, current, updates)
    multi = _strategy("multi-krum", num_malicious=f).aggregate(1, current, updates)
    # Assert: Krum's choice is one honest update, bit for bit
    assert any(all(np.array_equal(k, w) for k, w in zip(krum, u.weights, strict=True)) for u in honest), (
        "Krum chose an outlier"
    )
    # Multi-Krum averages the n - f most central updates: the honest ones, so it stays in their range
    for layer, agg in enumerate(multi):
        stacked = np.stack([u.weights[layer] for u in honest])
        assert np.all(agg >= stacked.min(axis=0) - 1e-6)
        assert np.all(agg <= stacked.max(axis=0) + 1e-6)


# --- statistics: f hostile clients cannot leave the honest range ------------------------------------

_RULES = st.sampled_from(["median", "trimmed"])
_TRIMS = st.sampled_from([0.1, 0.2, 0.32, 0.45])
_HUGE = st.one_of(
    st.sampled_from([0.0, 1e6, -1e6, 1e12, -1e12, 1e-12]),
    st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False),
)


def _sizes(draw: _Draw, rule: str, trim: float) -> tuple[int, int]:
    """``(honest, hostile)`` counts inside the bound's condition: ``f < K / 2`` (median) or
    ``f <= int(trim * K)`` (trimmed), ``K`` the clients in all."""
    k = draw(st.integers(3, 16))
    f_max = (k - 1) // 2 if rule == "median" else int(trim * k)
    f = draw(st.integers(0, f_max))
    return k - f, f


def _wire(summary: ErrorSummary) -> ErrorSummary:
    """What the server holds after a client's summary crossed a transport (validated as the engine does)."""
    return decode_summary(encode_summary(summary))


def _hostile_stats(draw: _Draw, d: int) -> SufficientStats:
    """Any per-feature statistics that pass the server's validation (finite, ``m2 >= 0``, count >= 1)."""
    count = draw(st.sampled_from([1, 2, 50, 10**9, 10**12]))
    vec = st.lists(_HUGE, min_size=d, max_size=d).map(lambda v: np.array(v, dtype=np.float64))
    mean, lo, hi = draw(vec), draw(vec), draw(vec)
    m2 = np.abs(draw(vec)) * draw(st.sampled_from([0.0, 1.0, 1e12]))
    return SufficientStats(count, mean, m2, lo, hi)


@_FEW
@given(st.data(), _RULES, _TRIMS, st.integers(1, 4))
def test_robust_scaler_statistics_stay_in_the_honest_range_whatever_f_clients_send(
    data: st.DataObject, rule: str, trim: float, d: int
) -> None:
    # Prepare: honest clients' feature statistics of real-valued rows (lognormal, varied sizes)
    n_honest, f = _sizes(data.draw, rule, trim)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    honest = {
        f"h{i:02d}": SufficientStats.from_array(
            rng.lognormal(rng.normal(0.0, 2.0), 1.0, (int(rng.integers(2, 300)), d))
        )
        for i in range(n_honest)
    }
    hostile = {f"x{j:02d}": _hostile_stats(data.draw, d) for j in range(f)}
    wire = {cid: _wire(s) for cid, s in {**honest, **hostile}.items()}
    # Execute
    merged = merge_summaries(wire, rule, trim)
    # Assert: every statistic, per feature, inside the honest clients' range of it
    assert isinstance(merged, SufficientStats)
    h = list(honest.values())
    for got, values in [
        (merged.mean, np.stack([s.mean for s in h])),
        (merged.m2 / merged.count, np.stack([s.m2 / s.count for s in h])),
        (merged.min, np.stack([s.min for s in h])),
        (merged.max, np.stack([s.max for s in h])),
    ]:
        lo, hi = values.min(axis=0), values.max(axis=0)
        slack = 1e-12 * np.maximum(np.abs(lo), np.abs(hi))
        assert np.all(got >= lo - slack), (got, lo)
        assert np.all(got <= hi + slack), (got, hi)


_MEAN_STD = st.builds(ThresholdRule, kind=st.just("mean_std"), k=st.sampled_from([0.0, 1.0, 3.0]))


@_FEW
@given(st.data(), _RULES, _TRIMS, _MEAN_STD)
def test_robust_mean_std_threshold_stays_within_the_honest_bound_whatever_f_clients_send(
    data: st.DataObject, rule: str, trim: float, threshold_rule: ThresholdRule
) -> None:
    # Prepare: honest clients' reconstruction-error statistics, hostile ones arbitrary
    n_honest, f = _sizes(data.draw, rule, trim)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    honest = [
        error_summary(rng.lognormal(-3.0, 0.7, int(rng.integers(2, 300))), threshold_rule)
        for _ in range(n_honest)
    ]
    hostile = [_hostile_stats(data.draw, 1) for _ in range(f)]
    wire = {f"c{i:02d}": _wire(s) for i, s in enumerate([*honest, *hostile])}
    lo, hi = honest_threshold_bounds(honest, threshold_rule)
    # Execute
    threshold = threshold_from_summaries([merge_summaries(wire, rule, trim)], threshold_rule)
    # Assert
    slack = 1e-9 * max(abs(lo), abs(hi))
    assert lo - slack <= threshold <= hi + slack, (lo, threshold, hi)


_QUANTILE = ThresholdRule(kind="quantile", q=0.95, bins_per_decade=20, lo_exp=-8, hi_exp=4)


def _hostile_histogram(draw: _Draw) -> ErrorHistogram:
    """Any histogram of the query's layout that passes validation: counts >= 0, finite min/max."""
    size = (_QUANTILE.hi_exp - _QUANTILE.lo_exp) * _QUANTILE.bins_per_decade + 2
    kind = draw(st.sampled_from(["spike", "spread", "overflow", "underflow"]))
    counts = np.zeros(size, dtype=np.int64)
    total = draw(st.sampled_from([1, 100, 10**9]))
    if kind == "spike":
        counts[draw(st.integers(0, size - 1))] = total
    elif kind == "spread":
        counts[:] = total
    elif kind == "overflow":
        counts[-1] = total
    else:
        counts[0] = total
    lo = draw(st.sampled_from([0.0, 1e-12, 1e3]))
    hi = draw(st.sampled_from([0.0, 1e-6, 1e9]))
    return ErrorHistogram(counts, lo, hi, _QUANTILE.bins_per_decade, _QUANTILE.lo_exp, _QUANTILE.hi_exp)


@_FEW
@given(st.data(), _RULES, _TRIMS)
def test_robust_quantile_threshold_stays_within_one_bin_of_the_honest_ones(
    data: st.DataObject, rule: str, trim: float
) -> None:
    # Prepare
    n_honest, f = _sizes(data.draw, rule, trim)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    honest = [
        error_summary(rng.lognormal(-3.0, 0.7, int(rng.integers(20, 300))), _QUANTILE)
        for _ in range(n_honest)
    ]
    hostile = [_hostile_histogram(data.draw) for _ in range(f)]
    wire = {f"c{i:02d}": _wire(s) for i, s in enumerate([*honest, *hostile])}
    lo, hi = honest_threshold_bounds(honest, _QUANTILE)
    # Execute
    threshold = threshold_from_summaries([merge_summaries(wire, rule, trim)], _QUANTILE)
    # Assert
    assert lo * (1 - 1e-12) <= threshold <= hi * (1 + 1e-12), (lo, threshold, hi)


@_FEW
@given(st.data())
def test_past_the_breakdown_point_the_median_follows_the_liars(data: st.DataObject) -> None:
    # Prepare: one hostile client more than the median tolerates (f = ceil(K / 2)), all reporting 1e6
    k = data.draw(st.integers(3, 16))
    f = (k + 1) // 2
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    rule = ThresholdRule(kind="mean_std", k=1.0)
    honest = [error_summary(rng.lognormal(-3.0, 0.7, 50), rule) for _ in range(k - f)]
    liar = SufficientStats(50, np.array([1e6]), np.array([1.0]), np.array([1e6]), np.array([1e6]))
    wire = {f"c{i:02d}": _wire(s) for i, s in enumerate([*honest, *([liar] * f)])}
    _, hi = honest_threshold_bounds(honest, rule)
    # Execute / Assert: the median then follows the liars, and so does the plain pool at any f
    assert threshold_from_summaries([merge_summaries(wire, "median")], rule) > 1e5 * hi
    assert threshold_from_summaries([merge_summaries(wire, "sum")], rule) > 1e4 * hi
