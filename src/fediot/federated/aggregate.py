"""Pure aggregation functions: no state, no I/O, just the math over client replies."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fediot.federated.types import Weights

__all__ = ["aggregate_fedavg", "fedavgm_update"]


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
