"""Unit tests for seeded client selection."""

from __future__ import annotations

import numpy as np
import pytest

from fediot.federated.selection import num_selected, select_clients

IDS = [f"c{i}" for i in range(10)]


def test_same_seed_gives_same_sequence_of_selections() -> None:
    # Prepare
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    # Execute
    a = [select_clients(rng_a, IDS, 0.3, 2) for _ in range(20)]
    b = [select_clients(rng_b, IDS, 0.3, 2) for _ in range(20)]
    # Assert
    assert a == b
    assert len({tuple(s) for s in a}) > 1  # the stream advances: rounds differ


def test_different_seeds_give_different_selections() -> None:
    # Execute
    sequences = {
        tuple(tuple(select_clients(rng, IDS, 0.3, 1)) for _ in range(5))
        for rng in (np.random.default_rng(s) for s in range(5))
    }
    # Assert
    assert len(sequences) > 1


@pytest.mark.parametrize(
    ("fraction", "min_clients", "expected"),
    [(0.3, 1, 3), (0.25, 1, 3), (0.1, 4, 4), (1.0, 1, 10), (0.05, 1, 1), (0.5, 10, 10)],
)
def test_selection_size_is_ceil_fraction_at_least_min(
    fraction: float, min_clients: int, expected: int
) -> None:
    # Execute
    picked = select_clients(np.random.default_rng(0), IDS, fraction, min_clients)
    # Assert
    assert len(picked) == expected == num_selected(len(IDS), fraction, min_clients)


def test_selection_is_a_subset_without_repeats_in_input_order() -> None:
    # Prepare
    rng = np.random.default_rng(3)
    # Execute
    for _ in range(50):
        picked = select_clients(rng, IDS, 0.5, 1)
        # Assert
        assert set(picked) <= set(IDS)
        assert len(set(picked)) == len(picked)
        assert picked == sorted(picked, key=IDS.index)


def test_every_client_is_eventually_selected() -> None:
    # Prepare
    rng = np.random.default_rng(0)
    # Execute
    seen = {cid for _ in range(100) for cid in select_clients(rng, IDS, 0.2, 1)}
    # Assert
    assert seen == set(IDS)


@pytest.mark.parametrize(
    ("num_available", "fraction", "min_clients"), [(10, 0.0, 1), (10, 1.5, 1), (10, 0.5, 0), (3, 0.5, 4)]
)
def test_invalid_selection_arguments_raise(num_available: int, fraction: float, min_clients: int) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=r"fraction|min_clients"):
        select_clients(np.random.default_rng(0), IDS[:num_available], fraction, min_clients)
