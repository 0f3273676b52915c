"""Hypothesis properties of the pure aggregation functions (FedAvg, FedAvgM and the robust rules)."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fediot.federated.aggregate import (
    aggregate_bulyan,
    aggregate_fedavg,
    aggregate_krum,
    aggregate_median,
    aggregate_norm_bounded,
    aggregate_trimmed_mean,
    krum_scores,
    select_krum,
)
from fediot.federated.strategy import FedAvg, FedAvgM
from fediot.federated.types import ClientUpdate, Weights

_SHAPES = st.sampled_from([[(3,)], [(2, 3), (3,)], [(4, 2), (2,), (1, 2)]])
_FLOATS = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def replies(draw: st.DrawFn, min_clients: int = 1, max_clients: int = 6) -> list[tuple[Weights, int]]:
    """Lists of ``(weights, num_examples)`` with shared layer shapes and a positive total count."""
    shapes = draw(_SHAPES)
    k = draw(st.integers(min_clients, max_clients))
    out: list[tuple[Weights, int]] = []
    for _ in range(k):
        weights = [draw(arrays(np.float32, shape, elements=_FLOATS)) for shape in shapes]
        out.append((weights, draw(st.integers(1, 10_000))))
    return out


def _assert_layers_close(a: Weights, b: Weights, *, rtol: float = 0.0, atol: float = 0.0) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


@given(replies(min_clients=2), st.randoms(use_true_random=False))
def test_fedavg_is_permutation_invariant(reps: list[tuple[Weights, int]], rnd: random.Random) -> None:
    # Prepare
    shuffled = list(reps)
    rnd.shuffle(shuffled)
    # Execute
    a = aggregate_fedavg(reps)
    b = aggregate_fedavg(shuffled)
    # Assert: float64 accumulation then a float32 cast; reordering may change the last float64 bit only
    _assert_layers_close(a, b, rtol=1e-6, atol=1e-6)


@given(replies(min_clients=1, max_clients=1))
def test_fedavg_of_one_client_is_the_identity(reps: list[tuple[Weights, int]]) -> None:
    # Prepare
    ((weights, _),) = reps
    # Execute
    out = aggregate_fedavg(reps)
    # Assert: bitwise
    for x, y in zip(out, weights, strict=True):
        assert x.dtype == np.float32
        np.testing.assert_array_equal(x, y)


@given(replies(min_clients=1, max_clients=1), st.lists(st.integers(1, 10_000), min_size=1, max_size=6))
def test_fedavg_of_identical_updates_returns_that_update(
    reps: list[tuple[Weights, int]], counts: list[int]
) -> None:
    # Prepare
    ((weights, _),) = reps
    same = [([w.copy() for w in weights], n) for n in counts]
    # Execute
    out = aggregate_fedavg(same)
    # Assert: sum_k (n_k/n) w is w up to float64 rounding, which the float32 cast removes (<= 1 ulp)
    _assert_layers_close(out, weights, rtol=2e-7, atol=1e-30)


@given(replies(min_clients=1))
def test_fedavg_equals_numpy_weighted_average(reps: list[tuple[Weights, int]]) -> None:
    # Prepare
    counts = np.array([n for _, n in reps], dtype=np.float64)
    expected = [
        np.average(np.stack([w[layer].astype(np.float64) for w, _ in reps]), axis=0, weights=counts)
        for layer in range(len(reps[0][0]))
    ]
    # Execute
    out = aggregate_fedavg(reps)
    # Assert: equal to the float64 reference after rounding to float32
    _assert_layers_close(out, [e.astype(np.float32) for e in expected], rtol=1e-6, atol=1e-4)


@given(replies(min_clients=1))
def test_fedavg_stays_inside_per_coordinate_range(reps: list[tuple[Weights, int]]) -> None:
    # Execute
    out = aggregate_fedavg(reps)
    # Assert
    for layer, agg in enumerate(out):
        stacked = np.stack([w[layer] for w, _ in reps])
        assert np.all(agg >= stacked.min(axis=0))
        assert np.all(agg <= stacked.max(axis=0))


def _fedavg_and_fedavgm(reps: list[tuple[Weights, int]], current_value: float) -> tuple[Weights, Weights]:
    current = [np.full(w.shape, current_value, dtype=np.float32) for w in reps[0][0]]
    updates = [ClientUpdate(w, n, {}) for w, n in reps]
    fedavg = FedAvg().aggregate(1, current, updates)
    fedavgm = FedAvgM(server_learning_rate=1.0, server_momentum=0.0).aggregate(1, current, updates)
    return fedavg, fedavgm


@given(replies(min_clients=1), st.floats(-1e3, 1e3, width=32))
def test_fedavgm_with_zero_momentum_and_unit_lr_equals_fedavg(
    reps: list[tuple[Weights, int]], current_value: float
) -> None:
    # Execute
    fedavg, fedavgm = _fedavg_and_fedavgm(reps, current_value)
    # Assert: w - (w - avg) in float64 is avg exactly unless |avg| << |w| (then w - avg rounds);
    # the error is at most one float64 ulp of |w| (<= 1e3 * 2**-52), far below float32 resolution.
    _assert_layers_close(fedavgm, fedavg, rtol=0.0, atol=1e-12)


_COMPARABLE = st.one_of(
    st.just(0.0), st.floats(2**-10, 1024.0, width=32), st.floats(-1024.0, -(2**-10), width=32)
)


@given(_COMPARABLE, st.integers(1, 1000), st.floats(-1e3, 1e3, width=32))
def test_fedavgm_with_zero_momentum_and_unit_lr_is_bitwise_fedavg_for_comparable_magnitudes(
    value: float, num_examples: int, current_value: float
) -> None:
    # Prepare: |avg| and |w| within 2**29 of each other (or avg = 0) makes the float64 w - avg exact
    reps: list[tuple[Weights, int]] = [([np.full((3,), value, np.float32)], num_examples)]
    # Execute
    fedavg, fedavgm = _fedavg_and_fedavgm(reps, current_value)
    # Assert: bitwise
    np.testing.assert_array_equal(fedavgm[0], fedavg[0])


@st.composite
def two_rounds(draw: st.DrawFn) -> tuple[list[tuple[Weights, int]], list[tuple[Weights, int]]]:
    """Two rounds of replies over the same layer shapes."""
    shapes = draw(_SHAPES)

    def one_round() -> list[tuple[Weights, int]]:
        k = draw(st.integers(1, 4))
        return [
            ([draw(arrays(np.float32, s, elements=_FLOATS)) for s in shapes], draw(st.integers(1, 1000)))
            for _ in range(k)
        ]

    return one_round(), one_round()


@settings(max_examples=50)
@given(two_rounds())
def test_fedavgm_step_matches_its_formula_over_two_rounds(
    rounds: tuple[list[tuple[Weights, int]], list[tuple[Weights, int]]],
) -> None:
    # Prepare
    r1, r2 = rounds
    beta, eta = 0.7, 0.5
    w0 = [np.ones(w.shape, np.float32) for w in r1[0][0]]
    strategy = FedAvgM(server_learning_rate=eta, server_momentum=beta)
    # Execute
    w1 = strategy.aggregate(1, w0, [ClientUpdate(w, n, {}) for w, n in r1])
    w2 = strategy.aggregate(2, w1, [ClientUpdate(w, n, {}) for w, n in r2])
    # Assert: v1 = d1 = w0 - avg1, w1 = w0 - eta v1; v2 = beta v1 + (w1 - avg2), w2 = w1 - eta v2
    a1 = [a.astype(np.float64) for a in aggregate_fedavg(r1)]
    a2 = [a.astype(np.float64) for a in aggregate_fedavg(r2)]
    v1 = [x - a for x, a in zip(w0, a1, strict=True)]
    e_w1 = [x - eta * v for x, v in zip(w0, v1, strict=True)]
    v2 = [beta * v + (x - a) for v, x, a in zip(v1, e_w1, a2, strict=True)]
    e_w2 = [x - eta * v for x, v in zip(e_w1, v2, strict=True)]
    _assert_layers_close(w1, [e.astype(np.float32) for e in e_w1], rtol=1e-6, atol=1e-3)
    _assert_layers_close(w2, [e.astype(np.float32) for e in e_w2], rtol=1e-6, atol=1e-3)


# --- robust aggregators -----------------------------------------------------------------------------

_FRACTIONS = st.sampled_from([0.0, 0.1, 0.2, 0.3, 0.45])


def _ranges(reps: list[tuple[Weights, int]], layer: int) -> tuple[np.ndarray, np.ndarray]:
    stacked = np.stack([w[layer] for w, _ in reps])
    return stacked.min(axis=0), stacked.max(axis=0)


@given(replies(min_clients=1), _FRACTIONS)
def test_median_and_trimmed_mean_stay_inside_per_coordinate_range(
    reps: list[tuple[Weights, int]], fraction: float
) -> None:
    # Execute
    med = aggregate_median(reps)
    trim = aggregate_trimmed_mean(reps, fraction)
    # Assert
    for layer in range(len(reps[0][0])):
        lo, hi = _ranges(reps, layer)
        for agg in (med[layer], trim[layer]):
            assert agg.dtype == np.float32
            assert np.all(agg >= lo)
            assert np.all(agg <= hi)


@given(replies(min_clients=2), _FRACTIONS, st.randoms(use_true_random=False))
def test_median_trimmed_mean_and_norm_bounding_are_permutation_invariant(
    reps: list[tuple[Weights, int]], fraction: float, rnd: random.Random
) -> None:
    # Prepare
    shuffled = list(reps)
    rnd.shuffle(shuffled)
    current = [np.zeros_like(w) for w in reps[0][0]]
    # Execute / Assert: order statistics are exactly order-free; the weighted mean up to float64 rounding
    _assert_layers_close(aggregate_median(reps), aggregate_median(shuffled))
    _assert_layers_close(aggregate_trimmed_mean(reps, fraction), aggregate_trimmed_mean(shuffled, fraction))
    _assert_layers_close(
        aggregate_norm_bounded(current, reps, 10.0),
        aggregate_norm_bounded(current, shuffled, 10.0),
        rtol=1e-6,
        atol=1e-6,
    )


@given(
    replies(min_clients=1, max_clients=1),
    st.integers(1, 11),
    st.integers(0, 2),
    _FRACTIONS,
)
def test_robust_rules_of_identical_updates_return_that_update(
    reps: list[tuple[Weights, int]], n: int, f: int, fraction: float
) -> None:
    # Prepare
    ((weights, _),) = reps
    same = [([w.copy() for w in weights], 7 + k) for k in range(n)]
    # Execute
    outs = [
        aggregate_median(same),
        aggregate_trimmed_mean(same, fraction),
        aggregate_krum(same, f, 1),
        aggregate_krum(same, f, max(1, n - f)),
        aggregate_norm_bounded(weights, same, 1.0),  # zero update: nothing to clip
    ]
    if n >= 4 * f + 3:
        outs.append(aggregate_bulyan(same, f))
    # Assert: equal up to the float32 cast of a float64 mean (<= 1 ulp)
    for out in outs:
        _assert_layers_close(out, weights, rtol=2e-7, atol=1e-30)


@st.composite
def honest_and_outliers(draw: st.DrawFn) -> tuple[list[tuple[Weights, int]], int]:
    """``n - f`` honest replies in [-1, 1]^d and ``f`` outliers at least 100 away; ``n > 2 f + 2``."""
    f = draw(st.integers(0, 3))
    honest = draw(st.integers(2 * f + 3 - f, 2 * f + 6))  # n = honest + f >= 2 f + 3
    shapes = draw(_SHAPES)
    small = st.floats(-1.0, 1.0, allow_nan=False, width=32)
    reps: list[tuple[Weights, int]] = []
    for _ in range(honest):
        reps.append(
            ([draw(arrays(np.float32, s, elements=small)) for s in shapes], draw(st.integers(1, 100)))
        )
    for _ in range(f):
        offset = draw(st.sampled_from([100.0, -100.0, 1e4]))
        reps.append(
            ([draw(arrays(np.float32, s, elements=small)) + np.float32(offset) for s in shapes], 10_000)
        )
    order = draw(st.permutations(range(len(reps))))
    return [reps[i] for i in order], f


def _is_outlier(weights: Weights) -> bool:
    return max(float(np.abs(w).max()) for w in weights) > 50.0


@given(honest_and_outliers())
def test_krum_and_multi_krum_ignore_f_outliers(case: tuple[list[tuple[Weights, int]], int]) -> None:
    # Prepare
    reps, f = case
    n = len(reps)
    # Execute
    krum = select_krum(reps, f, 1)
    multi = select_krum(reps, f, n - f)
    # Assert: no outlier is ever selected, however large its example count
    assert not any(_is_outlier(reps[i][0]) for i in krum)
    assert not any(_is_outlier(reps[i][0]) for i in multi)
    honest = [r for r in reps if not _is_outlier(r[0])]
    out = aggregate_krum(reps, f, n - f)
    for layer in range(len(out)):
        lo, hi = _ranges(honest, layer)
        assert np.all(out[layer] >= lo - 1e-5)
        assert np.all(out[layer] <= hi + 1e-5)


@given(honest_and_outliers())
def test_median_trimmed_mean_and_bulyan_stay_in_the_honest_range_with_f_outliers(
    case: tuple[list[tuple[Weights, int]], int],
) -> None:
    # Prepare
    reps, f = case
    n = len(reps)
    honest = [r for r in reps if not _is_outlier(r[0])]
    fraction = (f + 0.5) / n if f else 0.0  # cuts exactly f per tail
    # Execute
    outs = [aggregate_median(reps), aggregate_trimmed_mean(reps, fraction)]
    if n >= 4 * f + 3:
        outs.append(aggregate_bulyan(reps, f))
    # Assert
    for out in outs:
        for layer in range(len(out)):
            lo, hi = _ranges(honest, layer)
            assert np.all(out[layer] >= lo - 1e-6)
            assert np.all(out[layer] <= hi + 1e-6)


@given(honest_and_outliers(), st.randoms(use_true_random=False))
def test_krum_selection_is_permutation_invariant_when_scores_are_distinct(
    case: tuple[list[tuple[Weights, int]], int], rnd: random.Random
) -> None:
    # Prepare
    reps, f = case
    scores = krum_scores(reps, f)
    ordered = np.sort(scores)
    assume(ordered.size < 2 or float(np.min(np.diff(ordered))) > 1e-6 * max(1.0, float(ordered[-1])))
    perm = list(range(len(reps)))
    rnd.shuffle(perm)
    shuffled = [reps[i] for i in perm]
    # Execute
    a = select_krum(reps, f, 1)
    b = select_krum(shuffled, f, 1)
    # Assert: the same reply wins
    assert perm[b[0]] == a[0]


@given(replies(min_clients=1), st.floats(0.01, 100.0))
def test_norm_bounding_moves_the_model_by_at_most_clip_norm(
    reps: list[tuple[Weights, int]], clip: float
) -> None:
    # Prepare
    current = [np.zeros_like(w) for w in reps[0][0]]
    # Execute
    out = aggregate_norm_bounded(current, reps, clip)
    # Assert: a mean of vectors of norm <= clip has norm <= clip (float32 rounding allowance)
    norm = float(np.sqrt(sum(float(np.square(w.astype(np.float64)).sum()) for w in out)))
    assert norm <= clip * (1 + 1e-5) + 1e-6
