"""Attack clients do what ``fediot.federated.attacks`` says, on real N-BaIoT rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fediot.data.nbaiot import read_nbaiot_csv
from fediot.data.scaling import SufficientStats, make_scaler, scaler_inputs
from fediot.errors import ConfigError
from fediot.federated.attacks import (
    AttackConfig,
    FreeRiderClient,
    ModelPoisoningClient,
    StatisticsPoisoningClient,
    alie_z,
    make_attacker,
    select_malicious,
)
from fediot.federated.client import AutoencoderClient, Client, answer_query
from fediot.federated.statistics import ERROR_STATS, FEATURE_STATS, decode_summary
from fediot.federated.types import Weights
from fediot.models.autoencoder import Autoencoder, AutoencoderConfig
from fediot.models.train import TrainConfig
from fediot.models.weights import get_weights, init_module

SAMPLES = Path(__file__).resolve().parents[3] / "data" / "nbaiot" / "samples"
CONFIG = {"server-round": 2, "local-epochs": 1}


def _model() -> Autoencoder:
    return Autoencoder(AutoencoderConfig(115))


def _clients(n: int = 4) -> dict[str, Client]:
    x = read_nbaiot_csv(SAMPLES / "benign_traffic.csv.gz")
    scaler = make_scaler("log-minmax", SufficientStats.from_array(scaler_inputs("log-minmax", x)))
    out: dict[str, Client] = {}
    for i, idx in enumerate(np.array_split(np.arange(x.shape[0]), n)):
        half = len(idx) // 2
        c = AutoencoderClient(
            f"gw{i}",
            _model,
            x[idx[:half]],
            x[idx[half:]],
            TrainConfig(batch_size=32, lr=1e-3, optimizer="adam"),
            seed=1,
        )
        c.set_scaler(scaler)
        out[c.client_id] = c
    return out


def _w0() -> Weights:
    return get_weights(init_module(_model(), 0))


@pytest.mark.parametrize(("kind", "sign"), [("scale", 1.0), ("sign-flip", -1.0)])
def test_scale_and_sign_flip_send_the_scaled_honest_update(kind: str, sign: float) -> None:
    # Prepare
    honest = _clients()["gw0"]
    w0 = _w0()
    expected = honest.fit(w0, CONFIG)
    # Execute
    reply = ModelPoisoningClient(honest, kind, scale=5.0, seed=0).fit(w0, CONFIG)
    # Assert: w + s u (or w - s u), same example count
    assert reply.num_examples == expected.num_examples
    for got, h, w in zip(reply.weights, expected.weights, w0, strict=True):
        np.testing.assert_allclose(got, w + sign * 5.0 * (h.astype(np.float64) - w), rtol=0, atol=1e-6)


def test_random_noise_is_seeded_and_sized_by_the_honest_update() -> None:
    # Prepare
    honest = _clients()["gw1"]
    w0 = _w0()
    u = [h.astype(np.float64) - w for h, w in zip(honest.fit(w0, CONFIG).weights, w0, strict=True)]
    # Execute
    a = ModelPoisoningClient(honest, "random", scale=10.0, seed=3).fit(w0, CONFIG)
    b = ModelPoisoningClient(honest, "random", scale=10.0, seed=3).fit(w0, CONFIG)
    # Assert: deterministic, and each layer's noise RMS is ~10x the honest update's RMS
    for x, y, w, d in zip(a.weights, b.weights, w0, u, strict=True):
        np.testing.assert_array_equal(x, y)
        if d.size >= 50:
            ratio = np.sqrt(np.mean((x - w) ** 2)) / np.sqrt(np.mean(d**2))
            assert 7.0 < ratio < 13.0


def test_alie_colluders_send_the_mean_minus_z_std_of_their_honest_updates() -> None:
    # Prepare: 3 of 4 clients collude
    clients = _clients()
    malicious = ["gw0", "gw1", "gw2"]
    w0 = _w0()
    deltas = [[h.astype(np.float64) - w for h, w in zip(clients[c].fit(w0, CONFIG).weights, w0, strict=True)]
              for c in malicious]  # fmt: skip
    z = alie_z(4, 3)
    attacked = make_attacker(clients, malicious, AttackConfig(kind="alie", alie_z=0.7), seed=0)
    # Execute
    replies = [attacked[c].fit(w0, CONFIG) for c in malicious]
    # Assert
    assert z == pytest.approx(0.6745, abs=1e-4)  # a colluding majority: s = 1, Phi^-1(3/4)
    for layer, w in enumerate(w0):
        stacked = np.stack([d[layer] for d in deltas])
        expected = w + stacked.mean(axis=0) - 0.7 * stacked.std(axis=0, ddof=1)
        for r in replies:
            np.testing.assert_allclose(r.weights[layer], expected, rtol=0, atol=1e-6)
    assert attacked["gw3"] is clients["gw3"]


def test_free_rider_returns_the_global_weights() -> None:
    honest = _clients()["gw2"]
    w0 = _w0()
    reply = FreeRiderClient(honest).fit(w0, CONFIG)
    assert all(np.array_equal(a, b) for a, b in zip(reply.weights, w0, strict=True))
    assert reply.num_examples == honest.num_train  # type: ignore[attr-defined]


@pytest.mark.parametrize("factor", [1e6, 1e-6])
def test_statistics_poisoning_scales_every_reported_statistic(factor: float) -> None:
    # Prepare
    honest = _clients()["gw3"]
    liar = StatisticsPoisoningClient(honest, factor)
    w0 = _w0()
    # Execute: through the same query path every transport uses
    h_feat = decode_summary(answer_query(honest, FEATURE_STATS, None, {"scaler": "log-minmax"}))
    l_feat = decode_summary(answer_query(liar, FEATURE_STATS, None, {"scaler": "log-minmax"}))
    h_err = decode_summary(answer_query(honest, ERROR_STATS, w0, {}))
    l_err = decode_summary(answer_query(liar, ERROR_STATS, w0, {}))
    # Assert
    assert isinstance(h_feat, SufficientStats)
    assert isinstance(l_feat, SufficientStats)
    np.testing.assert_allclose(l_feat.max, h_feat.max * factor, rtol=1e-12)
    np.testing.assert_allclose(l_feat.mean, h_feat.mean * factor, rtol=1e-12)
    assert isinstance(h_err, SufficientStats)
    assert isinstance(l_err, SufficientStats)
    np.testing.assert_allclose(l_err.mean, h_err.mean * factor, rtol=1e-9)
    # and it trains honestly
    assert all(
        np.array_equal(a, b)
        for a, b in zip(liar.fit(w0, CONFIG).weights, honest.fit(w0, CONFIG).weights, strict=True)
    )


def test_data_poisoning_adds_attack_rows_to_training_and_scaler_statistics_only() -> None:
    # Prepare: the shipped real N-BaIoT attack sample
    clients = _clients()
    attack = read_nbaiot_csv(sorted(p for p in SAMPLES.iterdir() if "benign" not in p.name)[0])
    # Execute
    attacked = make_attacker(
        clients, ["gw1"], AttackConfig(kind="data", data_ratio=0.5), seed=0, attack_rows={"gw1": attack}
    )
    poisoned = attacked["gw1"]
    # Assert
    assert isinstance(poisoned, AutoencoderClient)
    honest = clients["gw1"]
    assert isinstance(honest, AutoencoderClient)
    added = poisoned.num_train - honest.num_train
    assert added == min(attack.shape[0], round(0.5 * honest.num_train))
    np.testing.assert_array_equal(poisoned.x_train_raw[: honest.num_train], honest.x_train_raw)
    assert any(np.array_equal(poisoned.x_train_raw[-1], row) for row in attack)
    np.testing.assert_array_equal(poisoned.x_opt_raw, honest.x_opt_raw)
    assert not np.allclose(poisoned.feature_stats("log-minmax").max, honest.feature_stats("log-minmax").max)


def test_malicious_selection_is_seeded_and_sized() -> None:
    ids = [f"c{i:02d}" for i in range(26)]
    assert [len(select_malicious(ids, f, 0)) for f in (0.0, 0.1, 0.2, 0.3)] == [0, 3, 5, 8]
    assert select_malicious(ids, 0.2, 0) == select_malicious(ids, 0.2, 0)
    assert select_malicious(ids, 0.2, 0) != select_malicious(ids, 0.2, 1)


def test_bad_attack_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"attack.kind must be one of"):
        AttackConfig(kind="flood")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"attack.factor must be > 1"):
        AttackConfig(factor=0.5)
    with pytest.raises(ConfigError, match=r"malicious clients \['nope'\] are not in the federation"):
        make_attacker(_clients(), ["nope"], AttackConfig(kind="scale"), seed=0)


def test_alie_colluders_share_the_scaler_one_of_them_received() -> None:
    # Prepare: colluders that were never sent the scaler (not selected yet) must still train honestly
    x = read_nbaiot_csv(SAMPLES / "benign_traffic.csv.gz")
    scaler = make_scaler("minmax", SufficientStats.from_array(x))
    tc = TrainConfig(batch_size=32)
    clients: dict[str, Client] = {
        f"gw{i}": AutoencoderClient(f"gw{i}", _model, x[i::3][:60], x[i::3][60:], tc, seed=1)
        for i in range(3)
    }
    attacked = make_attacker(clients, ["gw0", "gw1"], AttackConfig(kind="alie"), seed=0)
    # Execute: the transport gives the scaler to the selected client only
    attacked["gw0"].set_scaler(scaler)  # type: ignore[attr-defined]
    reply = attacked["gw0"].fit(_w0(), CONFIG)
    # Assert
    assert reply.num_examples == 60
    assert all(np.isfinite(w).all() for w in reply.weights)
