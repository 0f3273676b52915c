"""The transport-agnostic types exchanged between a federated server and its clients."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple, TypeAlias

from fediot.models.weights import Weights

__all__ = ["ClientUpdate", "Config", "Metrics", "Scalar", "Weights", "weights_nbytes"]

Scalar: TypeAlias = bool | int | float | str
"""A value that may cross the network in a config or a metrics record."""

Config: TypeAlias = Mapping[str, Scalar]
"""Instructions from the server for one client call (e.g. ``{"local-epochs": 1}``)."""

Metrics: TypeAlias = dict[str, Scalar]
"""Scalar results a client reports (never raw rows)."""



class ClientUpdate(NamedTuple):
    """What a client returns from ``fit``: ``(weights, num_examples, metrics)``.

    Attributes
    ----------
    weights : Weights
        The locally trained parameters.
    num_examples : int
        How many training examples produced them (the FedAvg weight).
    metrics : Metrics
        Scalar training metrics (e.g. ``train_loss``).
    """

    weights: Weights
    num_examples: int
    metrics: Metrics


def weights_nbytes(weights: Weights) -> int:
    """Return the payload size of ``weights`` in bytes (what crosses the network, without framing).

    Examples
    --------
    >>> import numpy as np
    >>> weights_nbytes([np.zeros((2, 3), np.float32), np.zeros(3, np.float32)])
    36
    """
    return int(sum(w.nbytes for w in weights))
