"""The client side of a round: the transport-agnostic ``fit`` contract and local-training clients."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from torch import nn

from fediot.data.scaling import SufficientStats, scaler_inputs
from fediot.federated.types import ClientUpdate, Config, Metrics, Weights
from fediot.models.train import TrainConfig, reconstruction_errors, train_autoencoder, train_classifier
from fediot.models.weights import get_weights, set_weights

__all__ = [
    "AutoencoderClient",
    "ClassifierClient",
    "Client",
    "FitPlan",
    "LocalTraining",
    "answer_query",
    "client_seed",
    "train_config_from",
]


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
    """Override ``default`` with the kebab-case keys the server sent (``local-epochs``, ``lr``, ...).

    ``proximal-mu`` (FedProx, the key Flower's ``FedProx`` sends) adds ``mu/2 ||w - w_global||^2`` to the
    local loss, ``w_global`` being the weights the round started from.
    """
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
        proximal_mu=float(config.get("proximal-mu", default.proximal_mu)),
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


class _Transform(Protocol):
    def transform(self, x: NDArray[np.float32]) -> NDArray[np.float32]: ...


class LocalTraining(NamedTuple):
    """One local training call: ``train_autoencoder(module, x, config, seed=seed)``.

    Attributes
    ----------
    x : ndarray of shape (n_rows, n_features)
        Scaled rows to train on.
    config : TrainConfig
    seed : int
        Fixes the mini-batch order.
    """

    x: NDArray[np.float32]
    config: TrainConfig
    seed: int


@dataclass(frozen=True, slots=True)
class FitPlan:
    """What an :class:`AutoencoderClient` does in one round, before any training.

    ``fit`` runs the ``phases`` in order on the received weights; a runtime may run them itself (e.g.
    ``fediot.sim.batched``, many clients at once) and finish with :meth:`update`.

    Attributes
    ----------
    phases : tuple of LocalTraining
        The local epochs, then, in a retraining round, one epoch on the retraining subset.
    num_examples : int
        The FedAvg weight of the reply.
    retrained : bool
        Whether the round includes the retraining pass.
    """

    phases: tuple[LocalTraining, ...]
    num_examples: int
    retrained: bool

    def update(self, weights: Weights, loss: float) -> ClientUpdate:
        """Return the reply for the trained ``weights`` and the last phase's mean ``loss``."""
        metrics: Metrics = {"train_loss": loss, "retrained": self.retrained}
        return ClientUpdate(weights, self.num_examples, metrics)


class AutoencoderClient:
    """An IoT gateway: trains the shared autoencoder on its own benign rows.

    The raw rows never leave the object; what it returns are weights, counts, scalar metrics and the
    sufficient statistics asked for by :meth:`feature_stats` and :meth:`error_stats`.

    Parameters
    ----------
    client_id : str
    model_factory : callable
        Builds a fresh autoencoder of the global architecture.
    x_train : ndarray of shape (n_train, n_features)
        Raw (unscaled) benign training rows, in time order.
    x_opt : ndarray of shape (n_opt, n_features)
        Raw benign rows held out to fit the threshold (N-BaIoT's "optimisation" set).
    train_config : TrainConfig
        Local training defaults (the server's config may override them per round).
    seed : int
        Run seed; per-round seeds are derived with :func:`client_seed`.
    retrain_every : int
        "Retraining" (the seed README's method, our reading): every ``retrain_every`` rounds
        (``server_round % retrain_every == 0``) the client, after its normal local epochs, trains one
        more epoch on a fresh random ``retrain_fraction`` of its benign training rows before replying.
        0 disables it.
    retrain_fraction : float
        Fraction of the training rows drawn (without replacement) for a retraining pass.
    """

    def __init__(
        self,
        client_id: str,
        model_factory: Callable[[], nn.Module],
        x_train: NDArray[np.float32],
        x_opt: NDArray[np.float32],
        train_config: TrainConfig,
        *,
        seed: int,
        retrain_every: int = 0,
        retrain_fraction: float = 0.5,
    ) -> None:
        if x_train.shape[0] == 0:
            raise ValueError(f"client {client_id!r} has no benign training rows")
        if retrain_every < 0:
            raise ValueError(f"retrain_every must be >= 0, got {retrain_every}")
        if not 0.0 < retrain_fraction <= 1.0:
            raise ValueError(f"retrain_fraction must be in (0, 1], got {retrain_fraction}")
        self.client_id = client_id
        self.model_factory = model_factory
        self.x_train_raw = x_train
        self.x_opt_raw = x_opt
        self.train_config = train_config
        self.seed = seed
        self.retrain_every = retrain_every
        self.retrain_fraction = retrain_fraction
        self._module: nn.Module | None = None
        self._x_train: NDArray[np.float32] | None = None
        self._x_opt: NDArray[np.float32] | None = None

    @property
    def num_train(self) -> int:
        """Number of benign training rows."""
        return int(self.x_train_raw.shape[0])

    def _model(self) -> nn.Module:
        if self._module is None:
            self._module = self.model_factory()
        return self._module

    def set_scaler(self, scaler: _Transform) -> None:
        """Scale the local rows with the (federated) scaler the server broadcast."""
        self._x_train = scaler.transform(self.x_train_raw)
        self._x_opt = scaler.transform(self.x_opt_raw) if self.x_opt_raw.shape[0] else self.x_opt_raw

    def _scaled_train(self) -> NDArray[np.float32]:
        if self._x_train is None:
            raise RuntimeError(f"client {self.client_id!r}: set_scaler() must be called before training")
        return self._x_train

    def fit_plan(self, config: Config) -> FitPlan:
        """Decide what :meth:`fit` does this round: rows, hyper-parameters and seed of each training phase.

        The local epochs on all scaled training rows with the per-round seed from :func:`client_seed`;
        in a retraining round (see the class docstring) then one epoch on a random subset, seed + 1.
        """
        x = self._scaled_train()
        server_round = int(config.get("server-round", 1))
        seed = client_seed(self.seed, self.client_id, server_round)
        tc = train_config_from(config, self.train_config)
        phases = [LocalTraining(x, tc, seed)]
        retrain_every = int(config.get("retrain-every", self.retrain_every))
        retrained = retrain_every > 0 and server_round % retrain_every == 0
        if retrained:
            fraction = float(config.get("retrain-fraction", self.retrain_fraction))
            rng = np.random.default_rng(seed)
            k = max(1, round(fraction * x.shape[0]))
            subset = np.sort(rng.choice(x.shape[0], size=k, replace=False))
            phases.append(LocalTraining(x[subset], replace(tc, epochs=1), seed + 1))
        return FitPlan(tuple(phases), self.num_train, retrained)

    def fit(self, weights: Weights, config: Config) -> ClientUpdate:
        """Train from ``weights`` on the local benign rows (plus a retraining pass when due)."""
        plan = self.fit_plan(config)
        module = self._model()
        set_weights(module, weights)
        loss = float("nan")
        for phase in plan.phases:
            loss = train_autoencoder(module, phase.x, phase.config, seed=phase.seed)
        return plan.update(get_weights(module), loss)

    def feature_stats(self, scaler_kind: str = "minmax") -> SufficientStats:
        """Per-feature sufficient statistics of the benign training rows, for a federated ``scaler_kind``.

        For ``log-*`` scalers the statistics are of the log-compressed rows (see
        :func:`fediot.data.scaling.scaler_inputs`).
        """
        return SufficientStats.from_array(scaler_inputs(scaler_kind, self.x_train_raw))

    def error_stats(self, weights: Weights) -> SufficientStats:
        """Sufficient statistics of the reconstruction errors on the opt rows (for the federated threshold).

        Falls back to the training rows when the client holds no opt rows.
        """
        which: Literal["train", "opt"] = "opt" if self.x_opt_raw.shape[0] else "train"
        return SufficientStats.from_array(self.errors(weights, which)[:, None])

    def errors(self, weights: Weights, which: Literal["train", "opt"] = "opt") -> NDArray[np.float64]:
        """Per-row reconstruction MSE of the local (scaled) rows under ``weights``; stays on the client."""
        module = self._model()
        set_weights(module, weights)
        if which == "train":
            x = self._scaled_train()
        else:
            if self._x_opt is None:
                raise RuntimeError(f"client {self.client_id!r}: set_scaler() must be called first")
            x = self._x_opt
        return reconstruction_errors(module, x)


def answer_query(client: Client, name: str, weights: Weights | None, config: Config) -> dict[str, Any]:
    """Answer the statistics query ``name`` on the client: an encoded summary, never rows.

    ``feature_stats`` (config ``scaler``: the scaler kind) — per-feature sufficient statistics of the raw
    training rows (log-compressed for ``log-*`` kinds); clients without ``feature_stats`` answer from their
    ``x`` rows. ``error_stats`` (config: the threshold rule, see
    :func:`fediot.federated.statistics.threshold_rule_config`) — the summary of the reconstruction errors of
    the client's opt rows under ``weights`` that the rule federates. A client with its own ``answer(name,
    weights, config)`` method answers itself.

    Raises
    ------
    ValueError
        If the query is unknown, or ``error_stats`` comes without weights.
    TypeError
        If the client cannot answer it.
    """
    from fediot.detect.threshold import error_summary
    from fediot.federated.statistics import (
        ERROR_STATS,
        FEATURE_STATS,
        encode_summary,
        threshold_rule_from_config,
    )

    own_answer = getattr(client, "answer", None)
    if callable(own_answer):  # a client that answers queries itself (e.g. fediot.federated.attacks)
        answer: dict[str, Any] = own_answer(name, weights, config)
        return answer
    if name == FEATURE_STATS:
        kind = str(config.get("scaler", "minmax"))
        own = getattr(client, "feature_stats", None)
        if callable(own):
            return encode_summary(own(kind))
        rows = getattr(client, "x", None)
        if rows is None:
            raise TypeError(f"client {client.client_id!r} exposes no training rows for feature statistics")
        return encode_summary(SufficientStats.from_array(scaler_inputs(kind, np.asarray(rows))))
    if name == ERROR_STATS:
        if weights is None:
            raise ValueError("error_stats needs the global weights")
        errors = getattr(client, "errors", None)
        if not callable(errors):
            raise TypeError(f"client {client.client_id!r} cannot compute reconstruction errors")
        which = "opt" if getattr(client, "x_opt_raw", np.zeros(0)).shape[0] else "train"
        return encode_summary(error_summary(errors(weights, which), threshold_rule_from_config(config)))
    raise ValueError(f"unknown statistics query {name!r} (expected feature_stats or error_stats)")
