"""Hypothesis properties and examples of the partitioners: disjoint, covering, sane sizes, deterministic."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from fediot.data.partition import partition_by_group, partition_contiguous, partition_dirichlet, partition_iid
from fediot.errors import ConfigError


def _assert_exact_cover(parts: list[NDArray[np.int64]], n: int) -> None:
    joined = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    assert joined.dtype == np.int64
    assert joined.size == n  # disjoint + cover: n indices in all, and each of range(n) once
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))
    for part in parts:
        assert np.all(np.diff(part) > 0)  # sorted, no duplicates inside a part


@given(n=st.integers(0, 500), k=st.integers(1, 20))
def test_contiguous_blocks_cover_in_order_with_balanced_sizes(n: int, k: int) -> None:
    # Execute
    parts = partition_contiguous(n, k)
    # Assert
    assert len(parts) == k
    _assert_exact_cover(parts, n)
    sizes = [p.size for p in parts]
    assert max(sizes) - min(sizes) <= 1
    np.testing.assert_array_equal(np.concatenate(parts), np.arange(n))  # consecutive blocks, in order


@given(n=st.integers(0, 500), k=st.integers(1, 20), seed=st.integers(0, 2**32 - 1))
def test_iid_is_a_balanced_exact_cover_and_deterministic(n: int, k: int, seed: int) -> None:
    # Execute
    parts = partition_iid(n, k, seed)
    again = partition_iid(n, k, np.random.default_rng(seed))
    # Assert
    _assert_exact_cover(parts, n)
    sizes = [p.size for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


def test_iid_depends_on_the_seed() -> None:
    # Execute
    a, b = partition_iid(100, 4, 0), partition_iid(100, 4, 1)
    # Assert
    assert not all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(0, 5), min_size=20, max_size=300),
    k=st.integers(1, 6),
    alpha=st.floats(0.05, 100.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_dirichlet_is_an_exact_cover_with_min_size_and_deterministic(
    labels: list[int], k: int, alpha: float, seed: int
) -> None:
    # Prepare
    y = np.array(labels)
    # Execute
    try:
        parts = partition_dirichlet(y, k, alpha, seed, min_size=1)
    except ConfigError:  # a tiny alpha can fail to give k non-empty parts; that is reported, not hidden
        return
    again = partition_dirichlet(y, k, alpha, np.random.default_rng(seed), min_size=1)
    # Assert
    assert len(parts) == k
    _assert_exact_cover(parts, y.size)
    assert min(p.size for p in parts) >= 1
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


def test_dirichlet_small_alpha_skews_labels_large_alpha_does_not() -> None:
    # Prepare
    y = np.repeat(np.arange(10), 200)

    def mean_classes_per_part(alpha: float) -> float:
        parts = partition_dirichlet(y, 10, alpha, 0, min_size=10)
        return float(np.mean([np.sum(np.bincount(y[p], minlength=10) >= 10) for p in parts]))

    # Execute
    skewed, flat = mean_classes_per_part(0.1), mean_classes_per_part(1000.0)
    # Assert
    assert skewed < 5
    assert flat == 10


def test_dirichlet_rejects_impossible_min_size() -> None:
    # Execute / Assert
    with pytest.raises(ConfigError, match="impossible"):
        partition_dirichlet(np.zeros(5), 3, 1.0, 0, min_size=2)
    with pytest.raises(ConfigError, match="alpha"):
        partition_dirichlet(np.zeros(5), 2, 0.0, 0)


@given(groups=st.lists(st.sampled_from(["cam", "doorbell", "plug", "thermostat"]), max_size=200))
def test_by_group_gives_one_part_per_group_in_sorted_order(groups: list[str]) -> None:
    # Prepare
    g = np.array(groups, dtype=str)
    # Execute
    parts = partition_by_group(g)
    # Assert
    _assert_exact_cover(parts, g.size)
    names = np.unique(g).tolist()
    assert len(parts) == len(names)
    for name, part in zip(names, parts, strict=True):
        assert set(g[part].tolist()) == {name}
        assert part.size == groups.count(name)


@pytest.mark.parametrize("fn", [lambda: partition_contiguous(5, 0), lambda: partition_iid(5, 0, 0)])
def test_zero_parts_is_rejected(fn: object) -> None:
    # Execute / Assert
    with pytest.raises(ConfigError, match="num_parts"):
        fn()  # type: ignore[operator]
