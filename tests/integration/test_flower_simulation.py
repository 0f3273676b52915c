"""One run through ``fediot.sim.run_rounds`` and through Flower's simulation engine: same model."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import flwr.simulation as simulation
import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray

import fediot.flower as flower
from fediot.detect.detector import AnomalyDetector
from fediot.federated.client import AutoencoderClient, ClassifierClient, Client
from fediot.federated.strategy import make_strategy
from fediot.federated.types import Weights
from fediot.models.autoencoder import Autoencoder, AutoencoderConfig
from fediot.models.mlp import MLP, MLPConfig
from fediot.models.train import TrainConfig
from fediot.models.weights import get_weights, init_module
from fediot.sim.runtime import SimResult, run_rounds

pytestmark = [pytest.mark.flower, pytest.mark.slow]

NSL_KDD = Path(__file__).resolve().parents[2] / "data" / "nsl_kdd" / "KDDTrain+_20Percent.txt.gz"
NUM_CLIENTS = 4


def _kdd_rows(nrows: int = 800) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    frame = pd.read_csv(NSL_KDD, header=None, nrows=nrows)
    numeric = frame.iloc[:, :-2].select_dtypes("number").to_numpy(dtype=np.float64)
    return np.log1p(np.abs(numeric)).astype(np.float32), (frame.iloc[:, -2] != "normal").to_numpy(np.int64)


def _clients(seed: int) -> dict[str, Client]:
    x, y = _kdd_rows()
    parts = np.array_split(np.arange(x.shape[0]), NUM_CLIENTS)
    tc = TrainConfig(epochs=1, batch_size=32, lr=0.05)

    def model() -> MLP:
        return MLP(MLPConfig(num_features=x.shape[1], hidden=(8, 8), num_classes=2))

    return {
        f"gw{i}": ClassifierClient(f"gw{i}", model, x[p], y[p], tc, seed=seed) for i, p in enumerate(parts)
    }


def _initial() -> Weights:
    x, _ = _kdd_rows(10)
    return get_weights(init_module(MLP(MLPConfig(num_features=x.shape[1], hidden=(8, 8), num_classes=2)), 0))


def _run_flower(config: object, seed: int) -> SimResult:
    clients = _clients(seed)
    ids = sorted(clients)
    results: list[SimResult] = []

    def client_fn(context: object) -> Client:
        return clients[ids[int(context.node_config["partition-id"])]]  # type: ignore[attr-defined]

    server = flower.make_server_app(lambda _c: config, lambda _c: _initial(), on_result=results.append)
    client = flower.make_client_app(client_fn)
    random.seed(12345)  # Flower's own sampling uses `random`; ours must not depend on it
    simulation.run_simulation(
        server_app=server,
        client_app=client,
        num_supernodes=NUM_CLIENTS,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": {"num_cpus": 2}},
    )
    assert len(results) == 1, "the ServerApp did not finish"
    return results[0]


@pytest.mark.parametrize("strategy", ["fedavg", "fedavgm"])
def test_flower_simulation_equals_in_process_runtime(strategy: str) -> None:
    # Prepare
    seed, rounds, fraction = 3, 3, 0.5
    config = flower.ServerConfig(
        num_rounds=rounds,
        strategy=strategy,
        server_learning_rate=0.9,
        server_momentum=0.6,
        fraction_fit=fraction,
        min_fit_clients=1,
        min_available_clients=NUM_CLIENTS,
        seed=seed,
        round_timeout=120,
        fit_config={"local-epochs": 1},
    )
    # Execute
    sim = run_rounds(
        dict(sorted(_clients(seed).items())),
        make_strategy(strategy, server_learning_rate=0.9, server_momentum=0.6),
        _initial(),
        num_rounds=rounds,
        fraction_fit=fraction,
        seed=seed,
        fit_config=lambda _r: {"local-epochs": 1},
    )
    fl = _run_flower(config, seed)
    # Assert: same selection every round, and the same final weights
    assert [r.selected for r in fl.rounds] == [r.selected for r in sim.rounds]
    assert len({tuple(r.selected) for r in sim.rounds}) > 1 or rounds == 1
    for a, b in zip(fl.weights, sim.weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert [r.bytes_sent for r in fl.rounds] == [r.bytes_sent for r in sim.rounds]
    assert any(not np.array_equal(w0, w) for w0, w in zip(_initial(), fl.weights, strict=True))


# --- the federated detector (scaler, rounds, threshold) ---------------------------------------------

NBAIOT_SAMPLES = Path(__file__).resolve().parents[2] / "data" / "nbaiot" / "samples"


def _gateways(seed: int) -> dict[str, AutoencoderClient]:
    """Three gateways on raw N-BaIoT sample rows (train / opt halves), unscaled until the server says."""
    from fediot.data.nbaiot import read_nbaiot_csv

    x = read_nbaiot_csv(NBAIOT_SAMPLES / "benign_traffic.csv.gz")[:240]
    out: dict[str, AutoencoderClient] = {}
    for i, idx in enumerate(np.array_split(np.arange(x.shape[0]), 3)):
        half = len(idx) // 2
        out[f"gw{i}"] = AutoencoderClient(
            f"gw{i}",
            lambda: Autoencoder(AutoencoderConfig(x.shape[1])),
            x[idx[:half]],
            x[idx[half:]],
            TrainConfig(epochs=1, batch_size=32, lr=0.01),
            seed=seed,
        )
    return out


def _in_process_detector(seed: int, config: Any) -> AnomalyDetector:
    """``experiments.anomaly._run_federated``'s steps 1-3 through ``run_rounds`` on the same clients."""
    from fediot.data.scaling import make_scaler
    from fediot.detect.threshold import threshold_from_stats

    clients = _gateways(seed)
    ids = sorted(clients)
    stats = [clients[cid].feature_stats(config.scaler) for cid in ids]
    merged = stats[0]
    for s in stats[1:]:
        merged = merged.merge(s)
    scaler = make_scaler(config.scaler, merged)
    for c in clients.values():
        c.set_scaler(scaler)
    sim = run_rounds(
        {cid: clients[cid] for cid in ids},
        make_strategy(
            config.strategy,
            server_learning_rate=config.server_learning_rate,
            server_momentum=config.server_momentum,
        ),
        _ae_initial(),
        num_rounds=config.num_rounds,
        fraction_fit=config.fraction_fit,
        min_fit_clients=config.min_fit_clients,
        seed=config.seed,
        fit_config=lambda _r: dict(config.fit_config),
    )
    errors = [clients[cid].error_stats(sim.weights) for cid in ids]
    merged_errors = errors[0]
    for s in errors[1:]:
        merged_errors = merged_errors.merge(s)
    threshold = threshold_from_stats(merged_errors, k=1)
    return AnomalyDetector.from_parts(
        sim.weights,
        scaler,
        threshold,
        config=AutoencoderConfig(scaler.num_features),
        feature_names=config.feature_names,
    )


def _ae_initial() -> Weights:
    return get_weights(init_module(Autoencoder(AutoencoderConfig(115)), 0))


def test_flower_run_saves_the_in_process_federated_detector(tmp_path: Path) -> None:
    # Prepare
    from fediot.data.nbaiot import read_nbaiot_csv

    seed = 5
    path = tmp_path / "out" / "detector.pt"
    config = flower.ServerConfig.from_run_config(
        {
            "num-server-rounds": 2,
            "strategy": "fedavgm",
            "server-momentum": 0.5,
            "fraction-fit": 1.0,
            "min-fit-clients": 2,
            "min-available-clients": 3,
            "seed": seed,
            "round-timeout": 120.0,
            "local-epochs": 1,
            "scaler": "log-minmax",
            "detector-path": str(path),
            "feature-names": "nbaiot",
        }
    )
    clients = _gateways(seed)
    ids = sorted(clients)
    results: list[SimResult] = []

    def client_fn(context: Any) -> Client:
        return clients[ids[int(context.node_config["partition-id"])]]

    server = flower.make_server_app(lambda _c: config, lambda _c: _ae_initial(), on_result=results.append)
    # Execute
    simulation.run_simulation(
        server_app=server,
        client_app=flower.make_client_app(client_fn),
        num_supernodes=len(clients),
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": {"num_cpus": 2}},
    )
    reference = _in_process_detector(seed, config)
    # Assert: the saved detector is the in-process one (scaler bit for bit: the same float64 statistics
    # merged in the same order; threshold and scores within 1e-5 relative, the training's float32 rounding)
    assert len(results) == 1, "the ServerApp did not finish"
    saved = AnomalyDetector.load(path, feature_names=config.feature_names)
    assert results[0].threshold == pytest.approx(saved.threshold_, rel=0, abs=0)
    for key, value in reference.scaler_.to_dict().items():
        np.testing.assert_array_equal(saved.scaler_.to_dict()[key], value)
    assert saved.threshold_ == pytest.approx(reference.threshold_, rel=1e-5)
    rows = np.concatenate(
        [
            read_nbaiot_csv(NBAIOT_SAMPLES / "benign_traffic.csv.gz")[240:],  # rows no gateway holds
            read_nbaiot_csv(NBAIOT_SAMPLES / "scan.csv.gz")[:100],
        ]
    )
    np.testing.assert_allclose(saved.anomaly_score(rows), reference.anomaly_score(rows), rtol=1e-5, atol=1e-9)
    assert np.array_equal(saved.predict(rows), reference.predict(rows))
    assert rows.shape == (159, 115)
    assert not list(path.parent.glob(".*.tmp"))  # written atomically, no temp file left
