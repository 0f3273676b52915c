"""One configuration, two transports: the in-process engine and Flower's simulation give the same run.

Same final weights, client selection, federated scaler, threshold, local thresholds and test metrics, for
FedAvg and FedAvgM with a random half of the clients per round; the detector the ServerApp saves is the
in-process one.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import flwr.simulation as simulation
import numpy as np
import pytest

from fediot import flower
from fediot.config import FLConfig
from fediot.data.anomaly import TestSet
from fediot.data.nbaiot import read_nbaiot_csv
from fediot.detect.detector import AnomalyDetector
from fediot.detect.evaluate import evaluate_scores
from fediot.federated.client import Client
from fediot.federated.engine import FederationResult, run_fl
from fediot.flower.server_app import initial_weights
from fediot.models.autoencoder import AutoencoderConfig
from fediot.sim.runtime import InProcessTransport
from gateway_clients import sample_gateways

pytestmark = [pytest.mark.flower, pytest.mark.slow]

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "nbaiot" / "samples"
NUM_CLIENTS = 4


def _cfg(strategy: str, **server: Any) -> FLConfig:
    return FLConfig.from_dict(
        {
            "seed": 3,
            "federated": {
                "rounds": 3,
                "fraction_fit": 0.5,
                "min_fit_clients": 2,
                "local_epochs": 1,
                "strategy": strategy,
                "server_momentum": 0.6,
                "server_learning_rate": 0.9,
                "executor": "sequential",
            },
            "train": {"batch_size": 32},
            "server": {"min_available_clients": NUM_CLIENTS, "round_timeout": 120.0, **server},
        }
    )


def _clients(cfg: FLConfig) -> dict[str, Client]:
    """Four gateways on the real N-BaIoT benign sample rows (train / opt halves), raw until scaled."""
    return sample_gateways(cfg, NUM_CLIENTS, rows=240)


def _flower(cfg: FLConfig) -> flower.ServerResult:
    clients = _clients(cfg)
    ids = sorted(clients)
    results: list[flower.ServerResult] = []

    def client_fn(context: Any) -> Client:
        return clients[ids[int(context.node_config["partition-id"])]]

    server = flower.make_server_app(lambda _c: cfg, on_result=results.append)
    random.seed(12345)  # Flower's own sampling uses `random`; ours must not depend on it
    simulation.run_simulation(
        server_app=server,
        client_app=flower.make_client_app(client_fn),
        num_supernodes=NUM_CLIENTS,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": {"num_cpus": 2}},
    )
    assert len(results) == 1, "the ServerApp did not finish"
    return results[0]


def _test_rows() -> tuple[np.ndarray, TestSet]:
    benign = read_nbaiot_csv(SAMPLES / "benign_traffic.csv.gz")[240:]  # rows no gateway holds
    attack = read_nbaiot_csv(SAMPLES / "scan.csv.gz")[:100]
    x = np.concatenate([benign, attack])
    y = np.r_[np.zeros(len(benign), np.int8), np.ones(len(attack), np.int8)]
    types = np.array(["benign"] * len(benign) + ["scan"] * len(attack))
    return x, TestSet(x=x, y=y, attack_type=types, segment=np.zeros(len(y), np.int64))


def _metrics(result: FederationResult, cfg: FLConfig) -> Any:
    assert result.scaler is not None
    assert result.threshold is not None
    detector = AnomalyDetector.from_parts(
        result.weights, result.scaler, result.threshold, config=AutoencoderConfig(115)
    )
    x, test = _test_rows()
    return evaluate_scores(detector.anomaly_score(x).astype(np.float64), result.threshold, test, window=1)


@pytest.mark.parametrize("strategy", ["fedavg", "fedavgm"])
def test_flower_simulation_equals_the_in_process_engine(strategy: str, tmp_path: Path) -> None:
    # Prepare
    detector_path = tmp_path / "detector.pt"
    cfg = _cfg(strategy, detector_path=str(detector_path), history_path=str(tmp_path / "history.json"))
    # Execute
    transport = InProcessTransport(dict(sorted(_clients(cfg).items())))
    local = run_fl(transport, cfg, initial_weights(cfg))
    remote = _flower(cfg).federation
    # Assert: the same run, bit for bit
    assert [r.selected for r in remote.rounds] == [r.selected for r in local.rounds]
    assert len({tuple(r.selected) for r in local.rounds}) > 1  # selection really varies
    for a, b in zip(remote.weights, local.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert remote.scaler is not None
    assert local.scaler is not None
    for key, value in local.scaler.to_dict().items():
        np.testing.assert_array_equal(remote.scaler.to_dict()[key], value)
    assert remote.threshold == local.threshold
    assert remote.local_thresholds == local.local_thresholds
    assert _metrics(remote, cfg) == _metrics(local, cfg)
    # ... and the saved detector is the in-process one
    saved = AnomalyDetector.load(detector_path)
    x, _ = _test_rows()
    assert saved.threshold_ == local.threshold
    expected = AnomalyDetector.from_parts(
        local.weights, local.scaler, local.threshold, config=AutoencoderConfig(115)
    ).anomaly_score(x)
    np.testing.assert_array_equal(saved.anomaly_score(x), expected)
    # it ranks the scan rows above the held-out benign rows (the threshold itself is inflated by the tiny
    # sample: 30 training rows per gateway give rounding-noise spans, see the strict xfail in test_detector)
    benign = expected[:-100]
    assert np.median(expected[-100:]) > np.quantile(benign, 0.9)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, no temp file left
