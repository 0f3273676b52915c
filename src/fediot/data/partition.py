"""Split row indices among federated clients: contiguous, IID, Dirichlet label skew, or by group.

Every partitioner is a pure function returning a list of sorted ``int64`` index arrays that are disjoint and
together cover every row exactly once. Randomness comes from an explicit seed or ``np.random.Generator``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fediot.errors import ConfigError

__all__ = ["partition_by_group", "partition_contiguous", "partition_dirichlet", "partition_iid"]

Seed = int | np.random.Generator


def _rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check(n: int, num_parts: int) -> None:
    if num_parts < 1:
        raise ConfigError(f"num_parts must be >= 1, got {num_parts}")
    if n < 0:
        raise ConfigError(f"n must be >= 0, got {n}")


def partition_contiguous(n: int, num_parts: int) -> list[NDArray[np.int64]]:
    """Split ``range(n)`` into ``num_parts`` consecutive blocks whose sizes differ by at most one.

    The first ``n % num_parts`` blocks get the extra row (the seed paper's "first half / second half").

    Returns
    -------
    list of ndarray of shape (n_k,), int64
        One index array per part, in order.

    Examples
    --------
    >>> [p.tolist() for p in partition_contiguous(5, 2)]
    [[0, 1, 2], [3, 4]]
    """
    _check(n, num_parts)
    return [part.astype(np.int64) for part in np.array_split(np.arange(n, dtype=np.int64), num_parts)]


def partition_iid(n: int, num_parts: int, rng: Seed) -> list[NDArray[np.int64]]:
    """Shuffle ``range(n)`` and deal it into ``num_parts`` parts whose sizes differ by at most one.

    Parameters
    ----------
    n : int
        Number of rows.
    num_parts : int
        Number of clients.
    rng : int or numpy.random.Generator
        Seed or generator.

    Returns
    -------
    list of ndarray of shape (n_k,), int64
        Each part's indices, sorted (rows keep their original relative order within a part).
    """
    _check(n, num_parts)
    order = _rng(rng).permutation(n).astype(np.int64)
    return [np.sort(part) for part in np.array_split(order, num_parts)]


def partition_dirichlet(
    labels: ArrayLike,
    num_parts: int,
    alpha: float,
    rng: Seed,
    *,
    min_size: int = 1,
    max_tries: int = 1000,
) -> list[NDArray[np.int64]]:
    """Label-skewed split: each class is divided among parts in proportions drawn from Dir(alpha).

    The usual non-IID benchmark split (Hsu et al. 2019): small ``alpha`` gives each part few classes, large
    ``alpha`` approaches IID. Draws are repeated until every part has at least ``min_size`` rows.

    Parameters
    ----------
    labels : array_like of shape (n_samples,)
        Class of each row (any hashable values numpy can sort).
    num_parts : int
        Number of clients.
    alpha : float
        Dirichlet concentration, > 0.
    rng : int or numpy.random.Generator
        Seed or generator.
    min_size : int
        Minimum rows per part (``min_size * num_parts <= n_samples`` is required).
    max_tries : int
        Give up after this many draws.

    Returns
    -------
    list of ndarray of shape (n_k,), int64
        Each part's indices, sorted.

    Raises
    ------
    ConfigError
        Invalid arguments, or no draw met ``min_size`` within ``max_tries``.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ConfigError(f"labels must be one-dimensional, got shape {y.shape}")
    n = y.shape[0]
    _check(n, num_parts)
    if not alpha > 0:
        raise ConfigError(f"alpha must be > 0, got {alpha}")
    if min_size < 0 or min_size * num_parts > n:
        raise ConfigError(f"min_size={min_size} is impossible for {n} rows and {num_parts} parts")
    gen = _rng(rng)
    _, classes = np.unique(y, return_inverse=True)
    by_class = [np.flatnonzero(classes == c) for c in range(int(classes.max(initial=-1)) + 1)]
    for _ in range(max_tries):
        parts: list[list[NDArray[np.int64]]] = [[] for _ in range(num_parts)]
        for members in by_class:
            shuffled = gen.permutation(members).astype(np.int64)
            proportions = gen.dirichlet(np.full(num_parts, alpha))
            cuts = (np.cumsum(proportions)[:-1] * shuffled.size).astype(np.int64)
            for k, piece in enumerate(np.split(shuffled, cuts)):
                parts[k].append(piece)
        out = [np.sort(np.concatenate(p)) if p else np.empty(0, dtype=np.int64) for p in parts]
        if min(part.size for part in out) >= min_size:
            return out
    raise ConfigError(
        f"no Dirichlet(alpha={alpha}) split gave every one of {num_parts} parts >= {min_size} rows "
        f"in {max_tries} tries; raise alpha or lower min_size"
    )


def partition_by_group(groups: ArrayLike) -> list[NDArray[np.int64]]:
    """One part per distinct group value (e.g. device name), in sorted group order.

    Parameters
    ----------
    groups : array_like of shape (n_samples,)
        Group of each row.

    Returns
    -------
    list of ndarray of shape (n_k,), int64
        Indices of each group's rows, in their original order; ``np.unique(groups)`` gives the group of
        each part.

    Examples
    --------
    >>> [p.tolist() for p in partition_by_group(["b", "a", "b"])]
    [[1], [0, 2]]
    """
    g = np.asarray(groups)
    if g.ndim != 1:
        raise ConfigError(f"groups must be one-dimensional, got shape {g.shape}")
    if g.size == 0:
        return []
    _, inverse = np.unique(g, return_inverse=True)
    order = np.argsort(inverse, kind="stable").astype(np.int64)
    counts = np.bincount(inverse)
    return list(np.split(order, np.cumsum(counts)[:-1]))
