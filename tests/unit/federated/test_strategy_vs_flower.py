"""Reference test: our FedAvg/FedAvgM against Flower 1.41's own Message-API strategies on the same replies."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import flwr.app as flwr_app
import flwr.serverapp.grid as flwr_grid
import flwr.serverapp.strategy as flwr_strategy
import numpy as np
import pytest

from fediot.federated.strategy import FedAvg, FedAvgM
from fediot.federated.types import ClientUpdate, Weights

pytestmark = pytest.mark.flower

SHAPES = [(5, 3), (3,), (2, 5)]
NUM_NODES = 4


@pytest.fixture(autouse=True)
def _task_identity() -> Iterator[None]:
    """Flower stamps new messages with the process's task identity (set by its runtimes); set one here."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    try:
        yield
    finally:
        TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


class _FixedNodesGrid(flwr_grid.Grid):  # type: ignore[misc, name-defined]
    """A Grid that only knows a fixed set of node ids; the strategies here only ask for those.

    Flower's ``configure_train`` needs a Grid to sample nodes; no message is ever pushed through it.
    """

    def __init__(self, node_ids: list[int]) -> None:
        self._node_ids = node_ids

    def set_run(self, run: Any) -> None:
        raise NotImplementedError

    @property
    def run(self) -> Any:
        raise NotImplementedError

    def create_message(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        return list(self._node_ids)

    def push_messages(self, messages: Any) -> Iterable[str]:
        raise NotImplementedError

    def pull_messages(self, message_ids: Any) -> Iterable[Any]:
        raise NotImplementedError

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> Iterable[Any]:
        raise NotImplementedError


def _client_weights(rng: np.random.Generator, start: Weights) -> Weights:
    """A plausible local update: the start weights plus a client-specific step."""
    return [(w + rng.normal(0.0, 0.1, w.shape)).astype(np.float32) for w in start]


def _run_both(
    ours: FedAvg | FedAvgM, theirs: Any, *, num_rounds: int, seed: int
) -> list[tuple[Weights, Weights]]:
    """Feed identical client replies to both strategies for ``num_rounds``; return both globals per round."""
    rng = np.random.default_rng(seed)
    grid = _FixedNodesGrid(list(range(1, NUM_NODES + 1)))
    ours_w: Weights = [rng.normal(0.0, 1.0, s).astype(np.float32) for s in SHAPES]
    theirs_w: Weights = [w.copy() for w in ours_w]
    history = []
    for server_round in range(1, num_rounds + 1):
        instructions = list(
            theirs.configure_train(
                server_round,
                flwr_app.ArrayRecord([w.copy() for w in theirs_w]),
                flwr_app.ConfigRecord(),
                grid,
            )
        )
        # each client trains from the same global (ours == theirs up to tolerance; use ours as the start)
        replies = []
        updates = []
        for msg in instructions:
            local = _client_weights(rng, ours_w)
            n = int(rng.integers(10, 500))
            updates.append(ClientUpdate(local, n, {"train_loss": 0.0}))
            content = flwr_app.RecordDict(
                {
                    "arrays": flwr_app.ArrayRecord([w.copy() for w in local]),
                    "metrics": flwr_app.MetricRecord({"num-examples": n, "train_loss": 0.0}),
                }
            )
            replies.append(flwr_app.Message(content, reply_to=msg))
        ours_w = ours.aggregate(server_round, ours_w, updates)
        arrays, _ = theirs.aggregate_train(server_round, replies)
        theirs_w = arrays.to_numpy_ndarrays()
        history.append(([w.copy() for w in ours_w], [np.asarray(w) for w in theirs_w]))
    return history


def test_fedavgm_matches_flower_fedavgm_over_rounds_with_momentum() -> None:
    # Prepare: non-default server lr and momentum, state carried over 5 rounds
    ours = FedAvgM(server_learning_rate=0.7, server_momentum=0.8)
    theirs = flwr_strategy.FedAvgM(
        min_train_nodes=NUM_NODES,
        min_available_nodes=NUM_NODES,
        server_learning_rate=0.7,
        server_momentum=0.8,
    )
    # Execute
    history = _run_both(ours, theirs, num_rounds=5, seed=1)
    # Assert
    assert len(history) == 5
    for ours_w, theirs_w in history:
        for a, b in zip(ours_w, theirs_w, strict=True):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    # and the momentum really moved the model away from plain FedAvg (the test would catch beta = 0)
    last_ours = history[-1][0]
    assert ours.momentum_ is not None
    assert max(float(np.abs(m).max()) for m in ours.momentum_) > 1e-3
    assert any(not np.allclose(w, 0.0) for w in last_ours)


def test_fedavgm_state_survives_state_dict_round_trip_like_flower() -> None:
    # Prepare: 2 rounds, checkpoint, fresh strategy, load, 2 more rounds vs Flower over 4 rounds straight
    ours = FedAvgM(server_learning_rate=1.3, server_momentum=0.5)
    theirs = flwr_strategy.FedAvgM(
        min_train_nodes=NUM_NODES,
        min_available_nodes=NUM_NODES,
        server_learning_rate=1.3,
        server_momentum=0.5,
    )

    class _Resuming:
        """Swaps in a fresh FedAvgM restored from a state_dict after round 2."""

        def __init__(self) -> None:
            self.inner = ours

        def aggregate(self, server_round: int, current: Weights, updates: list[ClientUpdate]) -> Weights:
            if server_round == 3:
                restored = FedAvgM(server_learning_rate=1.3, server_momentum=0.5)
                restored.load_state_dict(self.inner.state_dict())
                self.inner = restored
            return self.inner.aggregate(server_round, current, updates)

    # Execute
    history = _run_both(_Resuming(), theirs, num_rounds=4, seed=2)  # type: ignore[arg-type]
    # Assert
    for ours_w, theirs_w in history:
        for a, b in zip(ours_w, theirs_w, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_fedavg_matches_flower_fedavg() -> None:
    # Prepare
    ours = FedAvg()
    theirs = flwr_strategy.FedAvg(min_train_nodes=NUM_NODES, min_available_nodes=NUM_NODES)
    # Execute
    history = _run_both(ours, theirs, num_rounds=3, seed=3)
    # Assert
    for ours_w, theirs_w in history:
        for a, b in zip(ours_w, theirs_w, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_reference_comparison_detects_a_different_momentum() -> None:
    # Prepare: guard against a vacuous comparison: a different beta must be visible at this tolerance
    ours = FedAvgM(server_learning_rate=0.7, server_momentum=0.8)
    theirs = flwr_strategy.FedAvgM(
        min_train_nodes=NUM_NODES,
        min_available_nodes=NUM_NODES,
        server_learning_rate=0.7,
        server_momentum=0.5,
    )
    # Execute
    history = _run_both(ours, theirs, num_rounds=3, seed=1)
    # Assert
    ours_w, theirs_w = history[-1]
    assert max(float(np.abs(a - b).max()) for a, b in zip(ours_w, theirs_w, strict=True)) > 1e-3
