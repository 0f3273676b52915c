"""Torch modules, their configs, and the plain training loops (no I/O)."""

from fediot.models.autoencoder import Autoencoder, AutoencoderConfig
from fediot.models.mlp import MLP, MLPConfig
from fediot.models.train import (
    TrainConfig,
    predict_logits,
    reconstruction_errors,
    train_autoencoder,
    train_classifier,
)
from fediot.models.weights import get_weights, init_module, set_weights

__all__ = [
    "MLP",
    "Autoencoder",
    "AutoencoderConfig",
    "MLPConfig",
    "TrainConfig",
    "get_weights",
    "init_module",
    "predict_logits",
    "reconstruction_errors",
    "set_weights",
    "train_autoencoder",
    "train_classifier",
]
