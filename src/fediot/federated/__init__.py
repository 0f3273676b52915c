"""Pure aggregation functions, strategies with server state, client update logic, client selection."""

from fediot.federated.aggregate import aggregate_fedavg, fedavgm_update
from fediot.federated.client import (
    AutoencoderClient,
    ClassifierClient,
    Client,
    client_seed,
    train_config_from,
)
from fediot.federated.selection import num_selected, select_clients
from fediot.federated.strategy import FedAvg, FedAvgM, Strategy, make_strategy
from fediot.federated.types import ClientUpdate, Config, Metrics, Scalar, Weights, weights_nbytes

__all__ = [
    "AutoencoderClient",
    "ClassifierClient",
    "Client",
    "ClientUpdate",
    "Config",
    "FedAvg",
    "FedAvgM",
    "Metrics",
    "Scalar",
    "Strategy",
    "Weights",
    "aggregate_fedavg",
    "client_seed",
    "fedavgm_update",
    "make_strategy",
    "num_selected",
    "select_clients",
    "train_config_from",
    "weights_nbytes",
]
