"""Unit tests for the in-process round loop: determinism, failure tolerance, bytes accounting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray

from fediot.federated.client import ClassifierClient, Client
from fediot.federated.strategy import FedAvg, FedAvgM
from fediot.federated.types import ClientUpdate, Config, Weights, weights_nbytes
from fediot.models.mlp import MLP, MLPConfig
from fediot.models.train import TrainConfig
from fediot.models.weights import get_weights, init_module
from fediot.sim.runtime import SimResult, run_rounds

NSL_KDD = Path(__file__).resolve().parents[3] / "data" / "nsl_kdd" / "KDDTrain+_20Percent.txt.gz"
NUM_ROWS = 400


def _kdd_rows() -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """First NUM_ROWS NSL-KDD rows: numeric columns (log1p-scaled) and a normal(0)/attack(1) label."""
    frame = pd.read_csv(NSL_KDD, header=None, nrows=NUM_ROWS)
    label = frame.iloc[:, -2]
    numeric = frame.iloc[:, :-2].select_dtypes("number").to_numpy(dtype=np.float64)
    x = np.log1p(np.abs(numeric)).astype(np.float32)
    y = (label != "normal").to_numpy(dtype=np.int64)
    return x, y


def _model(num_features: int) -> MLP:
    return MLP(MLPConfig(num_features=num_features, hidden=(8, 8), num_classes=2))


def _clients(num_clients: int = 2, seed: int = 0) -> dict[str, Client]:
    x, y = _kdd_rows()
    parts = np.array_split(np.arange(x.shape[0]), num_clients)
    tc = TrainConfig(epochs=1, batch_size=32, lr=0.05)
    return {
        f"gw{i}": ClassifierClient(f"gw{i}", lambda: _model(x.shape[1]), x[p], y[p], tc, seed=seed)
        for i, p in enumerate(parts)
    }


def _initial(seed: int = 0) -> Weights:
    x, _ = _kdd_rows()
    return get_weights(init_module(_model(x.shape[1]), seed))


class _RaisingClient:
    """A client whose local training always fails (e.g. its disk vanished)."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id

    def fit(self, weights: Weights, config: Config) -> ClientUpdate:
        raise OSError(f"{self.client_id}: local data unavailable")


def test_same_seed_gives_bitwise_identical_runs_on_real_rows() -> None:
    # Prepare
    def run() -> SimResult:
        return run_rounds(
            _clients(), FedAvgM(server_momentum=0.5), _initial(), num_rounds=3, fraction_fit=0.5, seed=11
        )

    # Execute
    a, b = run(), run()
    # Assert
    assert [r.selected for r in a.rounds] == [r.selected for r in b.rounds]
    for wa, wb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert all(np.isfinite(r.train_loss) for r in a.rounds)
    assert any(not np.array_equal(w0, w) for w0, w in zip(_initial(), a.weights, strict=True))


def test_different_seed_changes_selection() -> None:
    # Prepare
    clients = {f"c{i}": c for i, c in enumerate(_clients(num_clients=6).values())}
    # Execute
    runs = [
        run_rounds(clients, FedAvg(), _initial(), num_rounds=4, fraction_fit=0.34, seed=s) for s in range(4)
    ]
    # Assert
    assert len({tuple(tuple(r.selected) for r in run.rounds) for run in runs}) > 1


def test_failing_client_is_tolerated_and_counted() -> None:
    # Prepare
    clients = _clients()
    clients["broken"] = _RaisingClient("broken")
    # Execute
    result = run_rounds(
        clients, FedAvg(), _initial(), num_rounds=2, min_fit_clients=2, tolerate_failures=True
    )
    # Assert
    assert [r.failures for r in result.rounds] == [1, 1]
    assert all(r.selected == ["gw0", "gw1", "broken"] for r in result.rounds)
    nbytes = weights_nbytes(result.weights)
    assert all(r.bytes_received == 2 * nbytes for r in result.rounds)


def test_failing_client_propagates_without_tolerance() -> None:
    # Prepare
    clients = _clients()
    clients["broken"] = _RaisingClient("broken")
    # Execute / Assert
    with pytest.raises(OSError, match="local data unavailable"):
        run_rounds(clients, FedAvg(), _initial(), num_rounds=1)


def test_too_few_replies_fail_the_round_even_with_tolerance() -> None:
    # Prepare
    clients: dict[str, Client] = {
        "gw0": _clients()["gw0"],
        "b1": _RaisingClient("b1"),
        "b2": _RaisingClient("b2"),
    }
    # Execute / Assert
    with pytest.raises(RuntimeError, match=r"fewer than federated\.min_fit_clients=2"):
        run_rounds(clients, FedAvg(), _initial(), num_rounds=1, min_fit_clients=2, tolerate_failures=True)


def test_bytes_accounting_counts_selected_and_replies() -> None:
    # Prepare
    clients = {f"c{i}": c for i, c in enumerate(_clients(num_clients=4).values())}
    initial = _initial()
    nbytes = weights_nbytes(initial)
    # Execute
    result = run_rounds(clients, FedAvg(), initial, num_rounds=3, fraction_fit=0.5, seed=2)
    # Assert
    assert nbytes == sum(w.size for w in initial) * 4
    for r in result.rounds:
        assert len(r.selected) == 2
        assert r.bytes_sent == 2 * nbytes
        assert r.bytes_received == 2 * nbytes
    assert result.bytes_sent == result.bytes_received == 3 * 2 * nbytes


def test_two_rounds_then_resume_for_two_equals_four_rounds_straight() -> None:
    # Prepare
    clients = {f"c{i}": c for i, c in enumerate(_clients(num_clients=4).values())}
    straight = run_rounds(
        clients, FedAvgM(server_momentum=0.7), _initial(), num_rounds=4, fraction_fit=0.5, seed=5
    )
    first_strategy = FedAvgM(server_momentum=0.7)
    first = run_rounds(clients, first_strategy, _initial(), num_rounds=2, fraction_fit=0.5, seed=5)
    # Execute: a fresh strategy restored from the checkpointed state, the weights and the RNG state
    resumed_strategy = FedAvgM(server_momentum=0.7)
    resumed_strategy.load_state_dict(first_strategy.state_dict())
    second = run_rounds(
        clients,
        resumed_strategy,
        first.weights,
        num_rounds=4,
        fraction_fit=0.5,
        seed=999,  # ignored: the RNG state wins
        start_round=3,
        rng_state=first.rng_state,
    )
    # Assert
    assert [r.server_round for r in second.rounds] == [3, 4]
    assert [r.selected for r in first.rounds + second.rounds] == [r.selected for r in straight.rounds]
    for a, b in zip(second.weights, straight.weights, strict=True):
        np.testing.assert_array_equal(a, b)
