"""Resolve an experiment's ``data.source`` into a federated anomaly dataset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from fediot.data.anomaly import AnomalyDataset, split_nbaiot_protocol
from fediot.errors import ConfigError

__all__ = ["ANOMALY_SOURCES", "DataConfig", "load_anomaly_dataset"]

ANOMALY_SOURCES = ("nsl-kdd", "gateway", "<path to N-BaIoT data, UCI or Kaggle layout>")


@dataclass(frozen=True, slots=True)
class DataConfig:
    """``[data]`` of an anomaly experiment.

    Parameters
    ----------
    source : str
        ``gateway`` (default), ``nsl-kdd``, or a folder of N-BaIoT CSVs (UCI or Kaggle layout).
    num_clients, alpha : int, float
        ``nsl-kdd`` only: clients by service, Dirichlet(alpha) partition.
    build_seed : int
        ``gateway`` only: seed of the dataset build (flood block offsets).
    syn_flood_source : {"spoofed", "device"}
        ``gateway`` only: replay the SYN flood with its spoofed sources, or from the device's own IP.
    gateway_version : int
        ``gateway`` only: 2 (StopDDoS floods + lab attacks, the default) or 1 (the two floods).
    max_attack_rows : int or None
        N-BaIoT layouts: subsample each device's attack rows to at most this many.
    """

    source: str = "gateway"
    num_clients: int = 9
    alpha: float = 0.5
    build_seed: int = 0
    syn_flood_source: Literal["spoofed", "device"] = "spoofed"
    gateway_version: int = 1
    max_attack_rows: int | None = None

    def __post_init__(self) -> None:
        if self.num_clients < 1:
            raise ConfigError(f"data.num_clients must be >= 1, got {self.num_clients}")
        if not self.alpha > 0:
            raise ConfigError(f"data.alpha must be > 0, got {self.alpha}")
        if self.max_attack_rows is not None and self.max_attack_rows < 1:
            raise ConfigError(f"data.max_attack_rows must be >= 1, got {self.max_attack_rows}")


def load_anomaly_dataset(data: DataConfig, seed: int) -> AnomalyDataset:
    """Return the dataset named by ``data.source``: ``nsl-kdd``, ``gateway`` or an N-BaIoT folder.

    Parameters
    ----------
    data : DataConfig
        The config's ``[data]`` section.
    seed : int
        Fixes partitions and subsampling.
    """
    source = data.source
    if source == "nsl-kdd":
        from fediot.data.nslkdd_federated import build_nslkdd_anomaly

        return build_nslkdd_anomaly(num_clients=data.num_clients, alpha=data.alpha, seed=seed)
    if source == "gateway":
        from fediot.data.gateway import GatewayConfig, gateway_dataset_path

        gw = GatewayConfig(
            seed=data.build_seed, syn_flood_source=data.syn_flood_source, version=data.gateway_version
        )
        path = gateway_dataset_path(gw)
        name = "gateway"
    else:
        path = Path(source)
        if not path.exists():
            raise ConfigError(
                f"data source {source!r} is neither a dataset name ({', '.join(ANOMALY_SOURCES[:2])}) "
                "nor an existing folder"
            )
        name = f"nbaiot:{path}"
    from fediot.data.nbaiot import nbaiot_feature_names, read_nbaiot

    devices = read_nbaiot(path)
    return split_nbaiot_protocol(
        {d.name: (d.benign, d.attacks) for d in devices.values()},
        nbaiot_feature_names(),
        name=name,
        max_attack_rows=data.max_attack_rows,
        rng=np.random.default_rng(np.random.SeedSequence([seed, 31])),
    )
