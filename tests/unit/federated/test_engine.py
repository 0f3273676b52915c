"""The federation engine on the in-process transport: statistics rounds, resume, rejected replies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fediot.config import FLConfig, flatten_config
from fediot.errors import ConfigError, DataError
from fediot.federated.client import AutoencoderClient, Client
from fediot.federated.engine import EngineState, RoundFailedError, run_fl
from fediot.federated.settings import init_seed
from fediot.federated.types import ClientUpdate, Config, Weights
from fediot.flower.checkpoint import check_resumable, load_checkpoint, save_checkpoint
from fediot.models.autoencoder import Autoencoder, AutoencoderConfig
from fediot.models.weights import get_weights, init_module
from fediot.sim.runtime import InProcessTransport
from gateway_clients import sample_gateways

SAMPLES = Path(__file__).resolve().parents[3] / "data" / "nbaiot" / "samples"


def _cfg(**federated: Any) -> FLConfig:
    fed = {"rounds": 4, "fraction_fit": 0.5, "min_fit_clients": 2, "local_epochs": 1, **federated}
    return FLConfig.from_dict({"seed": 7, "federated": fed, "train": {"batch_size": 32}})


def _clients(cfg: FLConfig, n: int = 4) -> dict[str, Client]:
    return sample_gateways(cfg, n)


def _initial(cfg: FLConfig) -> Weights:
    return get_weights(init_module(Autoencoder(AutoencoderConfig(115)), init_seed(cfg.seed)))


def _same(a: Weights, b: Weights) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_two_rounds_checkpoint_resume_two_equals_four_straight_with_scaler_and_threshold(
    tmp_path: Path,
) -> None:
    # Prepare
    cfg = _cfg()
    straight = run_fl(InProcessTransport(_clients(cfg)), cfg, _initial(cfg))
    path = tmp_path / "ckpt.npz"
    first = FLConfig.from_dict({**cfg.to_dict(), "federated": {**cfg.to_dict()["federated"], "rounds": 2}})
    # Execute: 2 rounds, checkpointed; then a fresh process-like resume from the file to round 4
    run_fl(
        InProcessTransport(_clients(first)),
        first,
        _initial(first),
        on_state=lambda s: save_checkpoint(path, s, flatten_config(first)),
    )
    state, saved_config = load_checkpoint(path)
    check_resumable(saved_config, flatten_config(cfg), path)
    resumed = run_fl(InProcessTransport(_clients(cfg)), cfg, [np.zeros(1)], state=state)
    # Assert
    assert state.server_round == 2
    assert _same(resumed.weights, straight.weights)
    assert resumed.scaler is not None
    assert straight.scaler is not None
    for key, value in straight.scaler.to_dict().items():
        np.testing.assert_array_equal(resumed.scaler.to_dict()[key], value)
    assert resumed.threshold == straight.threshold
    assert resumed.local_thresholds == straight.local_thresholds
    assert [r.selected for r in resumed.rounds] == [r.selected for r in straight.rounds]
    assert len({tuple(r.selected) for r in straight.rounds}) > 1  # selection really varies
    assert [r.server_round for r in resumed.rounds] == [1, 2, 3, 4]  # history kept across the resume


def test_resume_refuses_another_configuration_naming_the_key(tmp_path: Path) -> None:
    cfg = _cfg(rounds=1)
    path = tmp_path / "ckpt.npz"
    run_fl(
        InProcessTransport(_clients(cfg)),
        cfg,
        _initial(cfg),
        on_state=lambda s: save_checkpoint(path, s, flatten_config(cfg)),
    )
    _, saved = load_checkpoint(path)
    other = FLConfig.from_dict(
        {"seed": 7, "federated": {"rounds": 4, "min_fit_clients": 2, "local_epochs": 2}}
    )
    with pytest.raises(ConfigError, match=r"federated.local_epochs=1"):
        check_resumable(saved, flatten_config(other), path)
    with pytest.raises(DataError, match="no checkpoint to resume from"):
        load_checkpoint(tmp_path / "missing.npz")


def test_resume_refuses_another_strategy() -> None:
    cfg = _cfg(rounds=1)
    states: list[EngineState] = []
    run_fl(InProcessTransport(_clients(cfg)), cfg, _initial(cfg), on_state=states.append)
    other = _cfg(rounds=2, strategy="fedavg")
    with pytest.raises(ConfigError, match="strategy 'fedavgm'"):
        run_fl(InProcessTransport(_clients(other)), other, _initial(other), state=states[-1])


class _Poisoned:
    """A gateway whose replies carry NaN (one broken cell in its data would do the same)."""

    def __init__(self, inner: AutoencoderClient, *, weights: bool, stats: bool) -> None:
        self.inner, self.client_id = inner, inner.client_id
        self.bad_weights, self.bad_stats = weights, stats

    def fit(self, weights: Weights, config: Config) -> ClientUpdate:
        update = self.inner.fit(weights, config)
        if not self.bad_weights:
            return update
        poisoned = [w.copy() for w in update.weights]
        poisoned[0][0, 0] = np.nan
        return ClientUpdate(poisoned, update.num_examples, update.metrics)

    def set_scaler(self, scaler: Any) -> None:
        self.inner.set_scaler(scaler)

    def feature_stats(self, kind: str) -> Any:
        stats = self.inner.feature_stats(kind)
        if self.bad_stats:
            stats.mean[3] = np.inf
        return stats

    def errors(self, weights: Weights, which: Any = "opt") -> Any:
        return self.inner.errors(weights, which)

    @property
    def x_opt_raw(self) -> Any:
        return self.inner.x_opt_raw


def test_a_nan_update_is_rejected_counted_and_never_reaches_the_global_model() -> None:
    # Prepare
    cfg = _cfg(fraction_fit=1.0, rounds=2)
    clients = _clients(cfg)
    clients["gw1"] = _Poisoned(clients["gw1"], weights=True, stats=False)  # type: ignore[arg-type]
    # Execute
    result = run_fl(InProcessTransport(clients), cfg, _initial(cfg))
    # Assert
    assert all(np.isfinite(w).all() for w in result.weights)
    assert [r.rejected for r in result.rounds] == [["gw1"], ["gw1"]]
    assert [r.failures for r in result.rounds] == [1, 1]
    assert result.threshold is not None
    assert np.isfinite(result.threshold)


def test_a_nan_update_stops_the_run_when_failures_are_not_tolerated() -> None:
    cfg = _cfg(fraction_fit=1.0, rounds=1, tolerate_failures=False)
    clients = _clients(cfg)
    clients["gw2"] = _Poisoned(clients["gw2"], weights=True, stats=False)  # type: ignore[arg-type]
    with pytest.raises(RoundFailedError, match=r"client 'gw2' sent a rejected update: tensor 0 holds"):
        run_fl(InProcessTransport(clients), cfg, _initial(cfg))


def test_non_finite_statistics_are_left_out_of_the_scaler() -> None:
    cfg = _cfg(rounds=1)
    honest = {k: v for k, v in _clients(cfg).items() if k != "gw0"}
    clean = run_fl(InProcessTransport(honest), cfg, _initial(cfg))
    clients = _clients(cfg)
    clients["gw0"] = _Poisoned(clients["gw0"], weights=False, stats=True)  # type: ignore[arg-type]
    result = run_fl(InProcessTransport(clients), cfg, _initial(cfg))
    assert result.scaler is not None
    assert clean.scaler is not None
    for key, value in clean.scaler.to_dict().items():
        np.testing.assert_array_equal(result.scaler.to_dict()[key], value)


def test_quantile_threshold_rule_is_reachable_from_the_configuration() -> None:
    # Prepare
    detect = {"threshold": "quantile", "threshold_q": 0.9}
    cfg = FLConfig.from_dict({**_cfg(rounds=1).to_dict(), "detect": detect})
    clients = _clients(cfg)
    # Execute
    result = run_fl(InProcessTransport(clients), cfg, _initial(cfg))
    # Assert: the federated histogram quantile flags at most 1 - q of the pooled opt rows, and nearly that
    assert result.rule is not None
    assert result.rule.kind == "quantile"
    assert result.threshold is not None
    errors = np.concatenate(
        [c.errors(result.weights, "opt") for c in clients.values()]  # type: ignore[attr-defined]
    )
    flagged = float(np.mean(errors > result.threshold))
    assert 0.05 < flagged <= 0.1
