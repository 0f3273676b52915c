"""Reference test: our strategies against Flower 1.41's own Message-API strategies on the same replies.

FedAvg, FedAvgM, FedProx, FedAdam, FedYogi, FedMedian, FedTrimmedAvg, Krum, MultiKrum, Bulyan, and norm
bounding (= Flower's server-side fixed clipping over FedAvg without noise), each over several rounds with
server state carried, to 1e-6; some replies are outliers so the robust rules have something to reject.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import flwr.app as flwr_app
import flwr.serverapp.strategy as flwr_strategy
import numpy as np
import pytest

from fediot.config import FederatedConfig, FLConfig
from fediot.federated.settings import fit_config, strategy_for
from fediot.federated.strategy import (
    Bulyan,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    MultiKrum,
    NormBoundedAvg,
    Strategy,
)
from fediot.federated.types import ClientUpdate, Weights
from flower_reference import FixedNodesGrid, task_identity

pytestmark = pytest.mark.flower

SHAPES = [(5, 3), (3,), (2, 5)]
NUM_NODES = 4


@pytest.fixture(autouse=True)
def _task_identity() -> Iterator[None]:
    with task_identity():
        yield


def _client_weights(rng: np.random.Generator, start: Weights, scale: float = 0.1) -> Weights:
    """A plausible local update: the start weights plus a client-specific step."""
    return [(w + rng.normal(0.0, scale, w.shape)).astype(np.float32) for w in start]


def _run_both(
    ours: Strategy,
    theirs: Any,
    *,
    num_rounds: int,
    seed: int,
    num_nodes: int = NUM_NODES,
    outliers: int = 0,
    configs: list[dict[str, Any]] | None = None,
) -> list[tuple[Weights, Weights]]:
    """Feed identical client replies to both strategies for ``num_rounds``; return both globals per round.

    The first ``outliers`` replies of each round take a 30x larger step (hostile-looking updates).
    ``configs`` collects the training config Flower's strategy sent to each node.
    """
    rng = np.random.default_rng(seed)
    grid = FixedNodesGrid(list(range(1, num_nodes + 1)))
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
        for k, msg in enumerate(instructions):
            if configs is not None:
                configs.append(dict(msg.content["config"]))
            local = _client_weights(rng, ours_w, 3.0 if k < outliers else 0.1)
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


def _assert_same(history: list[tuple[Weights, Weights]], num_rounds: int) -> None:
    assert len(history) == num_rounds
    for ours_w, theirs_w in history:
        for a, b in zip(ours_w, theirs_w, strict=True):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def _nodes(n: int) -> dict[str, int]:
    return {"min_train_nodes": n, "min_available_nodes": n}


@pytest.mark.parametrize("num_nodes", [4, 5])  # even and odd: the median of two middle values, or one
def test_fedmedian_matches_flower_fedmedian(num_nodes: int) -> None:
    # Execute: one outlier per round
    history = _run_both(
        FedMedian(), flwr_strategy.FedMedian(**_nodes(num_nodes)), num_rounds=4, seed=4,
        num_nodes=num_nodes, outliers=1,
    )  # fmt: skip
    # Assert
    _assert_same(history, 4)


@pytest.mark.parametrize(("beta", "num_nodes"), [(0.2, 5), (0.3, 7), (0.0, 4)])
def test_fedtrimmedavg_matches_flower_fedtrimmedavg(beta: float, num_nodes: int) -> None:
    # Execute
    history = _run_both(
        FedTrimmedAvg(trimmed_fraction=beta), flwr_strategy.FedTrimmedAvg(**_nodes(num_nodes), beta=beta),
        num_rounds=4, seed=5, num_nodes=num_nodes, outliers=1,
    )  # fmt: skip
    # Assert
    _assert_same(history, 4)


@pytest.mark.parametrize("f", [0, 1, 2])
def test_krum_matches_flower_krum(f: int) -> None:
    # Execute: f outliers among 7
    history = _run_both(
        Krum(num_malicious=f), flwr_strategy.Krum(**_nodes(7), num_malicious_nodes=f),
        num_rounds=4, seed=6, num_nodes=7, outliers=f,
    )  # fmt: skip
    # Assert
    _assert_same(history, 4)


@pytest.mark.parametrize(("f", "m"), [(1, 3), (2, 4), (0, 6)])
def test_multikrum_matches_flower_multikrum(f: int, m: int) -> None:
    # Execute
    history = _run_both(
        MultiKrum(num_malicious=f, num_to_select=m),
        flwr_strategy.MultiKrum(**_nodes(7), num_malicious_nodes=f, num_nodes_to_select=m),
        num_rounds=4, seed=7, num_nodes=7, outliers=f,
    )  # fmt: skip
    # Assert
    _assert_same(history, 4)


@pytest.mark.parametrize(("f", "num_nodes"), [(1, 7), (1, 9), (2, 11), (0, 4)])
def test_bulyan_matches_flower_bulyan(f: int, num_nodes: int) -> None:
    # Execute
    history = _run_both(
        Bulyan(num_malicious=f), flwr_strategy.Bulyan(**_nodes(num_nodes), num_malicious_nodes=f),
        num_rounds=4, seed=8, num_nodes=num_nodes, outliers=f,
    )  # fmt: skip
    # Assert
    _assert_same(history, 4)


def test_bulyan_refuses_too_few_replies_where_flower_skips_the_round() -> None:
    # Prepare: 6 < 4 f + 3 = 7 replies
    from fediot.federated.aggregate import AggregationError

    updates = [ClientUpdate([np.full(2, float(k), np.float32)], 10, {}) for k in range(6)]
    # Execute / Assert: Flower returns None (keeps the old model); we fail loudly, naming the key
    with pytest.raises(AggregationError, match=r"federated.num_malicious=1 needs at least 7"):
        Bulyan(num_malicious=1).aggregate(1, [np.zeros(2, np.float32)], updates)


@pytest.mark.parametrize("clip_norm", [0.5, 100.0])  # about half clipped / none clipped
def test_norm_bounded_matches_flower_server_side_fixed_clipping_without_noise(clip_norm: float) -> None:
    # Prepare
    theirs = flwr_strategy.DifferentialPrivacyServerSideFixedClipping(
        flwr_strategy.FedAvg(**_nodes(5)),
        noise_multiplier=0.0,
        clipping_norm=clip_norm,
        num_sampled_clients=5,
    )
    # Execute
    history = _run_both(
        NormBoundedAvg(clip_norm=clip_norm), theirs, num_rounds=4, seed=9, num_nodes=5, outliers=1
    )
    # Assert
    _assert_same(history, 4)


def test_norm_bounding_really_clips_the_outlier() -> None:
    # Prepare: one client far away
    current = [np.zeros(3, np.float32)]
    updates = [
        ClientUpdate([np.full(3, 0.01, np.float32)], 1, {}),
        ClientUpdate([np.full(3, 100.0, np.float32)], 1, {}),
    ]
    # Execute
    out = NormBoundedAvg(clip_norm=1.0).aggregate(1, current, updates)
    # Assert: the outlier contributes at most clip_norm / 2 to the norm of the mean
    assert float(np.linalg.norm(out[0])) <= 0.5 + float(np.linalg.norm(np.full(3, 0.005))) + 1e-6


def test_fedprox_matches_flower_fedprox_and_sends_the_same_proximal_mu() -> None:
    # Prepare: ours from the schema, as every transport builds it
    cfg = FLConfig(federated=FederatedConfig(strategy="fedprox", proximal_mu=0.3))
    ours = strategy_for(cfg)
    assert isinstance(ours, FedProx)
    theirs = flwr_strategy.FedProx(**_nodes(NUM_NODES), proximal_mu=0.3)
    sent: list[dict[str, Any]] = []
    # Execute
    history = _run_both(ours, theirs, num_rounds=3, seed=10, configs=sent)
    # Assert: FedAvg on the server, and Flower's config key/value is what our fit config sends
    _assert_same(history, 3)
    assert sent
    assert all(c["proximal-mu"] == 0.3 for c in sent)
    assert fit_config(cfg)(1)["proximal-mu"] == 0.3


@pytest.mark.parametrize(("eta", "b1", "b2", "tau"), [(0.1, 0.9, 0.99, 1e-3), (0.03, 0.5, 0.9, 1e-2)])
def test_fedadam_matches_flower_fedadam_over_rounds(eta: float, b1: float, b2: float, tau: float) -> None:
    # Prepare
    ours = FedAdam(eta=eta, beta_1=b1, beta_2=b2, tau=tau)
    theirs = flwr_strategy.FedAdam(**_nodes(NUM_NODES), eta=eta, beta_1=b1, beta_2=b2, tau=tau)
    # Execute
    history = _run_both(ours, theirs, num_rounds=5, seed=11)
    # Assert
    _assert_same(history, 5)
    assert ours.moments_ is not None


@pytest.mark.parametrize(("eta", "b1", "b2", "tau"), [(0.01, 0.9, 0.99, 1e-3), (0.05, 0.0, 0.5, 1e-2)])
def test_fedyogi_matches_flower_fedyogi_over_rounds(eta: float, b1: float, b2: float, tau: float) -> None:
    # Prepare
    ours = FedYogi(eta=eta, beta_1=b1, beta_2=b2, tau=tau)
    theirs = flwr_strategy.FedYogi(**_nodes(NUM_NODES), eta=eta, beta_1=b1, beta_2=b2, tau=tau)
    # Execute
    history = _run_both(ours, theirs, num_rounds=5, seed=12)
    # Assert
    _assert_same(history, 5)


@pytest.mark.parametrize("cls", [FedAdam, FedYogi])
def test_server_optimiser_state_survives_state_dict_round_trip_like_flower(cls: type[FedAdam]) -> None:
    # Prepare: 2 rounds, state_dict into a fresh strategy, 2 more rounds vs Flower 4 rounds straight
    theirs = getattr(flwr_strategy, cls.__name__)(**_nodes(NUM_NODES), eta=0.05, beta_1=0.8, beta_2=0.9)

    class _Resuming:
        name = cls.__name__.lower()

        def __init__(self) -> None:
            self.inner = cls(eta=0.05, beta_1=0.8, beta_2=0.9)

        def aggregate(self, server_round: int, current: Weights, updates: list[ClientUpdate]) -> Weights:
            if server_round == 3:
                restored = cls(eta=0.05, beta_1=0.8, beta_2=0.9)
                restored.load_state_dict(self.inner.state_dict())
                self.inner = restored
            return self.inner.aggregate(server_round, current, updates)

        def state_dict(self) -> dict[str, Any]:
            return self.inner.state_dict()

        def load_state_dict(self, state: dict[str, Any]) -> None:
            self.inner.load_state_dict(state)

    # Execute
    history = _run_both(_Resuming(), theirs, num_rounds=4, seed=13)
    # Assert
    _assert_same(history, 4)


def test_reference_comparison_detects_a_different_robust_parameter() -> None:
    # Prepare: guard against a vacuous comparison: trimming 0.3 vs 0.0 must be visible with an outlier
    history = _run_both(
        FedTrimmedAvg(trimmed_fraction=0.3), flwr_strategy.FedTrimmedAvg(**_nodes(7), beta=0.0),
        num_rounds=2, seed=5, num_nodes=7, outliers=1,
    )  # fmt: skip
    # Assert
    ours_w, theirs_w = history[-1]
    assert max(float(np.abs(a - b).max()) for a, b in zip(ours_w, theirs_w, strict=True)) > 1e-3
