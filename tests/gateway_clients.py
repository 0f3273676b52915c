"""Shared test gateways: autoencoder clients on the real N-BaIoT benign sample rows (train / opt halves)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fediot.config import FLConfig
from fediot.data.nbaiot import read_nbaiot_csv
from fediot.federated.client import AutoencoderClient, Client
from fediot.federated.settings import local_train_config
from fediot.models.autoencoder import Autoencoder, AutoencoderConfig

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "nbaiot" / "samples"


def sample_gateways(
    cfg: FLConfig, n: int = 4, *, rows: int | None = None, interleaved: bool = False
) -> dict[str, Client]:
    """``n`` gateways ``gw0``... on the first ``rows`` benign sample rows, raw until scaled.

    Contiguous blocks of rows by default; ``interleaved``: row ``j`` goes to gateway ``j % n`` (clients
    alike).
    Each gateway trains on the first half of its rows and keeps the second half for the threshold.
    """
    x = read_nbaiot_csv(SAMPLES / "benign_traffic.csv.gz")[:rows]
    tc = local_train_config(cfg.train, cfg.federated.local_epochs)
    parts = (
        [np.arange(i, x.shape[0], n) for i in range(n)]
        if interleaved
        else np.array_split(np.arange(x.shape[0]), n)
    )
    out: dict[str, Client] = {}
    for i, idx in enumerate(parts):
        half = len(idx) // 2
        model = lambda: Autoencoder(AutoencoderConfig(115))  # noqa: E731
        out[f"gw{i}"] = AutoencoderClient(f"gw{i}", model, x[idx[:half]], x[idx[half:]], tc, seed=cfg.seed)
    return out
