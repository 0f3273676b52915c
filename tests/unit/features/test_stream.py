"""The streaming extractor: chunked feeding equals the batch extractor, state across files, the memory cap."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fediot.data.paths import shipped_file
from fediot.errors import ConfigError, DataError
from fediot.features import (
    AfterImageConfig,
    PacketTable,
    StreamingExtractor,
    compute_features_fast,
    compute_features_ref,
    extract_features,
    feature_names,
    read_packets,
    read_pcap,
)

NAMES = feature_names()
COL = {name: j for j, name in enumerate(NAMES)}
AMP = "ddos_pcaps/amp.UDP.bacnet.IOT.37810.pcap.gz"
SYN = "ddos_pcaps/pkt.TCP.synflood.spoofed.pcap.gz"


def feed_in_chunks(extractor: StreamingExtractor, packets: PacketTable, size: int) -> np.ndarray:
    n = len(packets)
    rows = [extractor.feed(packets.take(np.arange(s, min(s + size, n)))) for s in range(0, n, size)]
    return np.vstack(rows)


@pytest.mark.parametrize("size", [1, 7, 1000])
def test_chunked_feeding_is_bit_identical_to_the_batch_extractor(size: int) -> None:
    # Prepare: the UDP amplification flood (9,617 packets, 6,276 sources: the tables grow 1,024 -> 8,192)
    packets, _ = read_pcap(shipped_file(AMP))
    batch, _ = extract_features(packets, order="given")
    extractor = StreamingExtractor()

    # Execute
    chunked = feed_in_chunks(extractor, packets, size)

    # Assert
    assert chunked.dtype == np.float64
    assert chunked.shape == (len(packets), 115)
    np.testing.assert_array_equal(chunked, batch)
    assert extractor.num_packets == len(packets)
    assert extractor.num_streams["MI_dir"] == 6276
    assert set(extractor.evictions.values()) == {0}


def test_fast_extractor_equals_the_reference_bit_for_bit_on_two_devices(fast_pcaps: list[Path]) -> None:
    # Prepare: the first 6,000 packets of two IoT Sentinel devices as one time-ordered stream, with a purge
    # every 64 packets (test_agreement compares all of them, with a tolerance)
    packets, _ = read_packets(fast_pcaps)
    packets = packets.take(np.arange(6000))
    config = AfterImageConfig(purge_every=64, purge_weight=0.5)

    # Execute
    ref = compute_features_ref(packets, config)
    extractor = StreamingExtractor(config)
    chunked = feed_in_chunks(extractor, packets, 100)

    # Assert: purging (and remembered jitter gaps) happened, and changes nothing between the two
    np.testing.assert_array_equal(chunked, ref)
    assert extractor.purged["MI_dir"] > 0
    assert extractor.purged["HH_jit"] > 0
    assert extractor.num_streams["HH_jit_gaps"] > 0


def test_state_carries_across_files_fed_one_by_one(fast_pcaps: list[Path]) -> None:
    # Prepare
    extractor = StreamingExtractor()

    # Execute: one capture per call, as a follower of rotating capture files would
    rows = [extractor.feed(read_pcap(path)[0]) for path in fast_pcaps]
    batch, summary = extract_features(fast_pcaps, order="given")

    # Assert
    assert len(rows) == len(fast_pcaps) > 10
    np.testing.assert_array_equal(np.vstack(rows), batch)
    assert extractor.num_packets == summary.num_packets


@pytest.mark.slow
def test_default_cap_is_not_reached_on_every_shipped_capture(sentinel_dir: Path) -> None:
    # Prepare: all 550 IoT Sentinel captures as one stream, then both floods
    sentinel, _ = read_packets(sorted(sentinel_dir.glob("*/*.pcap")))
    floods = [read_pcap(shipped_file(rel))[0] for rel in (SYN, AMP)]
    extractor = StreamingExtractor()

    # Execute
    rows = [feed_in_chunks(extractor, packets, 4096) for packets in (sentinel, *floods)]

    # Assert: no eviction, so the same rows as the unbounded batch extractor
    assert set(extractor.evictions.values()) == {0}
    np.testing.assert_array_equal(
        np.vstack(rows), compute_features_fast(PacketTable.concat([sentinel, *floods]))
    )


def test_eviction_drops_the_least_recently_seen_stream_at_the_cap(
    packets: Callable[..., PacketTable],
) -> None:
    # Prepare: 17 hosts send one packet each (t = 0 ... 16 s) to one server, then host 0 again (t = 17 s);
    # with max_streams = 16, host 16 finds every table full and evicts host 0 (the oldest), host 0's return
    # evicts host 1
    n = 18
    src = [0x0A000100 + i for i in range(17)] + [0x0A000100]
    table = packets([float(i) for i in range(n)], [100] * n, src_ip=src, dst_ip=0x0A000001)
    extractor = StreamingExtractor(max_streams=16)

    # Execute
    capped = extractor.feed(table)
    unbounded = compute_features_fast(table)

    # Assert: counters; rows equal up to the returning host, which restarts as a new stream
    assert extractor.evictions == {"MI_dir": 2, "H": 2, "HH": 2, "HH_jit": 2, "HpHp": 2, "HH_jit_gaps": 0}
    assert all(count == 16 for name, count in extractor.num_streams.items() if name != "HH_jit_gaps")
    np.testing.assert_array_equal(capped[:-1], unbounded[:-1])
    for lam in ("5", "1", "0.01"):
        assert capped[-1, COL[f"MI_dir_L{lam}_weight"]] == 1.0
        assert capped[-1, COL[f"HpHp_L{lam}_weight"]] == 1.0
    assert unbounded[-1, COL["MI_dir_L0.01_weight"]] == pytest.approx(1 + 2 ** (-0.01 * 17), rel=1e-12)
    # the evicted jitter stream's last time was kept in HH_jit_gaps: its 17 s gap is still reported
    assert capped[-1, COL["HH_jit_L5_mean"]] == pytest.approx(17.0, rel=1e-12)
    assert extractor.num_streams["HH_jit_gaps"] == 1  # host 1's gap, evicted by host 0's return


@pytest.mark.parametrize("rel", [AMP, SYN])
def test_small_cap_bounds_memory_and_changes_only_returning_streams(rel: str) -> None:
    # Prepare: 8,000 flood packets (thousands of sources) with room for 256 streams per table
    packets, _ = read_pcap(shipped_file(rel))
    packets = packets.take(np.arange(8000))
    unbounded = compute_features_fast(packets)
    extractor = StreamingExtractor(max_streams=256)

    # Execute: chunks of 500, recording the state size after each
    rows, sizes = [], []
    for s in range(0, len(packets), 500):
        rows.append(extractor.feed(packets.take(np.arange(s, s + 500))))
        sizes.append(extractor.memory_bytes)
        assert max(extractor.num_streams.values()) <= 256
    capped = np.vstack(rows)

    # Assert: evictions counted; memory flat once the tables reached the cap; the same rows fed whole
    assert extractor.evictions["MI_dir"] > 1000
    assert extractor.evictions["HpHp"] > 1000
    assert len(set(sizes[-4:])) == 1
    assert sizes[-1] < 1_000_000
    np.testing.assert_array_equal(StreamingExtractor(max_streams=256).feed(packets), capped)
    # a stream's first packet is a new stream with or without the cap: its MI_dir columns are unchanged;
    # rows differ only where an evicted stream came back
    mi = slice(0, 15)
    key = np.column_stack([packets.src_mac, packets.src_ip])
    _, first = np.unique(key, axis=0, return_index=True)
    np.testing.assert_array_equal(capped[first, mi], unbounded[first, mi])
    differs = (capped != unbounded).any(axis=1)
    assert 0 < differs.sum() < len(packets) // 2


def test_empty_batches_change_nothing() -> None:
    # Prepare
    packets, _ = read_pcap(shipped_file(AMP))
    extractor = StreamingExtractor()

    # Execute
    empty = extractor.feed(PacketTable.empty())
    rows = [extractor.feed(packets), extractor.feed(PacketTable.empty())]

    # Assert
    assert empty.shape == (0, 115)
    assert rows[1].shape == (0, 115)
    np.testing.assert_array_equal(rows[0], compute_features_fast(packets))
    assert extractor.num_packets == len(packets)


@pytest.mark.parametrize("bad", [0, 15, -1, True, 100.0])
def test_max_streams_below_16_is_rejected(bad: int) -> None:
    with pytest.raises(ConfigError, match="max_streams must be an integer >= 16 or None"):
        StreamingExtractor(max_streams=bad)


# sha256 (first 16 hex digits) of the float64 feature matrices that the batch extractor produced before it
# became a StreamingExtractor fed once (commit 44ea7f9, np.unique stream ids); same machine type as CI.
_BEFORE_STREAMING = {
    "amp": "f00a04bee5e3ebf1",
    "syn": "f50a68e1314680c8",
    "two_devices": "ada5c0c035cf5b7b",
}


def test_batch_features_are_byte_identical_to_the_extractor_before_streaming(fast_pcaps: list[Path]) -> None:
    # Prepare
    sources: dict[str, list[Path]] = {
        "amp": [shipped_file(AMP)],
        "syn": [shipped_file(SYN)],
        "two_devices": fast_pcaps,
    }

    # Execute
    digests = {
        name: hashlib.sha256(extract_features(paths)[0].tobytes()).hexdigest()[:16]
        for name, paths in sources.items()
    }

    # Assert
    assert digests == _BEFORE_STREAMING


def test_feeding_something_else_than_a_packet_table_fails_with_one_line() -> None:
    with pytest.raises(DataError, match="feed expects a PacketTable, got ndarray"):
        StreamingExtractor().feed(np.zeros((3, 10)))  # type: ignore[arg-type]
