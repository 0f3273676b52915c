"""Hand-computed AfterImage statistics on tiny synthetic packet sequences, for both implementations."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fediot.features import (
    AfterImageConfig,
    PacketTable,
    StreamingExtractor,
    compute_features_fast,
    compute_features_ref,
    feature_names,
    read_packets,
)

NAMES = feature_names()
COL = {name: j for j, name in enumerate(NAMES)}
LAMBDAS = (5, 3, 1, 0.1, 0.01)


def _fast(packets: PacketTable, config: AfterImageConfig | None = None) -> np.ndarray:
    return compute_features_fast(packets, config)


def _one_by_one(packets: PacketTable, config: AfterImageConfig | None = None) -> np.ndarray:
    extractor = StreamingExtractor(config)
    return np.vstack([extractor.feed(packets.take(np.array([i]))) for i in range(len(packets))])


IMPLEMENTATIONS = [
    pytest.param(_fast, id="fast"),
    pytest.param(_one_by_one, id="streaming-1"),
    pytest.param(compute_features_ref, id="reference"),
]


@pytest.mark.parametrize("compute", IMPLEMENTATIONS)
def test_constant_rate_flow_reaches_the_known_weight_mean_and_zero_variance(
    compute: Callable[..., np.ndarray], packets: Callable[..., PacketTable]
) -> None:
    # Prepare: one flow, 300 packets of 100 bytes every 0.5 s
    n, dt, size = 300, 0.5, 100
    table = packets([i * dt for i in range(n)], [size] * n)

    # Execute
    features = compute(table)

    # Assert: weight = sum of f**j (j < n) -> 1 / (1 - f) with f = 2**(-lambda*dt); mean = size; variance 0
    last = features[-1]
    for lam in LAMBDAS:
        f = 2.0 ** (-lam * dt)
        expected_weight = (1 - f**n) / (1 - f)
        for group in ("MI_dir", "H", "HH", "HpHp"):
            assert last[COL[f"{group}_L{lam:g}_weight"]] == pytest.approx(expected_weight, rel=1e-9)
            assert last[COL[f"{group}_L{lam:g}_mean"]] == pytest.approx(size, rel=1e-12)
        assert last[COL[f"MI_dir_L{lam:g}_variance"]] == pytest.approx(0.0, abs=1e-6)
        assert last[COL[f"HH_L{lam:g}_std"]] == pytest.approx(0.0, abs=1e-3)
        # one-way traffic: the reverse direction is empty (mean 0, variance 0, no covariance)
        assert last[COL[f"HH_L{lam:g}_magnitude"]] == pytest.approx(size, rel=1e-12)
        assert last[COL[f"HH_L{lam:g}_radius"]] == pytest.approx(0.0, abs=1e-6)
        assert last[COL[f"HpHp_L{lam:g}_covariance"]] == 0.0
        assert last[COL[f"HpHp_L{lam:g}_pcc"]] == 0.0
    steady = 1 / (1 - 2.0 ** (-5 * dt))
    assert last[COL["MI_dir_L5_weight"]] == pytest.approx(steady, rel=1e-9)


@pytest.mark.parametrize("compute", IMPLEMENTATIONS)
def test_jitter_stream_tracks_inter_arrival_times_and_starts_at_zero(
    compute: Callable[..., np.ndarray], packets: Callable[..., PacketTable]
) -> None:
    # Prepare: packets every 2 s on one channel
    n, dt = 50, 2.0
    table = packets([i * dt for i in range(n)], [60] * n)

    # Execute
    features = compute(table)

    # Assert: the first jitter value is 0, the others dt: mean = dt * (W_{n-1} f) / W_n, weights as sizes
    assert features[0, COL["HH_jit_L1_mean"]] == 0.0
    for lam in LAMBDAS:
        f = 2.0 ** (-lam * dt)
        weight = (1 - f**n) / (1 - f)
        expected_mean = dt * (weight - f ** (n - 1)) / weight
        assert features[-1, COL[f"HH_jit_L{lam:g}_weight"]] == pytest.approx(weight, rel=1e-9)
        assert features[-1, COL[f"HH_jit_L{lam:g}_mean"]] == pytest.approx(expected_mean, rel=1e-9)


@pytest.mark.parametrize("compute", IMPLEMENTATIONS)
def test_two_way_channel_magnitude_radius_covariance_and_pcc(
    compute: Callable[..., np.ndarray], packets: Callable[..., PacketTable]
) -> None:
    # Prepare: A->B 100, B->A 300, A->B 200, B->A 500, all at t=0 (no decay: plain sums)
    a, b = 0x0A000001, 0x0A000002
    table = packets(
        [0.0] * 4, [100, 300, 200, 500],
        src_ip=[a, b, a, b], dst_ip=[b, a, b, a], src_mac=[1, 2, 1, 2], dst_mac=[2, 1, 2, 1],
        src_port=[1000, 80, 1000, 80], dst_port=[80, 1000, 80, 1000],
    )  # fmt: skip

    # Execute
    features = compute(table)

    # Assert (by hand): B->A has sizes 300, 500 -> mean 400, std 100; A->B 100, 200 -> mean 150, var 2500.
    # Residuals: A->B's 2nd packet 200 - 150 = 50; B->A's 2nd 500 - 400 = 100; Kitsune updates the
    # covariance twice per packet on an existing pair: CF3 = 2 * 50 * 100, w3 = 1 + 2 + 2 + 2 = 7.
    row = features[3]
    for group in ("HH", "HpHp"):
        for lam in LAMBDAS:
            p = f"{group}_L{lam:g}_"
            assert row[COL[p + "weight"]] == pytest.approx(2.0, rel=1e-12)
            assert row[COL[p + "mean"]] == pytest.approx(400.0, rel=1e-12)
            assert row[COL[p + "std"]] == pytest.approx(100.0, rel=1e-9)
            assert row[COL[p + "magnitude"]] == pytest.approx(math.sqrt(400**2 + 150**2), rel=1e-12)
            assert row[COL[p + "radius"]] == pytest.approx(math.sqrt(10000**2 + 2500**2), rel=1e-9)
            assert row[COL[p + "covariance"]] == pytest.approx(10000 / 7, rel=1e-9)
            assert row[COL[p + "pcc"]] == pytest.approx((10000 / 7) / (100 * 50), rel=1e-9)
    # the reverse direction's first packet: magnitude uses A->B's mean 100, its own 300
    assert features[1, COL["HH_L5_magnitude"]] == pytest.approx(math.sqrt(300**2 + 100**2), rel=1e-12)


@pytest.mark.parametrize("compute", IMPLEMENTATIONS)
def test_self_addressed_packets_have_zero_covariance(
    compute: Callable[..., np.ndarray], packets: Callable[..., PacketTable]
) -> None:
    # Prepare: a gratuitous-ARP-like stream from 10.0.0.1 to itself with varying sizes
    table = packets([0.0, 0.1, 0.2], [60, 90, 42], dst_ip=0x0A000001, dst_port=40000)

    # Execute
    features = compute(table)

    # Assert: Kitsune never sets the partner residual of a self-link, so covariance and pcc stay 0
    assert np.all(features[:, COL["HH_L1_covariance"]] == 0.0)
    assert np.all(features[:, COL["HH_L1_pcc"]] == 0.0)
    assert features[-1, COL["HH_L1_std"]] > 0


@pytest.mark.parametrize("compute", IMPLEMENTATIONS)
def test_purged_jitter_stream_still_reports_the_gap(
    compute: Callable[..., np.ndarray], packets: Callable[..., PacketTable]
) -> None:
    # Prepare: A->B at 0 and 1 s, C->D at 5000 s (purge check: A->B is idle), A->B again at 5001 s
    a, b, c, d = 1, 2, 3, 4
    table = packets([0.0, 1.0, 5000.0, 5001.0], [60] * 4, src_ip=[a, a, c, a], dst_ip=[b, b, d, b])
    config = AfterImageConfig(purge_every=1)

    # Execute
    purged = compute(table, config)
    kept = compute(table, AfterImageConfig(purge_every=0))

    # Assert: the gap (5000 s) is the jitter value either way; purging only drops a weight below 1e-6
    assert purged[3, COL["HH_jit_L5_mean"]] == pytest.approx(5000.0, rel=1e-9)
    assert purged[3, COL["HH_jit_L0.01_mean"]] == pytest.approx(kept[3, COL["HH_jit_L0.01_mean"]], rel=1e-6)
    assert purged[3, COL["MI_dir_L0.01_weight"]] == pytest.approx(
        kept[3, COL["MI_dir_L0.01_weight"]], abs=1e-6
    )
    assert purged[3, COL["MI_dir_L0.01_weight"]] != kept[3, COL["MI_dir_L0.01_weight"]]


def test_host_stats_equal_mac_ip_stats_when_each_ip_has_one_mac(fast_pcaps: list[Path]) -> None:
    # Prepare: two devices' captures as one stream
    table, _ = read_packets(fast_pcaps)
    macs_per_ip: dict[tuple[int, int, int], set[int]] = {}
    for v, ip, mac in zip(table.ip_version, map(tuple, table.src_ip), table.src_mac, strict=True):
        macs_per_ip.setdefault((int(v), int(ip[0]), int(ip[1])), set()).add(int(mac))
    single = np.array(
        [len(macs_per_ip[(int(v), int(ip[0]), int(ip[1]))]) == 1
         for v, ip in zip(table.ip_version, table.src_ip, strict=True)]
    )  # fmt: skip

    # Execute
    features = _fast(table)

    # Assert: where a source IP only ever has one MAC, the H stream is the MI_dir stream (N-BaIoT's rows too)
    h = features[:, COL["H_L5_weight"] : COL["H_L0.01_variance"] + 1]
    mi = features[:, COL["MI_dir_L5_weight"] : COL["MI_dir_L0.01_variance"] + 1]
    assert single.sum() > 1000
    np.testing.assert_array_equal(h[single], mi[single])
    assert np.isfinite(features).all()
    assert (features[:, [COL[n] for n in NAMES if n.endswith("_weight")]] > 0).all()
    assert (features[:, [COL[n] for n in NAMES if n.endswith(("_variance", "_std", "_radius"))]] >= 0).all()


def test_nbaiot_feature_names_match_the_published_header() -> None:
    # Prepare
    from fediot.data.paths import shipped_file

    published = shipped_file("nbaiot/metadata/features.csv").read_text().splitlines()[1:]

    # Execute
    names = feature_names()

    # Assert
    assert names == [line.split(",")[0] for line in published]
