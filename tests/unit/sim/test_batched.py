"""Batched training of many clients' autoencoders equals the sequential loop, alone and inside run_rounds.

Tolerances: the batched engine runs the same formulas on batches of the same shapes as the sequential
loop (a step with mixed batch sizes is split per size), and CPU ``bmm`` runs the same GEMM per client as
``nn.Linear``; measured here the weights are bit-identical after 10 FedAvgM rounds for SGD and Adam,
except a 1-row client (a different GEMM path; 1.5e-8 with Adam). We assert bit-identity only for equal
row counts and otherwise 1e-6 (SGD) and 1e-5 (Adam, which amplifies rounding through 1 / sqrt(v))
absolute, robust to another BLAS blocking its products differently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray
from torch import nn

from fediot.federated.client import AutoencoderClient, Client
from fediot.federated.strategy import FedAvgM
from fediot.federated.types import ClientUpdate, Config, Weights
from fediot.models.autoencoder import Autoencoder, AutoencoderConfig
from fediot.models.train import TrainConfig, train_autoencoder
from fediot.models.weights import get_weights, init_module, set_weights
from fediot.sim.batched import BatchedAutoencoderExecutor, train_autoencoders_batched
from fediot.sim.runtime import SimResult, run_rounds

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "nbaiot" / "samples" / "benign_traffic.csv.gz"
NUM_FEATURES = 115
SGD_ATOL = 1e-6
ADAM_ATOL = 1e-5


def _rows() -> NDArray[np.float32]:
    """The 299 shipped real N-BaIoT benign rows, log1p-compressed and standardised."""
    x = np.log1p(np.abs(pd.read_csv(SAMPLE).select_dtypes("number").to_numpy(np.float64)[:, :NUM_FEATURES]))
    return ((x - x.mean(0)) / (x.std(0) + 1e-6)).astype(np.float32)


def _model() -> Autoencoder:
    return Autoencoder(AutoencoderConfig(NUM_FEATURES))


def _initial(seed: int = 0) -> Weights:
    return get_weights(init_module(_model(), seed))


def _sequential(
    weights: Weights, x: NDArray[np.float32], config: TrainConfig, seed: int
) -> tuple[Weights, float]:
    module = _model()
    set_weights(module, weights)
    loss = train_autoencoder(module, x, config, seed=seed)
    return get_weights(module), loss


def _max_abs_diff(a: Weights, b: Weights) -> float:
    return max(float(np.abs(wa - wb).max()) for wa, wb in zip(a, b, strict=True))


class _Identity:
    def transform(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        return x


def _clients(sizes: list[int], config: TrainConfig, *, retrain_every: int = 0) -> dict[str, Client]:
    x = _rows()
    rng = np.random.default_rng(0)
    clients: dict[str, Client] = {}
    for i, n in enumerate(sizes):
        rows = x[rng.choice(x.shape[0], size=n, replace=False)]
        client = AutoencoderClient(
            f"gw{i}",
            _model,
            rows,
            rows[:0],
            config,
            seed=3,
            retrain_every=retrain_every,
            retrain_fraction=0.4,
        )
        client.set_scaler(_Identity())
        clients[client.client_id] = client
    return clients


class _Wrapped:
    """A client that is not an AutoencoderClient (so the executor must call its own ``fit``)."""

    def __init__(self, inner: AutoencoderClient) -> None:
        self.client_id = inner.client_id
        self.inner = inner

    def fit(self, weights: Weights, config: Config) -> ClientUpdate:
        return self.inner.fit(weights, config)


class _RaisingClient:
    def __init__(self, client_id: str) -> None:
        self.client_id = client_id

    def fit(self, weights: Weights, config: Config) -> ClientUpdate:
        raise OSError(f"{self.client_id}: local data unavailable")


def _run(
    clients: dict[str, Client], executor: BatchedAutoencoderExecutor | None, **kwargs: object
) -> SimResult:
    return run_rounds(
        clients,
        FedAvgM(server_momentum=0.9),
        _initial(),
        num_rounds=4,
        seed=7,
        executor=executor,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("config", "atol"),
    [
        (TrainConfig(epochs=2, batch_size=32, lr=0.05, momentum=0.9, weight_decay=1e-3), SGD_ATOL),
        (TrainConfig(epochs=2, batch_size=32, lr=1e-3, optimizer="adam", weight_decay=1e-3), ADAM_ATOL),
    ],
    ids=["sgd-momentum", "adam"],
)
def test_engine_matches_sequential_training_per_client(config: TrainConfig, atol: float) -> None:
    # Prepare: unequal sizes -> unequal step counts, partial last batches, one client smaller than a batch
    x = _rows()
    sizes = [299, 100, 64, 33, 7, 1]
    xs = [x[:n] for n in sizes]
    starts = [_initial(seed) for seed in range(len(sizes))]
    seeds = [11, 12, 13, 14, 15, 16]
    # Execute
    batched = train_autoencoders_batched(_model(), starts, xs, [config] * len(sizes), seeds)
    sequential = [_sequential(w, xk, config, s) for w, xk, s in zip(starts, xs, seeds, strict=True)]
    # Assert
    for (wb, loss_b), (ws, loss_s), w0 in zip(batched, sequential, starts, strict=True):
        assert _max_abs_diff(wb, ws) < atol
        assert _max_abs_diff(wb, w0) > 100 * atol  # it did train
        assert loss_b == pytest.approx(loss_s, rel=1e-5)


def test_engine_is_bit_identical_when_clients_have_equal_row_counts() -> None:
    # Prepare
    x = _rows()
    config = TrainConfig(epochs=1, batch_size=64, lr=1e-3, optimizer="adam")
    xs = [x[:250], x[40:290], x[10:260]]
    # Execute
    batched = train_autoencoders_batched(_model(), [_initial()] * 3, xs, [config] * 3, [1, 2, 3])
    # Assert
    for (wb, loss_b), xk, seed in zip(batched, xs, [1, 2, 3], strict=True):
        ws, loss_s = _sequential(_initial(), xk, config, seed)
        for a, b in zip(wb, ws, strict=True):
            np.testing.assert_array_equal(a, b)
        assert loss_b == loss_s


def test_engine_groups_clients_with_different_configs_and_keeps_input_order() -> None:
    # Prepare: epochs=0 trains nothing (NaN loss, as the sequential loop)
    x = _rows()
    configs = [TrainConfig(lr=0.1), TrainConfig(epochs=0), TrainConfig(lr=0.01, batch_size=16)]
    xs = [x[:120], x[:50], x[100:180]]
    # Execute
    batched = train_autoencoders_batched(_model(), [_initial()] * 3, xs, configs, [5, 6, 7])
    # Assert
    for (wb, loss_b), xk, config, seed in zip(batched, xs, configs, [5, 6, 7], strict=True):
        ws, loss_s = _sequential(_initial(), xk, config, seed)
        assert _max_abs_diff(wb, ws) < SGD_ATOL
        assert loss_b == pytest.approx(loss_s, rel=1e-5, nan_ok=True)
    assert np.isnan(batched[1][1])


def _chain(kind: str) -> nn.Sequential:
    """A Linear/Tanh chain from 115 features back to 115, named by its shape."""
    chains: dict[str, list[nn.Module]] = {
        "final-tanh": [nn.Linear(NUM_FEATURES, 40), nn.Tanh(), nn.Linear(40, NUM_FEATURES), nn.Tanh()],
        "no-tanh": [nn.Linear(NUM_FEATURES, 40), nn.Linear(40, NUM_FEATURES)],
        "single-linear-tanh": [nn.Linear(NUM_FEATURES, NUM_FEATURES), nn.Tanh()],
        "three-layers-final-tanh": [
            nn.Linear(NUM_FEATURES, 60),
            nn.Tanh(),
            nn.Linear(60, 30),
            nn.Linear(30, NUM_FEATURES),
            nn.Tanh(),
        ],
    }
    return init_module(nn.Sequential(*chains[kind]), 0)  # type: ignore[return-value]


@pytest.mark.parametrize("kind", ["final-tanh", "no-tanh", "single-linear-tanh", "three-layers-final-tanh"])
@pytest.mark.parametrize(
    ("config", "atol"),
    [
        (TrainConfig(epochs=2, batch_size=32, lr=0.05, momentum=0.9), SGD_ATOL),
        (TrainConfig(epochs=2, batch_size=32, lr=1e-3, optimizer="adam"), ADAM_ATOL),
    ],
    ids=["sgd-momentum", "adam"],
)
def test_engine_matches_sequential_training_for_any_linear_tanh_chain(
    kind: str, config: TrainConfig, atol: float
) -> None:
    # Prepare: a final Tanh after the output layer used to be ignored by the backward pass (2.7e-2 off)
    x = _rows()
    sizes = [299, 70, 5]
    xs = [x[:n] for n in sizes]
    start = get_weights(_chain(kind))
    # Execute
    batched = train_autoencoders_batched(_chain(kind), [start] * 3, xs, [config] * 3, [1, 2, 3])
    # Assert
    for (wb, loss_b), xk, seed in zip(batched, xs, [1, 2, 3], strict=True):
        module = _chain(kind)
        loss_s = train_autoencoder(module, xk, config, seed=seed)
        assert _max_abs_diff(wb, get_weights(module)) < atol
        assert _max_abs_diff(wb, start) > 100 * atol  # it did train
        assert loss_b == pytest.approx(loss_s, rel=1e-5)


def test_executor_equals_client_fit_for_a_chain_ending_in_tanh() -> None:
    # Prepare: AutoencoderClients whose model is Sequential(Linear, Tanh, Linear, Tanh)
    config = TrainConfig(epochs=2, batch_size=32, lr=0.05, momentum=0.5)
    x = _rows()
    clients = []
    for i, n in enumerate([299, 120, 45]):
        client = AutoencoderClient(
            f"gw{i}", lambda: _chain("final-tanh"), x[:n], x[:0], config, seed=i, retrain_every=0
        )
        client.set_scaler(_Identity())
        clients.append(client)
    start = get_weights(_chain("final-tanh"))
    round_config: Config = {"server-round": 1}
    # Execute
    replies = BatchedAutoencoderExecutor().fit_round(clients, start, round_config, fail_fast=True)
    # Assert
    for reply, client in zip(replies, clients, strict=True):
        assert isinstance(reply, ClientUpdate)
        expected = client.fit(start, round_config)
        assert _max_abs_diff(reply.weights, expected.weights) < SGD_ATOL
        assert _max_abs_diff(reply.weights, start) > 100 * SGD_ATOL
        assert float(reply.metrics["train_loss"]) == pytest.approx(
            float(expected.metrics["train_loss"]), rel=1e-5
        )


def test_engine_rejects_a_chain_that_does_not_reconstruct_its_input() -> None:
    # Prepare: 4 features in, 3 out: not an autoencoder
    module = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    x = np.zeros((5, 4), np.float32)
    # Execute / Assert
    with pytest.raises(TypeError, match=r"last Linear's output width \(3\) must equal .* input width \(4\)"):
        train_autoencoders_batched(module, [get_weights(module)], [x], [TrainConfig()], [0])


def test_engine_rejects_modules_that_are_not_linear_tanh_chains() -> None:
    # Prepare
    module = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 4))
    x = np.zeros((5, 4), np.float32)
    # Execute / Assert
    with pytest.raises(TypeError, match="Linear layers each optionally followed by Tanh"):
        train_autoencoders_batched(module, [get_weights(module)], [x], [TrainConfig()], [0])


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(epochs=1, batch_size=32, lr=0.05, momentum=0.5),
        TrainConfig(epochs=1, batch_size=32, lr=1e-3, optimizer="adam"),
    ],
    ids=["sgd", "adam"],
)
def test_run_rounds_batched_equals_sequential_with_retraining_and_partial_selection(
    config: TrainConfig,
) -> None:
    # Prepare: retraining every 2nd round, 3 of 5 clients per round, unequal sizes
    clients = _clients([299, 180, 90, 45, 20], config, retrain_every=2)
    atol = ADAM_ATOL if config.optimizer == "adam" else SGD_ATOL
    # Execute
    sequential = _run(clients, None, fraction_fit=0.6)
    batched = _run(clients, BatchedAutoencoderExecutor(), fraction_fit=0.6)
    # Assert
    assert [r.selected for r in batched.rounds] == [r.selected for r in sequential.rounds]
    assert all(len(r.selected) == 3 for r in batched.rounds)
    assert _max_abs_diff(batched.weights, sequential.weights) < atol
    assert _max_abs_diff(batched.weights, _initial()) > 100 * atol
    for rb, rs in zip(batched.rounds, sequential.rounds, strict=True):
        assert rb.train_loss == pytest.approx(rs.train_loss, rel=1e-4)
        assert rb.bytes_received == rs.bytes_received


def test_executor_reports_retraining_and_falls_back_to_fit_for_other_clients() -> None:
    # Prepare: one client hidden behind a wrapper, one that fails
    config = TrainConfig(epochs=1, batch_size=32, lr=0.05)
    inner = _clients([120, 80, 60], config, retrain_every=1)
    clients: dict[str, Client] = {"gw0": inner["gw0"], "gw1": _Wrapped(inner["gw1"]), "gw2": inner["gw2"]}  # type: ignore[arg-type]
    clients["broken"] = _RaisingClient("broken")
    executor = BatchedAutoencoderExecutor()
    round_config: Config = {"server-round": 3}
    # Execute
    replies = executor.fit_round(list(clients.values()), _initial(), round_config, fail_fast=False)
    result = _run(clients, executor, min_fit_clients=3, tolerate_failures=True)
    # Assert
    assert isinstance(replies[3], OSError)
    for reply, cid in zip(replies[:3], ["gw0", "gw1", "gw2"], strict=True):
        assert isinstance(reply, ClientUpdate)
        expected = inner[cid].fit(_initial(), round_config)
        assert reply.metrics["retrained"] is True
        assert reply.num_examples == expected.num_examples
        assert _max_abs_diff(reply.weights, expected.weights) < SGD_ATOL
        assert float(reply.metrics["train_loss"]) == pytest.approx(
            float(expected.metrics["train_loss"]), rel=1e-5
        )
    assert [r.failures for r in result.rounds] == [1, 1, 1, 1]


def test_executor_propagates_a_client_error_without_tolerance() -> None:
    # Prepare
    clients = _clients([50, 40], TrainConfig())
    clients["broken"] = _RaisingClient("broken")
    # Execute / Assert
    with pytest.raises(OSError, match="local data unavailable"):
        _run(clients, BatchedAutoencoderExecutor())
