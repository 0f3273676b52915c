"""Reference tests: our DP-FedAvg and accountant against Flower 1.41's DP wrappers and RdpAccountant.

Flower draws its DP noise from NumPy's global generator (``np.random.normal``); we seed it and hand our
mechanism a ``RandomState`` with the same seed, so both draw the same numbers in the same order and the
released models must be equal.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import flwr.app as flwr_app
import flwr.serverapp.strategy as flwr_strategy
import numpy as np
import pytest

from fediot.federated.privacy import DPFedAvg, PrivacyAccountant, PrivacyBudgetExceeded
from fediot.federated.strategy import FedAvg
from fediot.federated.types import ClientUpdate, Weights
from flower_reference import FixedNodesGrid, task_identity

pytestmark = pytest.mark.flower

SHAPES = [(6, 4), (4,), (3, 6)]
NUM_NODES = 5


@pytest.fixture(autouse=True)
def _task_identity() -> Iterator[None]:
    with task_identity():
        yield


def _norm(ws: Weights) -> float:
    return math.sqrt(sum(float(np.sum(w.astype(np.float64) ** 2)) for w in ws))


def _run_both(ours: DPFedAvg, theirs: Any, *, rounds: int, seed: int) -> list[dict[str, Any]]:
    """Feed identical replies (equal weights) to both; per round return both releases and the clip norms."""
    rng = np.random.default_rng(seed)
    grid = FixedNodesGrid(list(range(1, NUM_NODES + 1)))
    current: Weights = [rng.normal(0.0, 1.0, s).astype(np.float32) for s in SHAPES]
    out = []
    for server_round in range(1, rounds + 1):
        instructions = list(
            theirs.configure_train(
                server_round, flwr_app.ArrayRecord([w.copy() for w in current]), flwr_app.ConfigRecord(), grid
            )
        )
        replies, updates = [], []
        for k, msg in enumerate(instructions):
            step = 0.05 * (k + 1)  # norms from small to large: some replies clipped, some not
            local = [(w + rng.normal(0.0, step, w.shape)).astype(np.float32) for w in current]
            updates.append(ClientUpdate([w.copy() for w in local], 100, {}))
            content = flwr_app.RecordDict(
                {
                    "arrays": flwr_app.ArrayRecord([w.copy() for w in local]),
                    "metrics": flwr_app.MetricRecord({"num-examples": 100}),
                }
            )
            replies.append(flwr_app.Message(content, reply_to=msg))
        norm_before = ours.clipping_norm
        norms = [_norm([u - c for u, c in zip(up.weights, current, strict=True)]) for up in updates]
        noise_seed = 1000 + server_round
        ours.rng = np.random.RandomState(noise_seed)
        mine = ours.aggregate(server_round, current, updates)
        np.random.seed(noise_seed)  # noqa: NPY002  # Flower draws from the global generator
        arrays, _ = theirs.aggregate_train(server_round, replies)
        flower = [np.asarray(w) for w in arrays.to_numpy_ndarrays()]
        out.append(
            {"ours": mine, "theirs": flower, "current": current, "updates": updates,
             "norm_before": norm_before, "ours_norm_after": ours.clipping_norm,
             "theirs_norm_after": getattr(theirs, "clipping_norm", None), "update_norms": norms}
        )  # fmt: skip
        current = mine
    return out


def _clipped_mean(current: Weights, updates: list[ClientUpdate], norm: float) -> Weights:
    """The noiseless clipped mean, with Flower's own clipping function."""
    from flwr.supercore.differential_privacy import compute_clip_model_update

    restored = []
    for u in updates:
        w = [x.copy() for x in u.weights]
        compute_clip_model_update(w, [c.copy() for c in current], norm)
        restored.append(w)
    return [np.mean([r[i] for r in restored], axis=0) for i in range(len(current))]


def test_fixed_clipping_equals_flower_server_side_fixed_clipping_draw_for_draw() -> None:
    # Prepare
    z, clip = 0.7, 0.4
    ours = DPFedAvg(
        FedAvg(), noise_multiplier=z, clipping_norm=clip, num_sampled=NUM_NODES, rng=np.random.RandomState(0)
    )
    inner = flwr_strategy.FedAvg(min_train_nodes=NUM_NODES, min_available_nodes=NUM_NODES)
    theirs = flwr_strategy.DifferentialPrivacyServerSideFixedClipping(inner, z, clip, NUM_NODES)
    # Execute
    history = _run_both(ours, theirs, rounds=3, seed=4)
    # Assert: equal releases; and the comparison is not vacuous (clipping and noise both act)
    for h in history:
        assert min(h["update_norms"]) < clip < max(h["update_norms"])
        for a, b in zip(h["ours"], h["theirs"], strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=2e-6)
        mean = _clipped_mean(h["current"], h["updates"], clip)
        noise = np.concatenate([(a - m).ravel() for a, m in zip(h["ours"], mean, strict=True)])
        assert abs(float(noise.std()) / (z * clip / NUM_NODES) - 1.0) < 0.25  # noise of std z C / m


def test_adaptive_clipping_follows_flower_norms_and_noise_draws() -> None:
    # Prepare: Flower scales the model noise with the norm *after* its update; we use the norm the round's
    # replies were clipped with, so the standardised noise (not the release) is what must be equal
    z, sigma_b = 1.0, 1.5
    ours = DPFedAvg(
        FedAvg(), noise_multiplier=z, clipping_norm=0.3, num_sampled=NUM_NODES, rng=np.random.RandomState(0),
        adaptive=True, target_quantile=0.5, clip_lr=0.2, clipped_count_stddev=sigma_b,
    )  # fmt: skip
    inner = flwr_strategy.FedAvg(min_train_nodes=NUM_NODES, min_available_nodes=NUM_NODES)
    theirs = flwr_strategy.DifferentialPrivacyServerSideAdaptiveClipping(
        inner, z, NUM_NODES, initial_clipping_norm=0.3, target_clipped_quantile=0.5, clip_norm_lr=0.2,
        clipped_count_stddev=sigma_b,
    )  # fmt: skip
    assert ours.model_noise_multiplier_ == pytest.approx(theirs.noise_multiplier, rel=1e-12)
    # Execute
    history = _run_both(ours, theirs, rounds=4, seed=5)
    # Assert
    norms = [h["norm_before"] for h in history]
    assert len(set(norms)) == len(norms)  # the norm really adapts
    for h in history:
        assert h["ours_norm_after"] == pytest.approx(h["theirs_norm_after"], rel=1e-12)
        mean = _clipped_mean(h["current"], h["updates"], h["norm_before"])
        std_ours = ours.model_noise_multiplier_ * h["norm_before"] / NUM_NODES
        std_theirs = theirs.noise_multiplier * h["theirs_norm_after"] / NUM_NODES
        for a, b, m in zip(h["ours"], h["theirs"], mean, strict=True):
            np.testing.assert_allclose((a - m) / std_ours, (b - m) / std_theirs, rtol=0, atol=2e-3)


def test_accountant_equals_flower_rdp_accountant_and_refuses_past_budget() -> None:
    # Prepare: our replace-one accounting charges z/2 per release (sensitivity 2C); Flower's accountant,
    # configured the same way, must give the same epsilon
    from flwr.serverapp import (
        GaussianPrivacyEvent,
        NeighboringRelation,
        PrivacyConfig,
        RdpAccountant,
        SamplingMethod,
    )

    population, sample, z, delta = 9, 5, 3.0, 1e-4
    theirs = RdpAccountant(
        PrivacyConfig(
            target_delta=delta, population_size=population,
            neighboring_relation=NeighboringRelation.REPLACE_ONE,
            sampling_method=SamplingMethod.WITHOUT_REPLACEMENT,
        )
    )  # fmt: skip
    ours = PrivacyAccountant(population=population, delta=delta, budget=None)
    # Execute
    for r in range(1, 11):
        ours.spend(f"round {r}", noise_multiplier=z, sample_size=sample)
        theirs.compose(
            GaussianPrivacyEvent(noise_multiplier=z / 2, sample_size=sample, population_size=population)
        )
        # Assert
        assert ours.epsilon() == pytest.approx(theirs.get_epsilon(delta), rel=1e-9)
    budget = ours.epsilon() * 1.01
    capped = PrivacyAccountant(population=population, delta=delta, budget=budget)
    for r in range(1, 11):
        capped.spend(f"round {r}", noise_multiplier=z, sample_size=sample)
    with pytest.raises(PrivacyBudgetExceeded, match=r"past privacy\.epsilon"):
        capped.spend("round 11", noise_multiplier=z, sample_size=sample)
    assert len(capped.events) == 10
    assert capped.epsilon() <= budget
