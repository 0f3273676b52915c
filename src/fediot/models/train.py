"""Local training and inference loops (plain PyTorch, deterministic for a seed, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from fediot.models.scoring import AutoencoderScorer

__all__ = ["TrainConfig", "predict_logits", "reconstruction_errors", "train_autoencoder", "train_classifier"]


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Hyper-parameters of one local training call.

    Parameters
    ----------
    epochs : int
        Passes over the local data.
    batch_size : int
        Mini-batch size (the last batch of an epoch may be smaller).
    lr : float
        Learning rate.
    optimizer : {"sgd", "adam"}
        Optimiser; a fresh one is built per call (no optimiser state crosses rounds).
    momentum : float
        SGD momentum (ignored by Adam).
    weight_decay : float
        L2 penalty.
    proximal_mu : float
        FedProx (Li et al. 2020): each step minimises ``loss + mu/2 ||w - w_0||^2``, ``w_0`` = the
        parameters the call started from (the global model); 0 = plain training. The reported loss is
        the data loss only.
    """

    epochs: int = 1
    batch_size: int = 64
    lr: float = 0.01
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    proximal_mu: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if not self.proximal_mu >= 0:
            raise ValueError(f"proximal_mu must be >= 0, got {self.proximal_mu}")


def _make_optimizer(module: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        module.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def _fit(
    module: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: nn.Module,
    config: TrainConfig,
    seed: int,
) -> float:
    n = inputs.shape[0]
    if n == 0:
        raise ValueError("cannot train on zero rows")
    gen = torch.Generator().manual_seed(seed)
    opt = _make_optimizer(module, config)
    mu = config.proximal_mu
    anchor = [p.detach().clone() for p in module.parameters()] if mu > 0 else []
    module.train()
    last_epoch_loss = float("nan")
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(module(inputs[idx]), targets[idx])
            if mu > 0:
                prox = sum((p - a).square().sum() for p, a in zip(module.parameters(), anchor, strict=True))
                (loss + (0.5 * mu) * prox).backward()
            else:
                loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.shape[0]
        last_epoch_loss = total / n
    module.eval()
    return last_epoch_loss


def train_classifier(
    module: nn.Module,
    x: NDArray[np.float32],
    y: NDArray[np.int64],
    config: TrainConfig,
    *,
    seed: int,
) -> float:
    """Train ``module`` in place with cross-entropy; return the mean loss of the last epoch.

    Parameters
    ----------
    module : nn.Module
        Maps ``(n, n_features)`` to logits ``(n, n_classes)``.
    x : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        Integer class labels.
    config : TrainConfig
    seed : int
        Fixes the mini-batch order.
    """
    return _fit(
        module,
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)),
        nn.CrossEntropyLoss(),
        config,
        seed,
    )


def train_autoencoder(module: nn.Module, x: NDArray[np.float32], config: TrainConfig, *, seed: int) -> float:
    """Train ``module`` in place to reconstruct ``x`` (MSE); return the mean loss of the last epoch.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)
        Benign rows, already scaled.
    """
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return _fit(module, t, t, nn.MSELoss(), config, seed)


@torch.no_grad()
def predict_logits(module: nn.Module, x: NDArray[np.float32], batch_size: int = 65536) -> NDArray[np.float32]:
    """Return ``module``'s outputs for ``x`` of shape ``(n_samples, n_features)``, in batches."""
    module.eval()
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    outs = [module(t[i : i + batch_size]) for i in range(0, t.shape[0], batch_size)]
    if not outs:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(outs).numpy().astype(np.float32, copy=False)


def reconstruction_errors(
    module: nn.Module, x: NDArray[np.float32], batch_size: int = 1024
) -> NDArray[np.float64]:
    """Return the per-row reconstruction MSE of ``x`` (shape ``(n_samples,)``); higher = more anomalous.

    Computed in float32 (as ``module(x)`` would) by an :class:`~fediot.models.scoring.AutoencoderScorer`
    (torch backend, blocks of ``batch_size`` rows), returned as float64.

    Parameters
    ----------
    module : nn.Module
        A chain of ``nn.Linear``/``nn.Tanh`` (e.g. an :class:`~fediot.models.Autoencoder`).
    x : ndarray of shape (n_samples, n_features)
        Scaled rows (converted to float32).
    batch_size : int
        Rows per block.

    Raises
    ------
    DataError
        On a wrong width, or NaN/inf in ``x``.
    """
    scorer = AutoencoderScorer(module, backend="torch", block_rows=batch_size)
    return scorer.score(np.asarray(x, dtype=np.float32))
