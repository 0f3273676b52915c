"""Hypothesis: any chunking of a shipped capture gives the batch extractor's rows, bit for bit."""

from __future__ import annotations

import tarfile
from functools import cache

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fediot.data.paths import shipped_file
from fediot.features import PacketTable, StreamingExtractor, compute_features_fast, parse_capture, read_pcap

_DEVICES = ("D-LinkSiren", "HueBridge")


@cache
def _captures() -> dict[str, tuple[PacketTable, np.ndarray]]:
    """Packets and their batch-extracted rows: two devices' captures as one stream, and two floods."""
    tables = {}
    with tarfile.open(shipped_file("iot_sentinel/captures_IoT-Sentinel.tar.gz"), "r:gz") as tar:
        for member in tar:  # one sequential pass over the archive
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 3 and parts[1] in _DEVICES and parts[2].endswith(".pcap"):
                data = tar.extractfile(member)
                assert data is not None
                tables[member.name] = parse_capture(data.read(), name=member.name)[0]
    devices = PacketTable.concat([tables[name] for name in sorted(tables)])
    devices = devices.take(devices.time_order()[:8000])  # the first 8,000 packets, from many files
    syn = read_pcap(shipped_file("ddos_pcaps/pkt.TCP.synflood.spoofed.pcap.gz"))[0]
    out = {
        "devices": devices,
        "amp": read_pcap(shipped_file("ddos_pcaps/amp.UDP.bacnet.IOT.37810.pcap.gz"))[0],
        "syn": syn.take(np.arange(6000)),
    }
    return {name: (packets, compute_features_fast(packets)) for name, packets in out.items()}


@st.composite
def chunked(draw: st.DrawFn) -> tuple[str, list[int]]:
    """A capture name and sorted cut points (repeats give empty chunks)."""
    name = draw(st.sampled_from(["devices", "amp", "syn"]))
    n = len(_captures()[name][0])
    cuts = draw(st.lists(st.integers(0, n), max_size=30))
    return name, sorted(cuts)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunked())
def test_any_chunking_gives_the_batch_rows(case: tuple[str, list[int]]) -> None:
    # Prepare
    name, cuts = case
    packets, batch = _captures()[name]
    bounds = [0, *cuts, len(packets)]
    extractor = StreamingExtractor()

    # Execute
    rows = [extractor.feed(packets.take(np.arange(a, b))) for a, b in zip(bounds, bounds[1:], strict=False)]

    # Assert
    np.testing.assert_array_equal(np.vstack(rows), batch)
    assert extractor.num_packets == len(packets)
    assert set(extractor.evictions.values()) == {0}


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunked())
def test_with_a_small_cap_any_chunking_gives_the_same_evictions_and_rows(case: tuple[str, list[int]]) -> None:
    # Prepare: 256 streams per table, far fewer than every capture has
    name, cuts = case
    packets = _captures()[name][0]
    bounds = [0, *cuts, len(packets)]
    whole = StreamingExtractor(max_streams=256)
    expected = whole.feed(packets)
    extractor = StreamingExtractor(max_streams=256)

    # Execute
    rows = [extractor.feed(packets.take(np.arange(a, b))) for a, b in zip(bounds, bounds[1:], strict=False)]

    # Assert
    np.testing.assert_array_equal(np.vstack(rows), expected)
    assert extractor.evictions == whole.evictions
    assert extractor.evictions["HpHp"] > 0
