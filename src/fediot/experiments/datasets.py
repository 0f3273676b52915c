"""Resolve an experiment's ``data.source`` into a federated anomaly dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fediot.data.anomaly import AnomalyDataset, split_nbaiot_protocol
from fediot.errors import ConfigError

__all__ = ["ANOMALY_SOURCES", "load_anomaly_dataset"]

ANOMALY_SOURCES = ("nsl-kdd", "gateway", "<path to N-BaIoT data, UCI or Kaggle layout>")


def load_anomaly_dataset(source: str, seed: int, data_cfg: dict[str, Any]) -> AnomalyDataset:
    """Return the dataset named by ``source``: ``nsl-kdd``, ``gateway`` or a folder in the N-BaIoT layout.

    Parameters
    ----------
    source : str
        Dataset name or path.
    seed : int
        Fixes partitions and subsampling.
    data_cfg : dict
        The config's ``[data]`` section (e.g. ``num_clients``, ``alpha``, ``max_attack_rows``).
    """
    if source == "nsl-kdd":
        from fediot.data.nslkdd_federated import build_nslkdd_anomaly

        return build_nslkdd_anomaly(
            num_clients=int(data_cfg.get("num_clients", 9)),
            alpha=float(data_cfg.get("alpha", 0.5)),
            seed=seed,
        )
    if source == "gateway":
        from fediot.data.gateway import GatewayConfig, gateway_dataset_path

        gw = GatewayConfig(
            seed=int(data_cfg.get("build_seed", 0)),
            syn_flood_source=str(data_cfg.get("syn_flood_source", "spoofed")),
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
    max_attack = data_cfg.get("max_attack_rows")
    return split_nbaiot_protocol(
        {d.name: (d.benign, d.attacks) for d in devices.values()},
        nbaiot_feature_names(),
        name=name,
        max_attack_rows=None if max_attack is None else int(max_attack),
        rng=np.random.default_rng(np.random.SeedSequence([seed, 31])),
    )
