"""Torch modules, their configs, and the plain training loops (no I/O)."""

from fediot.models.autoencoder import Autoencoder, AutoencoderConfig
from fediot.models.mlp import MLP, MLPConfig
from fediot.models.scoring import AutoencoderScorer
from fediot.models.threads import apply_default_threads, get_threads, set_threads
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
    "AutoencoderScorer",
    "MLPConfig",
    "TrainConfig",
    "get_threads",
    "get_weights",
    "init_module",
    "predict_logits",
    "reconstruction_errors",
    "set_threads",
    "set_weights",
    "train_autoencoder",
    "train_classifier",
]

apply_default_threads()  # one thread unless FEDIOT_THREADS says otherwise: see fediot.models.threads
