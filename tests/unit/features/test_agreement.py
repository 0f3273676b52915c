"""The numba kernel agrees with the plain-Python reference on real captures.

Tolerance: 1e-9 relative, with an absolute floor of 1e-9 for values near 0 (variances of constant streams
are differences of nearly equal sums, where relative error is meaningless). In practice both implementations
do the same floating-point operations in the same order and agree bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fediot.data.paths import shipped_file
from fediot.features import (
    AfterImageConfig,
    PacketTable,
    compute_features_fast,
    compute_features_ref,
    feature_names,
    read_packets,
)

RTOL = 1e-9
ATOL = 1e-9


def assert_agree(packets: PacketTable, config: AfterImageConfig | None = None) -> None:
    fast = compute_features_fast(packets, config)
    ref = compute_features_ref(packets, config)
    assert fast.shape == ref.shape == (len(packets), 115)
    assert np.isfinite(fast).all()
    bad = ~np.isclose(fast, ref, rtol=RTOL, atol=ATOL)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        pytest.fail(
            f"{bad.sum()} values differ; first: packet {i} {feature_names()[j]} {fast[i, j]} != {ref[i, j]}"
        )


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(None, id="default"),
        pytest.param(AfterImageConfig(purge_every=64, purge_weight=0.5), id="aggressive-purge"),
    ],
)
def test_fast_equals_reference_on_two_devices_and_the_amplification_flood(
    fast_pcaps: list[Path], config: AfterImageConfig | None
) -> None:
    # Prepare: two devices as one time-ordered stream, then the UDP amplification flood (ICMP included)
    devices, _ = read_packets(fast_pcaps)
    flood, _ = read_packets([shipped_file("ddos_pcaps/amp.UDP.bacnet.IOT.37810.pcap.gz")])

    # Execute / Assert
    assert_agree(devices, config)
    assert_agree(flood, config)


@pytest.mark.slow
def test_fast_equals_reference_on_every_shipped_capture(sentinel_dir: Path) -> None:
    # Prepare: all 550 IoT Sentinel captures (193,421 packets) as one stream, and both floods
    sentinel, summaries = read_packets(sorted(sentinel_dir.glob("*/*.pcap")))
    floods = [
        read_packets([shipped_file(f"ddos_pcaps/{name}")])[0]
        for name in ("pkt.TCP.synflood.spoofed.pcap.gz", "amp.UDP.bacnet.IOT.37810.pcap.gz")
    ]

    # Execute / Assert
    assert len(summaries) == 550
    assert len(sentinel) == 193_421
    assert_agree(sentinel)
    for flood in floods:
        assert_agree(flood)
