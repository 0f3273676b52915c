"""One run through ``fediot.sim.run_rounds`` and through Flower's simulation engine: same model."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray

from fediot.federated.client import ClassifierClient, Client
from fediot.federated.strategy import make_strategy
from fediot.federated.types import Weights
from fediot.models.mlp import MLP, MLPConfig
from fediot.models.train import TrainConfig
from fediot.models.weights import get_weights, init_module
from fediot.sim.runtime import SimResult, run_rounds

pytestmark = [pytest.mark.flower, pytest.mark.slow]

flower = pytest.importorskip("fediot.flower")
simulation = pytest.importorskip("flwr.simulation")

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
