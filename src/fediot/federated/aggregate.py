"""Pure aggregation functions: no state, no I/O, just the math over client replies."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from fediot.errors import ConfigError, FediotError
from fediot.federated.types import Weights

__all__ = [
    "AggregationError",
    "aggregate_bulyan",
    "aggregate_fedavg",
    "aggregate_krum",
    "aggregate_median",
    "aggregate_norm_bounded",
    "aggregate_trimmed_mean",
    "clip_update",
    "fedadam_update",
    "fedavgm_update",
    "fedyogi_update",
    "krum_scores",
    "select_krum",
    "trimmed_mean",
]


def _check_replies(replies: Sequence[tuple[Weights, int]]) -> None:
    if not replies:
        raise ValueError("cannot aggregate zero client replies")
    shapes = [w.shape for w in replies[0][0]]
    for k, (weights, num_examples) in enumerate(replies):
        if num_examples < 0:
            raise ValueError(f"reply {k}: num_examples must be >= 0, got {num_examples}")
        if [w.shape for w in weights] != shapes:
            raise ValueError(f"reply {k}: weight shapes {[w.shape for w in weights]} differ from {shapes}")
    if sum(n for _, n in replies) <= 0:
        raise ValueError("cannot aggregate: the replies hold zero examples in total")


def aggregate_fedavg(replies: Sequence[tuple[Weights, int]]) -> Weights:
    """Average client weights, each weighted by its number of examples (FedAvg, McMahan et al. 2017).

    ``w = sum_k n_k w_k / sum_k n_k``, accumulated in float64 and returned as float32.

    Parameters
    ----------
    replies : sequence of (Weights, int)
        One ``(weights, num_examples)`` pair per client; all weights have the same shapes.

    Returns
    -------
    Weights
        The weighted mean, layer by layer.

    Examples
    --------
    >>> import numpy as np
    >>> a = [np.array([0.0, 2.0], np.float32)]
    >>> b = [np.array([4.0, 2.0], np.float32)]
    >>> aggregate_fedavg([(a, 1), (b, 3)])[0].tolist()
    [3.0, 2.0]
    """
    _check_replies(replies)
    total = float(sum(n for _, n in replies))
    out: Weights = []
    for layer in range(len(replies[0][0])):
        acc = np.zeros(replies[0][0][layer].shape, dtype=np.float64)
        for weights, num_examples in replies:
            acc += (num_examples / total) * weights[layer].astype(np.float64)
        out.append(acc.astype(np.float32))
    return out


def fedavgm_update(
    current: Weights,
    averaged: Weights,
    momentum: Weights | None,
    *,
    server_learning_rate: float,
    server_momentum: float,
) -> tuple[Weights, Weights]:
    """One FedAvgM server step (Hsu et al. 2019).

    With the pseudo-gradient ``d = current - averaged``: ``v <- beta * v + d`` (``v = d`` on the first
    round) and ``w <- current - eta * v``. With ``beta = 0`` and ``eta = 1`` this is FedAvg.

    Parameters
    ----------
    current : Weights
        The global weights the clients started from.
    averaged : Weights
        The FedAvg mean of the client replies.
    momentum : Weights or None
        The server momentum buffer ``v`` (None before the first step).
    server_learning_rate : float
        ``eta``.
    server_momentum : float
        ``beta``.

    Returns
    -------
    new_weights, new_momentum : tuple of Weights
    """
    if len(current) != len(averaged):
        raise ValueError(f"current has {len(current)} layers, averaged has {len(averaged)}")
    new_weights: Weights = []
    new_momentum: Weights = []
    for k, (w, a) in enumerate(zip(current, averaged, strict=True)):
        d = w.astype(np.float64) - a.astype(np.float64)
        if momentum is not None and server_momentum != 0.0:
            v = server_momentum * momentum[k].astype(np.float64) + d
        else:
            v = d
        new_momentum.append(v.astype(np.float32))
        new_weights.append((w.astype(np.float64) - server_learning_rate * v).astype(np.float32))
    return new_weights, new_momentum


class AggregationError(FediotError, ValueError):
    """A robust rule cannot aggregate these replies (e.g. Bulyan with fewer than ``4 f + 3`` of them)."""


def _stack(replies: Sequence[tuple[Weights, int]], layer: int) -> NDArray[np.float64]:
    return np.stack([w[layer].astype(np.float64) for w, _ in replies])


def _flat(weights: Weights) -> NDArray[np.float64]:
    return np.concatenate([w.astype(np.float64).ravel() for w in weights])


def trimmed_mean(stacked: NDArray[np.float64], fraction: float) -> NDArray[np.float64]:
    """Coordinate-wise trimmed mean over axis 0: drop the ``int(fraction * n)`` lowest and highest values.

    Parameters
    ----------
    stacked : ndarray of shape (n, ...)
        One row per client.
    fraction : float
        Cut from each tail, in [0, 0.5).

    Examples
    --------
    >>> trimmed_mean(np.array([[0.0], [1.0], [2.0], [100.0]]), 0.25).tolist()
    [1.5]
    """
    if not 0.0 <= fraction < 0.5:
        raise ConfigError(f"trimmed fraction must be in [0, 0.5), got {fraction}")
    n = stacked.shape[0]
    cut = int(fraction * n)
    ordered = np.sort(stacked, axis=0)
    out: NDArray[np.float64] = ordered[cut : n - cut].mean(axis=0)
    return out


def aggregate_median(replies: Sequence[tuple[Weights, int]]) -> Weights:
    """Coordinate-wise median of the client weights (unweighted; Yin et al. 2018, Flower's ``FedMedian``).

    Each coordinate lies within the clients' per-coordinate [min, max]; fewer than half the clients
    cannot move it outside the range of the others' values.

    Examples
    --------
    >>> w = [([np.array([v], np.float32)], 1) for v in (0.0, 1.0, 1e6)]
    >>> aggregate_median(w)[0].tolist()
    [1.0]
    """
    _check_replies(replies)
    return [np.median(_stack(replies, i), axis=0).astype(np.float32) for i in range(len(replies[0][0]))]


def aggregate_trimmed_mean(replies: Sequence[tuple[Weights, int]], fraction: float) -> Weights:
    """Coordinate-wise trimmed mean (unweighted; Yin et al. 2018, Flower's ``FedTrimmedAvg`` with ``beta``).

    Per coordinate the ``int(fraction * n)`` lowest and highest client values are dropped and the rest
    averaged: up to that many hostile clients per tail cannot move it outside the others' range.
    """
    _check_replies(replies)
    return [trimmed_mean(_stack(replies, i), fraction).astype(np.float32) for i in range(len(replies[0][0]))]


def krum_scores(replies: Sequence[tuple[Weights, int]], num_malicious: int) -> NDArray[np.float64]:
    """Krum score of each reply: the sum of squared distances to its ``max(1, n - f - 2)`` nearest others.

    Parameters
    ----------
    replies : sequence of (Weights, int)
    num_malicious : int
        ``f``, the number of hostile clients Krum is sized for.

    Returns
    -------
    ndarray of shape (n,)
        Lower = more central (Blanchard et al. 2017).
    """
    _check_replies(replies)
    if num_malicious < 0:
        raise ConfigError(f"num_malicious must be >= 0, got {num_malicious}")
    flat = np.stack([_flat(w) for w, _ in replies])
    n = flat.shape[0]
    sq = (flat * flat).sum(axis=1)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2.0 * flat @ flat.T, 0.0)
    np.fill_diagonal(dist, np.inf)  # a reply is never its own neighbour
    closest = max(1, n - num_malicious - 2)
    if n == 1:
        return np.zeros(1)
    nearest = np.sort(dist, axis=1)[:, : min(closest, n - 1)]
    out: NDArray[np.float64] = nearest.sum(axis=1)
    return out


def select_krum(replies: Sequence[tuple[Weights, int]], num_malicious: int, num_to_select: int) -> list[int]:
    """Return the indices of the ``num_to_select`` lowest Krum scores, best first (ties: input order)."""
    if num_to_select < 1:
        raise ConfigError(f"num_to_select must be >= 1, got {num_to_select}")
    scores = krum_scores(replies, num_malicious)
    return [int(i) for i in np.argsort(scores, kind="stable")[:num_to_select]]


def aggregate_krum(
    replies: Sequence[tuple[Weights, int]], num_malicious: int, num_to_select: int = 1
) -> Weights:
    """Krum (``num_to_select = 1``) or Multi-Krum: the FedAvg of the replies with the best Krum scores.

    As Flower's ``Krum`` / ``MultiKrum``: the selected replies are averaged weighted by their example
    counts. Krum tolerates ``f`` hostile replies when ``n > 2 f + 2``.

    Examples
    --------
    >>> good = [([np.array([v], np.float32)], 1) for v in (0.0, 0.1, 0.2, 0.3)]
    >>> aggregate_krum([*good, ([np.array([50.0], np.float32)], 1)], num_malicious=1)[0].tolist()
    [0.10000000149011612]
    """
    chosen = select_krum(replies, num_malicious, num_to_select)
    return aggregate_fedavg([replies[i] for i in chosen])


def aggregate_bulyan(replies: Sequence[tuple[Weights, int]], num_malicious: int) -> Weights:
    """Bulyan (El Mhamdi et al. 2018) as Flower's ``Bulyan`` computes it.

    Multi-Krum selects ``theta = n - 2 f`` replies; per coordinate, the ``beta = theta - 2 f`` selected
    values closest to their median are averaged (unweighted).

    Raises
    ------
    AggregationError
        If ``n < 4 f + 3``.
    """
    _check_replies(replies)
    n, f = len(replies), num_malicious
    if n < 4 * f + 3:
        raise AggregationError(
            f"Bulyan with federated.num_malicious={f} needs at least {4 * f + 3} replies per round "
            f"(4 f + 3), got {n}"
        )
    theta = n - 2 * f
    beta = theta - 2 * f
    chosen = [replies[i] for i in select_krum(replies, f, theta)]
    out: Weights = []
    for layer in range(len(replies[0][0])):
        stacked = _stack(chosen, layer)
        median = np.median(stacked, axis=0)
        order = np.argsort(np.abs(stacked - median), axis=0, kind="stable")[:beta]
        out.append(np.take_along_axis(stacked, order, axis=0).mean(axis=0).astype(np.float32))
    return out


def clip_update(current: Weights, weights: Weights, clip_norm: float) -> Weights:
    """Return ``current + d * min(1, clip_norm / ||d||)`` for ``d = weights - current`` (all layers)."""
    if not clip_norm > 0:
        raise ConfigError(f"clip_norm must be > 0, got {clip_norm}")
    deltas = [w.astype(np.float64) - c.astype(np.float64) for w, c in zip(weights, current, strict=True)]
    norm = math.sqrt(sum(float((d * d).sum()) for d in deltas))
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    return [
        (c.astype(np.float64) + scale * d).astype(np.float32) for c, d in zip(current, deltas, strict=True)
    ]


def aggregate_norm_bounded(
    current: Weights, replies: Sequence[tuple[Weights, int]], clip_norm: float
) -> Weights:
    """FedAvg of the updates, each clipped to L2 norm ``clip_norm`` first (norm bounding, Sun et al. 2019).

    Equal to Flower's ``DifferentialPrivacyServerSideFixedClipping`` over ``FedAvg`` without noise. One
    client moves the global model by at most ``clip_norm * n_k / sum_j n_j``.
    """
    _check_replies(replies)
    return aggregate_fedavg([(clip_update(current, w, clip_norm), n) for w, n in replies])


def fedadam_update(
    current: Weights,
    averaged: Weights,
    state: tuple[Weights, Weights] | None,
    *,
    server_round: int,
    eta: float,
    beta_1: float,
    beta_2: float,
    tau: float,
) -> tuple[Weights, tuple[Weights, Weights]]:
    """One FedAdam server step (Reddi et al. 2021) as Flower 1.41's ``FedAdam`` computes it.

    With ``d = averaged - current``: ``m <- b1 m + (1 - b1) d``, ``v <- b2 v + (1 - b2) d^2`` (both 0
    before round 1) and ``w <- current + eta_t m / (sqrt(v) + tau)`` with Flower's bias correction
    ``eta_t = eta sqrt(1 - b2^(t+1)) / (1 - b1^(t+1))`` for round ``t``.

    Returns
    -------
    new_weights, (m, v)
    """
    m, v = _moments(current, state)
    d = _delta(current, averaged)
    m = [beta_1 * mk + (1.0 - beta_1) * dk for mk, dk in zip(m, d, strict=True)]
    v = [beta_2 * vk + (1.0 - beta_2) * np.square(dk) for vk, dk in zip(v, d, strict=True)]
    t = server_round + 1.0
    eta_t = eta * math.sqrt(1.0 - beta_2**t) / (1.0 - beta_1**t)
    return _opt_step(current, m, v, eta_t, tau)


def fedyogi_update(
    current: Weights,
    averaged: Weights,
    state: tuple[Weights, Weights] | None,
    *,
    eta: float,
    beta_1: float,
    beta_2: float,
    tau: float,
) -> tuple[Weights, tuple[Weights, Weights]]:
    """One FedYogi server step (Reddi et al. 2021) as Flower 1.41's ``FedYogi`` computes it.

    As FedAdam but ``v <- v - (1 - b2) d^2 sign(v - d^2)`` and no bias correction.
    """
    m, v = _moments(current, state)
    d = _delta(current, averaged)
    m = [beta_1 * mk + (1.0 - beta_1) * dk for mk, dk in zip(m, d, strict=True)]
    sq = [np.square(dk) for dk in d]
    v = [vk - (1.0 - beta_2) * s * np.sign(vk - s) for vk, s in zip(v, sq, strict=True)]
    return _opt_step(current, m, v, eta, tau)


_F64 = list[NDArray[np.float64]]


def _moments(current: Weights, state: tuple[Weights, Weights] | None) -> tuple[_F64, _F64]:
    if state is None:
        zeros = [np.zeros(c.shape, np.float64) for c in current]
        return zeros, [z.copy() for z in zeros]
    return [a.astype(np.float64) for a in state[0]], [a.astype(np.float64) for a in state[1]]


def _delta(current: Weights, averaged: Weights) -> _F64:
    if len(current) != len(averaged):
        raise ValueError(f"current has {len(current)} layers, averaged has {len(averaged)}")
    return [a.astype(np.float64) - c.astype(np.float64) for c, a in zip(current, averaged, strict=True)]


def _opt_step(
    current: Weights, m: _F64, v: _F64, eta: float, tau: float
) -> tuple[Weights, tuple[Weights, Weights]]:
    new = [
        (c.astype(np.float64) + eta * mk / (np.sqrt(vk) + tau)).astype(np.float32)
        for c, mk, vk in zip(current, m, v, strict=True)
    ]
    return new, ([mk.astype(np.float32) for mk in m], [vk.astype(np.float32) for vk in v])
