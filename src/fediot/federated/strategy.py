"""Federated strategies: thin classes that hold server state and call the pure aggregation functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from fediot.errors import ConfigError
from fediot.federated.aggregate import aggregate_fedavg, fedavgm_update
from fediot.federated.types import ClientUpdate, Weights

__all__ = ["FedAvg", "FedAvgM", "Strategy", "make_strategy"]


class Strategy(Protocol):
    """What the round loop needs from a strategy: fold client updates into new global weights."""

    name: str

    def aggregate(self, server_round: int, current: Weights, updates: Sequence[ClientUpdate]) -> Weights:
        """Return the new global weights after round ``server_round`` (rounds start at 1)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Return the server state to checkpoint (arrays as lists of ndarrays)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state returned by :meth:`state_dict`."""
        ...


@dataclass(slots=True)
class FedAvg:
    """FedAvg: the global model is the example-weighted mean of the client models."""

    name: str = field(default="fedavg", init=False)

    def aggregate(self, server_round: int, current: Weights, updates: Sequence[ClientUpdate]) -> Weights:
        """Return ``sum_k n_k w_k / sum_k n_k`` over ``updates``."""
        del server_round, current
        return aggregate_fedavg([(u.weights, u.num_examples) for u in updates])

    def state_dict(self) -> dict[str, Any]:
        """FedAvg has no server state."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """FedAvg has no server state."""
        del state


@dataclass(slots=True)
class FedAvgM:
    """FedAvg with server momentum (Hsu et al. 2019).

    Parameters
    ----------
    server_learning_rate : float
        ``eta`` in ``w <- w - eta * v``.
    server_momentum : float
        ``beta`` in ``v <- beta * v + d``; 0 with ``eta = 1`` is FedAvg.
    """

    server_learning_rate: float = 1.0
    server_momentum: float = 0.9
    name: str = field(default="fedavgm", init=False)
    momentum_: Weights | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.server_learning_rate > 0:
            raise ConfigError(f"server_learning_rate must be > 0, got {self.server_learning_rate}")
        if not 0.0 <= self.server_momentum < 1.0:
            raise ConfigError(f"server_momentum must be in [0, 1), got {self.server_momentum}")

    def aggregate(self, server_round: int, current: Weights, updates: Sequence[ClientUpdate]) -> Weights:
        """Average the updates, then take one momentum step from ``current``."""
        del server_round
        averaged = aggregate_fedavg([(u.weights, u.num_examples) for u in updates])
        new_weights, self.momentum_ = fedavgm_update(
            current,
            averaged,
            self.momentum_,
            server_learning_rate=self.server_learning_rate,
            server_momentum=self.server_momentum,
        )
        return new_weights

    def state_dict(self) -> dict[str, Any]:
        """Return the momentum buffer (None before the first round)."""
        return {"momentum": None if self.momentum_ is None else [m.copy() for m in self.momentum_]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the momentum buffer."""
        momentum = state.get("momentum")
        self.momentum_ = None if momentum is None else [np.asarray(m, dtype=np.float32) for m in momentum]


def make_strategy(name: str, *, server_learning_rate: float = 1.0, server_momentum: float = 0.9) -> Strategy:
    """Build a strategy by name (``fedavg`` or ``fedavgm``).

    Examples
    --------
    >>> make_strategy("fedavgm", server_momentum=0.5).server_momentum
    0.5
    """
    key = name.lower()
    if key == "fedavg":
        return FedAvg()
    if key == "fedavgm":
        return FedAvgM(server_learning_rate=server_learning_rate, server_momentum=server_momentum)
    raise ConfigError(f"unknown strategy {name!r}; expected one of: fedavg, fedavgm")
