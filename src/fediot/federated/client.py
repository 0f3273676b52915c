"""The client side of a round: the transport-agnostic ``fit`` contract and local-training clients."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from torch import nn

from fediot.federated.types import ClientUpdate, Config, Weights
from fediot.models.train import TrainConfig, train_classifier
from fediot.models.weights import get_weights, set_weights

__all__ = ["ClassifierClient", "Client", "client_seed", "train_config_from"]


@runtime_checkable
class Client(Protocol):
    """A federated client: receives global weights and a config, returns a :class:`ClientUpdate`.

    The same object runs under the in-process runtime (``fediot.sim``) and behind Flower's ClientApp.
    """

    client_id: str

    def fit(self, weights: Weights, config: Config) -> ClientUpdate:
        """Train locally starting from ``weights``; return ``(weights, num_examples, metrics)``."""
        ...


def client_seed(seed: int, client_id: str, server_round: int) -> int:
    """Derive the seed of one client's local training in one round from the run's ``seed``.

    Independent of which other clients were selected, so a client's update depends only on
    ``(seed, client_id, server_round)`` and the weights it receives.

    Examples
    --------
    >>> client_seed(0, "gw1", 1) == client_seed(0, "gw1", 1)
    True
    >>> client_seed(0, "gw1", 1) != client_seed(0, "gw1", 2)
    True
    """
    ss = np.random.SeedSequence([seed, zlib.crc32(client_id.encode()), server_round])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def train_config_from(config: Config, default: TrainConfig) -> TrainConfig:
    """Override ``default`` with the kebab-case keys the server sent (``local-epochs``, ``lr``, ...)."""
    optimizer = str(config.get("optimizer", default.optimizer))
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    return TrainConfig(
        epochs=int(config.get("local-epochs", default.epochs)),
        batch_size=int(config.get("batch-size", default.batch_size)),
        lr=float(config.get("lr", default.lr)),
        optimizer="adam" if optimizer == "adam" else "sgd",
        momentum=float(config.get("momentum", default.momentum)),
        weight_decay=float(config.get("weight-decay", default.weight_decay)),
    )


class ClassifierClient:
    """A client that trains a classifier on its local labelled rows.

    Parameters
    ----------
    client_id : str
    model_factory : callable
        Builds a fresh module of the global architecture.
    x : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    train_config : TrainConfig
        Defaults; the server's config may override them per round.
    seed : int
        Run seed; the local seed is derived per round with :func:`client_seed`.
    """

    def __init__(
        self,
        client_id: str,
        model_factory: Callable[[], nn.Module],
        x: NDArray[np.float32],
        y: NDArray[np.int64],
        train_config: TrainConfig,
        *,
        seed: int,
    ) -> None:
        if x.shape[0] == 0:
            raise ValueError(f"client {client_id!r} has no training rows")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"client {client_id!r}: {x.shape[0]} rows but {y.shape[0]} labels")
        self.client_id = client_id
        self.model_factory = model_factory
        self.x = x
        self.y = y
        self.train_config = train_config
        self.seed = seed
        self._module: nn.Module | None = None

    def fit(self, weights: Weights, config: Config) -> ClientUpdate:
        """Train from ``weights`` for the configured local epochs; return the new weights."""
        if self._module is None:
            self._module = self.model_factory()
        module = self._module
        set_weights(module, weights)
        server_round = int(config.get("server-round", 1))
        loss = train_classifier(
            module,
            self.x,
            self.y,
            train_config_from(config, self.train_config),
            seed=client_seed(self.seed, self.client_id, server_round),
        )
        return ClientUpdate(get_weights(module), int(self.x.shape[0]), {"train_loss": loss})
