"""From the configuration schema (:mod:`fediot.config`) to what the engine and the clients run.

One place maps each configuration field to its effect, for every transport: the strategy, the per-round
training config the server sends (kebab-case keys, read back by
:func:`fediot.federated.client.train_config_from`), the local training defaults and the threshold rule.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fediot.config import DetectConfig, FLConfig, TrainingConfig
from fediot.detect.threshold import ThresholdRule
from fediot.federated.strategy import Strategy, make_strategy
from fediot.federated.types import Config
from fediot.models.train import TrainConfig

__all__ = ["fit_config", "init_seed", "local_train_config", "strategy_for", "threshold_rule"]


def init_seed(seed: int) -> int:
    """Return the seed of the global model's initialisation for run ``seed`` (every runtime uses it).

    Examples
    --------
    >>> init_seed(0) == init_seed(0) != init_seed(1)
    True
    """
    return int(np.random.SeedSequence([seed, 2]).generate_state(1)[0])


def threshold_rule(detect: DetectConfig) -> ThresholdRule:
    """Return the :class:`ThresholdRule` of a ``[detect]`` section.

    Examples
    --------
    >>> threshold_rule(DetectConfig(threshold="quantile", threshold_q=0.995)).q
    0.995
    """
    return ThresholdRule(
        kind="quantile" if detect.threshold == "quantile" else "mean_std",
        k=detect.threshold_k,
        q=detect.threshold_q,
    )


_LOCAL_TRAINING = ("batch_size", "lr", "optimizer", "momentum", "weight_decay")
"""The ``[train]`` fields that are ``fediot.models.train.TrainConfig`` fields of the same name."""


def local_train_config(train: TrainingConfig, epochs: int) -> TrainConfig:
    """Return the local training settings of a ``[train]`` section for ``epochs`` passes."""
    return TrainConfig(epochs=epochs, **{name: getattr(train, name) for name in _LOCAL_TRAINING})


def fit_config(cfg: FLConfig) -> Callable[[int], Config]:
    """``server_round -> Config``: the training instructions sent to every selected client each round.

    Examples
    --------
    >>> sorted(fit_config(FLConfig())(1))[:3]
    ['batch-size', 'local-epochs', 'lr']
    """
    fed, train = cfg.federated, cfg.train
    config: dict[str, bool | int | float | str] = {
        "local-epochs": fed.local_epochs,
        "lr": train.lr,
        "batch-size": train.batch_size,
        "optimizer": train.optimizer,
        "momentum": train.momentum,
        "weight-decay": train.weight_decay,
        "retrain-every": fed.retrain_every,
        "retrain-fraction": fed.retrain_fraction,
    }
    if fed.strategy == "fedprox":
        config["proximal-mu"] = fed.proximal_mu  # the key Flower's FedProx sends
    return lambda _server_round: dict(config)


def strategy_for(cfg: FLConfig) -> Strategy:
    """Return a fresh strategy (server state) of ``federated.strategy`` with its ``federated.*`` parameters.

    Examples
    --------
    >>> from fediot.config import FederatedConfig
    >>> strategy_for(FLConfig(federated=FederatedConfig(strategy="krum", num_malicious=2))).num_malicious
    2
    """
    fed = cfg.federated
    return make_strategy(
        fed.strategy,
        server_learning_rate=fed.server_learning_rate,
        server_momentum=fed.server_momentum,
        proximal_mu=fed.proximal_mu,
        eta=fed.server_optimizer_lr,
        beta_1=fed.server_beta_1,
        beta_2=fed.server_beta_2,
        tau=fed.server_tau,
        trimmed_fraction=fed.trimmed_fraction,
        num_malicious=fed.num_malicious,
        num_to_select=fed.krum_select,
        clip_norm=fed.clip_norm,
    )
