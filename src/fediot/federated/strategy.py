"""Federated strategies: thin classes that hold server state and call the pure aggregation functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from fediot.errors import ConfigError
from fediot.federated.aggregate import (
    aggregate_bulyan,
    aggregate_fedavg,
    aggregate_krum,
    aggregate_median,
    aggregate_norm_bounded,
    aggregate_trimmed_mean,
    fedadam_update,
    fedavgm_update,
    fedyogi_update,
)
from fediot.federated.types import ClientUpdate, Weights

__all__ = [
    "STRATEGY_NAMES",
    "Bulyan",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedMedian",
    "FedProx",
    "FedTrimmedAvg",
    "FedYogi",
    "Krum",
    "MultiKrum",
    "NormBoundedAvg",
    "Strategy",
    "make_strategy",
]


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


def _pairs(updates: Sequence[ClientUpdate]) -> list[tuple[Weights, int]]:
    return [(u.weights, u.num_examples) for u in updates]


class _Stateless:
    """Mixin of the strategies without server state."""

    __slots__ = ()

    def state_dict(self) -> dict[str, Any]:
        """Return the server state: none."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore nothing: the strategy has no server state."""
        del state


@dataclass(slots=True)
class FedProx(_Stateless):
    """FedProx (Li et al. 2020): FedAvg on the server; each client adds ``mu/2 ||w - w_global||^2``.

    The server side is FedAvg; the proximal term is sent to the clients as ``proximal-mu`` in every
    training config (:func:`fediot.federated.settings.fit_config`), as Flower's ``FedProx`` does.

    Parameters
    ----------
    proximal_mu : float
        ``mu`` (>= 0; 0 is FedAvg).
    """

    proximal_mu: float = 0.01
    name: str = field(default="fedprox", init=False)

    def __post_init__(self) -> None:
        if not self.proximal_mu >= 0:
            raise ConfigError(f"proximal_mu must be >= 0, got {self.proximal_mu}")

    def aggregate(self, server_round: int, current: Weights, updates: Sequence[ClientUpdate]) -> Weights:
        """Return the FedAvg of ``updates``."""
        del server_round, current
        return aggregate_fedavg(_pairs(updates))


@dataclass(slots=True)
class FedMedian(_Stateless):
    """Coordinate-wise median of the client models (Flower's ``FedMedian``)."""

    name: str = field(default="median", init=False)

    def aggregate(self, server_round: int, current: Weights, updates: Sequence[ClientUpdate]) -> Weights:
        """Return the per-coordinate median of the updates."""
        del server_round, current
        return aggregate_median(_pairs(updates))


@dataclass(slots=True)
class FedTrimmedAvg(_Stateless):
    """Coordinate-wise trimmed mean (Flower's ``FedTrimmedAvg``).

    Parameters
    ----------
    trimmed_fraction : float
        Cut from each tail, in [0, 0.5) (Flower's ``beta``).
    """

    trimmed_fraction: float = 0.2
    name: str = field(default="trimmed-mean", init=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.trimmed_fraction < 0.5:
            raise ConfigError(f"trimmed_fraction must be in [0, 0.5), got {self.trimmed_fraction}")

    def aggregate(self, server_round: int, current: Weights, updates: Sequence[ClientUpdate]) -> Weights:
        """Return the per-coordinate trimmed mean of the updates."""
        del server_round, current
        return aggregate_trimmed_mean(_pairs(updates), self.trimmed_fraction)


@dataclass(slots=True)
class Krum(_Stateless):
    """Krum (Blanchard et al. 2017; Flower's ``Krum``): the one most central reply.

    Parameters
    ----------
    num_malicious : int
        ``f``, the hostile clients it is sized for (>= 0).
    """

    num_malicious: int = 0
    name: str = field(default="krum", init=False)

    def __post_init__(self) -> None:
        if self.num_malicious < 0:
            raise ConfigError(f"num_malicious must be >= 0, got {self.num_malicious}")

    def aggregate(self, server_round: int, current: Weights, updates: Sequence[ClientUpdate]) -> Weights:
        """Return the reply with the lowest Krum score."""
        del server_round, current
        return aggregate_krum(_pairs(updates), self.num_malicious, 1)


@dataclass(slots=True)
class MultiKrum(_Stateless):
    """Multi-Krum (Flower's ``MultiKrum``): FedAvg of the ``m`` replies with the best Krum scores.

    Parameters
    ----------
    num_malicious : int
        ``f`` (>= 0).
    num_to_select : int
        ``m``; 0 means ``n - f`` of the round's ``n`` replies (at least 1).
    """

    num_malicious: int = 0
    num_to_select: int = 0
    name: str = field(default="multi-krum", init=False)

    def __post_init__(self) -> None:
        if self.num_malicious < 0:
            raise ConfigError(f"num_malicious must be >= 0, got {self.num_malicious}")
        if self.num_to_select < 0:
            raise ConfigError(f"num_to_select must be >= 0, got {self.num_to_select}")

    def aggregate(self, server_round: int, current: Weights, updates: Sequence[ClientUpdate]) -> Weights:
        """Return the FedAvg of the ``m`` most central replies."""
        del server_round, current
        m = self.num_to_select or max(1, len(updates) - self.num_malicious)
        return aggregate_krum(_pairs(updates), self.num_malicious, min(m, len(updates)))


@dataclass(slots=True)
class Bulyan(_Stateless):
    """Bulyan (El Mhamdi et al. 2018; Flower's ``Bulyan``); needs ``4 f + 3`` replies per round.

    Parameters
    ----------
    num_malicious : int
        ``f`` (>= 0).
    """

    num_malicious: int = 0
    name: str = field(default="bulyan", init=False)

    def __post_init__(self) -> None:
        if self.num_malicious < 0:
            raise ConfigError(f"num_malicious must be >= 0, got {self.num_malicious}")

    def aggregate(self, server_round: int, current: Weights, updates: Sequence[ClientUpdate]) -> Weights:
        """Return the Bulyan aggregate (raises ``AggregationError`` below ``4 f + 3`` replies)."""
        del server_round, current
        return aggregate_bulyan(_pairs(updates), self.num_malicious)


@dataclass(slots=True)
class NormBoundedAvg(_Stateless):
    """FedAvg of the updates each clipped to L2 norm ``clip_norm`` (norm bounding, Sun et al. 2019).

    Parameters
    ----------
    clip_norm : float
        Largest L2 norm of one client's update ``w_k - w`` over all layers (> 0).
    """

    clip_norm: float = 1.0
    name: str = field(default="norm-bounded", init=False)

    def __post_init__(self) -> None:
        if not self.clip_norm > 0:
            raise ConfigError(f"clip_norm must be > 0, got {self.clip_norm}")

    def aggregate(self, server_round: int, current: Weights, updates: Sequence[ClientUpdate]) -> Weights:
        """Return the FedAvg of the clipped updates."""
        del server_round
        return aggregate_norm_bounded(current, _pairs(updates), self.clip_norm)


@dataclass(slots=True)
class _FedOpt:
    """Shared state of the adaptive server optimisers: first and second moments of the FedAvg step."""

    eta: float = 0.01
    beta_1: float = 0.9
    beta_2: float = 0.99
    tau: float = 1e-3
    moments_: tuple[Weights, Weights] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.eta > 0:
            raise ConfigError(f"server_optimizer_lr must be > 0, got {self.eta}")
        if not 0.0 <= self.beta_1 < 1.0:
            raise ConfigError(f"server_beta_1 must be in [0, 1), got {self.beta_1}")
        if not 0.0 <= self.beta_2 < 1.0:
            raise ConfigError(f"server_beta_2 must be in [0, 1), got {self.beta_2}")
        if not self.tau > 0:
            raise ConfigError(f"server_tau must be > 0, got {self.tau}")

    def state_dict(self) -> dict[str, Any]:
        """Return the moments ``m`` and ``v`` (None before the first round)."""
        if self.moments_ is None:
            return {"m": None, "v": None}
        return {"m": [a.copy() for a in self.moments_[0]], "v": [a.copy() for a in self.moments_[1]]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the moments."""
        m, v = state.get("m"), state.get("v")
        if m is None or v is None:
            self.moments_ = None
        else:
            self.moments_ = (
                [np.asarray(a, dtype=np.float32) for a in m],
                [np.asarray(a, dtype=np.float32) for a in v],
            )


@dataclass(slots=True)
class FedAdam(_FedOpt):
    """FedAdam (Reddi et al. 2021; Flower's ``FedAdam``): Adam on the FedAvg pseudo-gradient.

    Parameters
    ----------
    eta, beta_1, beta_2, tau : float
        Server learning rate, moment decays and the adaptivity constant.
    """

    name: str = field(default="fedadam", init=False)

    def aggregate(self, server_round: int, current: Weights, updates: Sequence[ClientUpdate]) -> Weights:
        """Average the updates, then take one FedAdam step from ``current``."""
        averaged = aggregate_fedavg(_pairs(updates))
        new, self.moments_ = fedadam_update(
            current, averaged, self.moments_, server_round=server_round,
            eta=self.eta, beta_1=self.beta_1, beta_2=self.beta_2, tau=self.tau,
        )  # fmt: skip
        return new


@dataclass(slots=True)
class FedYogi(_FedOpt):
    """FedYogi (Reddi et al. 2021; Flower's ``FedYogi``): Yogi on the FedAvg pseudo-gradient.

    Parameters
    ----------
    eta, beta_1, beta_2, tau : float
        Server learning rate, moment decays and the adaptivity constant.
    """

    name: str = field(default="fedyogi", init=False)

    def aggregate(self, server_round: int, current: Weights, updates: Sequence[ClientUpdate]) -> Weights:
        """Average the updates, then take one FedYogi step from ``current``."""
        del server_round
        averaged = aggregate_fedavg(_pairs(updates))
        new, self.moments_ = fedyogi_update(
            current, averaged, self.moments_,
            eta=self.eta, beta_1=self.beta_1, beta_2=self.beta_2, tau=self.tau,
        )  # fmt: skip
        return new


STRATEGY_NAMES = (
    "fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi",
    "median", "trimmed-mean", "krum", "multi-krum", "bulyan", "norm-bounded",
)  # fmt: skip
"""Every strategy :func:`make_strategy` builds (``federated.strategy``)."""


def make_strategy(name: str, **params: Any) -> Strategy:
    """Build a strategy by name (one of :data:`STRATEGY_NAMES`) with its parameters.

    Parameters
    ----------
    name : str
    **params
        ``server_learning_rate``, ``server_momentum`` (fedavgm); ``proximal_mu`` (fedprox); ``eta``,
        ``beta_1``, ``beta_2``, ``tau`` (fedadam, fedyogi); ``trimmed_fraction`` (trimmed-mean);
        ``num_malicious`` (krum, multi-krum, bulyan); ``num_to_select`` (multi-krum); ``clip_norm``
        (norm-bounded). Parameters the strategy does not use are ignored.

    Examples
    --------
    >>> make_strategy("fedavgm", server_momentum=0.5).server_momentum
    0.5
    >>> make_strategy("krum", num_malicious=2, clip_norm=3.0).num_malicious
    2
    """
    builders: dict[str, tuple[type[Any], tuple[str, ...]]] = {
        "fedavg": (FedAvg, ()),
        "fedavgm": (FedAvgM, ("server_learning_rate", "server_momentum")),
        "fedprox": (FedProx, ("proximal_mu",)),
        "fedadam": (FedAdam, ("eta", "beta_1", "beta_2", "tau")),
        "fedyogi": (FedYogi, ("eta", "beta_1", "beta_2", "tau")),
        "median": (FedMedian, ()),
        "trimmed-mean": (FedTrimmedAvg, ("trimmed_fraction",)),
        "krum": (Krum, ("num_malicious",)),
        "multi-krum": (MultiKrum, ("num_malicious", "num_to_select")),
        "bulyan": (Bulyan, ("num_malicious",)),
        "norm-bounded": (NormBoundedAvg, ("clip_norm",)),
    }
    key = name.lower()
    if key not in builders:
        raise ConfigError(f"unknown strategy {name!r}; expected one of: {', '.join(STRATEGY_NAMES)}")
    cls, accepted = builders[key]
    strategy: Strategy = cls(**{k: v for k, v in params.items() if k in accepted})
    return strategy
