"""Secure aggregation: the configurations it refuses, and the engine folding one weighted mean per round."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from fediot.config import FLConfig, fl_config_from_run_config
from fediot.errors import ConfigError
from fediot.federated.aggregate import aggregate_fedavg
from fediot.federated.engine import Request, RoundFailedError, SecureAggregate, run_fl
from fediot.federated.settings import init_seed
from fediot.federated.types import ClientUpdate, Weights
from fediot.models.autoencoder import Autoencoder, AutoencoderConfig
from fediot.models.weights import get_weights, init_module
from fediot.sim.runtime import InProcessTransport
from gateway_clients import sample_gateways


def _cfg(server: dict[str, Any] | None = None, **federated: Any) -> FLConfig:
    fed = {"rounds": 3, "fraction_fit": 0.75, "min_fit_clients": 2, "local_epochs": 1, **federated}
    return FLConfig.from_dict(
        {
            "seed": 3,
            "federated": fed,
            "train": {"batch_size": 32},
            "server": {"min_available_clients": 3, **(server or {})},
        }
    )


def _secure(**federated: Any) -> FLConfig:
    return _cfg({"secure_aggregation": True}, **federated)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"strategy": "krum"}, "federated.strategy='krum' needs each update"),
        ({"strategy": "median"}, "federated.strategy='median' needs each update"),
        ({"strategy": "trimmed-mean"}, "federated.strategy='trimmed-mean' needs each update"),
        ({"strategy": "norm-bounded"}, "federated.strategy='norm-bounded' needs each update"),
        ({"statistics": "trimmed"}, "federated.statistics='trimmed' needs each summary"),
        ({"min_fit_clients": 1}, "SecAgg+ needs federated.min_fit_clients >= 2"),
    ],
)
def test_combinations_that_need_individual_updates_are_refused_naming_the_key(
    overrides: dict[str, Any], message: str
) -> None:
    # Execute / Assert: one line, naming both keys
    with pytest.raises(ConfigError) as exc:
        _secure(**overrides)
    text = str(exc.value)
    assert "\n" not in text
    assert text.startswith("server.secure_aggregation=true gives the server only the sum")
    assert message in text


def test_central_dp_is_refused_and_local_dp_is_allowed() -> None:
    # Prepare
    privacy = {"noise_multiplier": 0.5, "clipping_norm": 1.0}
    base = {"seed": 0, "server": {"secure_aggregation": True}, "federated": {"min_fit_clients": 2}}
    # Execute / Assert
    with pytest.raises(ConfigError, match=r"privacy.mechanism='central' clips each update on the server"):
        FLConfig.from_dict({**base, "privacy": {"mechanism": "central", **privacy}})
    local = FLConfig.from_dict({**base, "privacy": {"mechanism": "local", **privacy}})
    assert local.server.secure_aggregation
    assert local.privacy.mechanism == "local"


def test_run_config_keys_and_protocol_parameters_are_checked() -> None:
    # Execute
    cfg = fl_config_from_run_config(
        {
            "server.secure-aggregation": True,
            "server.secagg-reconstruction-threshold": 2,
            "server.secagg-num-shares": 3,
        }
    )
    # Assert
    assert cfg.server.secure_aggregation
    assert (cfg.server.secagg_num_shares, cfg.server.secagg_reconstruction_threshold) == (3, 2)
    with pytest.raises(
        ConfigError, match=r"server.secagg_reconstruction_threshold \(3\) must be < server.secagg"
    ):
        fl_config_from_run_config(
            {"server.secagg-reconstruction-threshold": 3, "server.secagg-num-shares": 3}
        )
    with pytest.raises(ConfigError, match=r"server.secagg_num_shares must be 0 \(all\) or >= 3, got 2"):
        fl_config_from_run_config({"server.secagg-num-shares": 2})
    with pytest.raises(ConfigError, match=r"server.secure_aggregation: expected true or false"):
        fl_config_from_run_config({"server.secure-aggregation": "yes"})


def test_fediot_server_flag_forces_secure_aggregation_on_every_run(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    from fediot.flower.secagg import SECURE_AGGREGATION_ENV, require_secure_aggregation

    plain, robust = _cfg(), _cfg(strategy="krum")
    assert require_secure_aggregation(plain) is plain  # not set: unchanged
    monkeypatch.setenv(SECURE_AGGREGATION_ENV, "1")
    # Execute / Assert: turned on; a configuration it cannot serve is refused
    assert require_secure_aggregation(plain).server.secure_aggregation
    with pytest.raises(ConfigError, match=r"federated.strategy='krum' needs each update"):
        require_secure_aggregation(robust)


class _SummingTransport(InProcessTransport):
    """The in-process transport plus a reference secure aggregation: the exact weighted mean, nothing else.

    ``drop``: clients that fail in every training round (their update is missing from the mean).
    """

    def __init__(self, clients: Any, drop: Sequence[str] = ()) -> None:
        super().__init__(clients)
        self.drop = set(drop)
        self.secure_calls = 0

    def send_secure(self, client_ids: Sequence[str], request: Request) -> SecureAggregate:
        self.secure_calls += 1
        kept = [c for c in client_ids if c not in self.drop]
        replies = [r for r in self.send(kept, request) if isinstance(r, ClientUpdate)]
        total = sum(u.num_examples for u in replies)
        loss = sum(float(u.metrics["train_loss"]) * u.num_examples for u in replies) / total
        mean = aggregate_fedavg([(u.weights, u.num_examples) for u in replies])
        return SecureAggregate(mean, kept, [c for c in client_ids if c in self.drop], loss)


def _initial(cfg: FLConfig) -> Weights:
    return get_weights(init_module(Autoencoder(AutoencoderConfig(115)), init_seed(cfg.seed)))


@pytest.mark.parametrize("strategy", ["fedavg", "fedavgm", "fedadam"])
def test_folding_the_secure_mean_gives_the_plain_run(strategy: str) -> None:
    # Prepare
    plain_cfg, secure_cfg = _cfg(strategy=strategy), _secure(strategy=strategy)
    transport = _SummingTransport(sample_gateways(secure_cfg, 4))
    # Execute
    plain = run_fl(InProcessTransport(sample_gateways(plain_cfg, 4)), plain_cfg, _initial(plain_cfg))
    secure = run_fl(transport, secure_cfg, _initial(secure_cfg))
    # Assert: every round went through send_secure; same selection, weights, losses, threshold
    assert transport.secure_calls == 3
    assert [r.selected for r in secure.rounds] == [r.selected for r in plain.rounds]
    for a, b in zip(secure.weights, plain.weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        [r.train_loss for r in secure.rounds], [r.train_loss for r in plain.rounds], rtol=1e-9
    )
    assert secure.threshold == pytest.approx(plain.threshold, rel=1e-5)


def test_a_dropped_gateway_is_counted_and_refused_without_tolerance() -> None:
    # Prepare
    cfg = _secure(fraction_fit=1.0, tolerate_failures=True)
    strict = _secure(fraction_fit=1.0, tolerate_failures=False)
    # Execute
    result = run_fl(_SummingTransport(sample_gateways(cfg, 3), drop=["gw2"]), cfg, _initial(cfg))
    # Assert
    assert [r.failures for r in result.rounds] == [1, 1, 1]
    with pytest.raises(Exception, match=r"dropped out of the secure aggregation: gw2"):
        run_fl(_SummingTransport(sample_gateways(strict, 3), drop=["gw2"]), strict, _initial(strict))
    too_few = _secure(fraction_fit=1.0, min_fit_clients=3, tolerate_failures=True)
    with pytest.raises(RoundFailedError, match=r"only 2 of 3 clients"):
        run_fl(_SummingTransport(sample_gateways(too_few, 3), drop=["gw2"]), too_few, _initial(too_few))


def test_a_transport_without_secure_aggregation_is_refused() -> None:
    # Prepare
    cfg = _secure()
    # Execute / Assert
    with pytest.raises(ConfigError, match=r"server.secure_aggregation needs the Flower transport"):
        run_fl(InProcessTransport(sample_gateways(cfg, 4)), cfg, _initial(cfg))


def test_a_gateway_refuses_to_upload_what_secagg_would_clip_or_overflow() -> None:
    # Prepare: a real gateway (scaled rows), the global model, and the two bounds the server sends
    from fediot.data.scaling import make_scaler
    from fediot.federated.privacy import LOCAL_CLIP, LOCAL_NOISE
    from fediot.flower.secagg import CLIPPING_KEY, MAX_WEIGHT_KEY, secure_fit

    cfg = _secure()
    gateway = sample_gateways(cfg, 4)["gw0"]
    stats = gateway.feature_stats("minmax")  # type: ignore[attr-defined]
    gateway.set_scaler(make_scaler("minmax", stats))  # type: ignore[attr-defined]
    weights = _initial(cfg)
    ok = {"server-round": 1, CLIPPING_KEY: 1.0, MAX_WEIGHT_KEY: 1000.0}
    # Execute / Assert: within bounds, the plain client's update, unchanged
    update = secure_fit(gateway, weights, ok)
    assert update.num_examples == gateway.num_train  # type: ignore[attr-defined]
    plain = gateway.fit(weights, {"server-round": 1})
    assert all(np.array_equal(a, b) for a, b in zip(update.weights, plain.weights, strict=True))
    # local DP runs before masking (the weights differ from the plain ones; its noise, z C = 0.05 per
    # coordinate here, must fit in the clipping range too)
    noised = secure_fit(gateway, weights, {**ok, LOCAL_CLIP: 0.1, LOCAL_NOISE: 0.5})
    assert not all(np.array_equal(a, b) for a, b in zip(noised.weights, plain.weights, strict=True))
    with pytest.raises(ValueError, match=r"outside server.secagg-clipping-range=0.001"):
        secure_fit(gateway, weights, {**ok, CLIPPING_KEY: 0.001})
    with pytest.raises(ValueError, match=r"exceed server.secagg-max-weight=10"):
        secure_fit(gateway, weights, {**ok, MAX_WEIGHT_KEY: 10.0})
