"""Seeded random selection of the clients that take part in a round."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["num_selected", "select_clients"]


def num_selected(num_available: int, fraction: float, min_clients: int) -> int:
    """Return how many of ``num_available`` clients a round selects.

    ``max(ceil(fraction * num_available), min_clients)``, capped at ``num_available``.

    Examples
    --------
    >>> num_selected(9, 0.5, 2)
    5
    >>> num_selected(9, 0.1, 3)
    3
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if min_clients < 1:
        raise ValueError(f"min_clients must be >= 1, got {min_clients}")
    if num_available < min_clients:
        raise ValueError(f"{num_available} clients available, fewer than min_clients={min_clients}")
    return min(num_available, max(math.ceil(fraction * num_available - 1e-9), min_clients))


def select_clients(
    rng: np.random.Generator, client_ids: Sequence[str], fraction: float, min_clients: int
) -> list[str]:
    """Draw a random subset of ``client_ids`` without replacement, in the order of ``client_ids``.

    Parameters
    ----------
    rng : numpy.random.Generator
        The only source of randomness (seed it for reproducible rounds).
    client_ids : sequence of str
        The available clients.
    fraction : float
        Fraction of the available clients to select, in (0, 1].
    min_clients : int
        Lower bound on the number selected.

    Examples
    --------
    >>> import numpy as np
    >>> select_clients(np.random.default_rng(0), ["a", "b", "c", "d"], 0.5, 1)
    ['c', 'd']
    """
    k = num_selected(len(client_ids), fraction, min_clients)
    picked = rng.choice(len(client_ids), size=k, replace=False)
    return [client_ids[i] for i in sorted(int(p) for p in picked)]
