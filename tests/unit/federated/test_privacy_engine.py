"""Differential privacy in the one engine, on real N-BaIoT rows: accounted, budgeted, seeded."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fediot.config import FLConfig
from fediot.data.nbaiot import read_nbaiot_csv
from fediot.data.scaling import SufficientStats
from fediot.errors import ConfigError
from fediot.federated.client import Client
from fediot.federated.engine import run_fl
from fediot.federated.privacy import DPFedAvg, PrivacyAccountant, PrivacyBudgetExceeded, private_merge
from fediot.federated.settings import init_seed
from fediot.federated.strategy import FedAvg
from fediot.federated.types import ClientUpdate, Weights
from fediot.models.autoencoder import Autoencoder, AutoencoderConfig
from fediot.models.weights import get_weights, init_module
from fediot.sim.runtime import InProcessTransport
from gateway_clients import sample_gateways

SAMPLES = Path(__file__).resolve().parents[3] / "data" / "nbaiot" / "samples"


def _cfg(**privacy: Any) -> FLConfig:
    fed = {"rounds": 3, "fraction_fit": 0.5, "min_fit_clients": 2, "local_epochs": 1}
    return FLConfig.from_dict({"seed": 3, "federated": fed, "train": {"batch_size": 32}, "privacy": privacy})


def _clients(cfg: FLConfig, n: int = 4) -> dict[str, Client]:
    return sample_gateways(cfg, n)


def _run(cfg: FLConfig) -> Any:
    initial = get_weights(init_module(Autoencoder(AutoencoderConfig(115)), init_seed(cfg.seed)))
    return run_fl(InProcessTransport(_clients(cfg)), cfg, initial)


def test_central_dp_spends_within_budget_reports_epsilon_and_is_seeded() -> None:
    # Prepare: calibrated to epsilon 8 over 3 rounds + 2 private statistics releases
    cfg = _cfg(mechanism="central", epsilon=8.0, delta=1e-3, statistics=True, clipping_norm=0.5)
    # Execute
    a, b = _run(cfg), _run(cfg)
    plain = _run(_cfg())
    # Assert
    assert a.privacy is not None
    assert plain.privacy is None
    assert 7.0 < a.privacy["epsilon"] <= 8.0  # the calibration uses the budget, and never exceeds it
    assert a.privacy["releases"] == 5  # feature_stats, 3 rounds, error_stats
    assert next(e["what"] for e in a.privacy["events"]) == "feature_stats"
    assert all(np.array_equal(x, y) for x, y in zip(a.weights, b.weights, strict=True))
    assert a.threshold == b.threshold
    assert not all(np.allclose(x, y) for x, y in zip(a.weights, plain.weights, strict=True))
    assert math.isfinite(a.threshold)
    assert a.threshold != plain.threshold


def test_local_dp_noises_replies_on_the_clients_and_accounts_without_amplification() -> None:
    # Prepare
    cfg = _cfg(mechanism="local", noise_multiplier=2.0, clipping_norm=0.5, delta=1e-3)
    # Execute
    res = _run(cfg)
    # Assert: three rounds charged over the whole population (the server knows who took part)
    assert res.privacy is not None
    assert [e["sample_size"] for e in res.privacy["events"]] == [4, 4, 4]
    assert res.privacy["epsilon"] > 0
    assert res.state.strategy == "ldp-fedavgm"


def test_a_planned_run_past_the_budget_is_refused_before_any_work() -> None:
    cfg = _cfg(mechanism="central", noise_multiplier=0.3, epsilon=1.0)
    with pytest.raises(ConfigError, match=r"would spend epsilon=.* past privacy\.epsilon=1"):
        _run(cfg)


def test_config_rejects_dp_without_noise_or_budget() -> None:
    with pytest.raises(ConfigError, match=r"needs privacy\.noise_multiplier or a finite"):
        _cfg(mechanism="central")
    with pytest.raises(ConfigError, match=r"privacy\.statistics needs"):
        _cfg(mechanism="local", noise_multiplier=1.0, statistics=True)


def test_dp_fedavg_refuses_the_release_that_would_cross_the_budget() -> None:
    # Prepare
    current: Weights = [np.zeros(3, np.float32)]
    updates = [ClientUpdate([np.ones(3, np.float32) * k], 10 * k, {}) for k in (1, 2)]
    acc = PrivacyAccountant(population=2, delta=1e-5, budget=None)
    acc.spend("probe", noise_multiplier=1.0, sample_size=2)
    budget = acc.epsilon() * 1.5
    dp = DPFedAvg(
        FedAvg(), noise_multiplier=1.0, clipping_norm=1.0, num_sampled=2, rng=np.random.default_rng(0),
        accountant=PrivacyAccountant(population=2, delta=1e-5, budget=budget),
    )  # fmt: skip
    # Execute / Assert: round 1 fits, round 2 would cross it and is refused before aggregating
    dp.aggregate(1, current, updates)
    with pytest.raises(PrivacyBudgetExceeded, match=r"round 2"):
        dp.aggregate(2, current, updates)
    assert dp.accountant is not None
    assert len(dp.accountant.events) == 1


def test_private_merge_hides_the_extremes_of_one_client() -> None:
    # Prepare: one client has an extreme max; the private merge reports the noised mean client's range
    x = read_nbaiot_csv(SAMPLES / "benign_traffic.csv.gz")[:, :3].astype(np.float64)
    parts = np.array_split(np.log1p(x), 4)
    stats = {f"gw{i}": SufficientStats.from_array(p) for i, p in enumerate(parts)}
    exact_max = max(float(s.max[0]) for s in stats.values())
    # Execute
    merged = private_merge(stats, clipping_norm=1e3, noise_multiplier=1e-9, rng=np.random.default_rng(0))
    # Assert: nearly noiseless here, so the result is the mean of the client maxima, below the true max
    mean_max = float(np.mean([s.max[0] for s in stats.values()]))
    assert merged.max[0] == pytest.approx(mean_max, rel=1e-6)
    assert merged.max[0] <= exact_max
    assert merged.count == 4
