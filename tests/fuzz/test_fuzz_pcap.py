"""Fuzz the pcap/pcapng reader with mutated real captures: a fediot error or a consistent table, never more.

Each case has a deadline (SIGALRM) and a memory bound (tracemalloc peak); the outcome must not depend on
the batch size. ``benchmarks/fuzz_readers.py`` runs the same mutators on 10,000 cases.
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import tracemalloc
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fediot.errors import FediotError
from fediot.features.pcap import SKIP_REASONS, CaptureReader, PacketTable, parse_capture

DEADLINE_S = 5.0
CASES = 400


class CaseTimeout(Exception):
    """A fuzz case ran past its deadline."""


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise CaseTimeout(f"a fuzz case ran longer than {DEADLINE_S} s")


@contextlib.contextmanager
def _deadline() -> Iterator[None]:
    """Arm SIGALRM around one case: a hanging case fails instead of blocking CI."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, DEADLINE_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _outcome(data: bytes, batch_bytes: int) -> tuple[str, str]:
    """("ok", digest of table + summary) or ("error", error class); other exceptions propagate."""
    reader = CaptureReader(data, name="case.pcap", batch_bytes=batch_bytes)
    error: FediotError | None = None
    try:
        tables = list(reader)
    except FediotError as exc:
        error = exc
    if error is not None:
        assert str(error).startswith("case.pcap"), str(error)  # names the file
        return "error", type(error).__name__
    summary = reader.summary
    num = sum(len(t) for t in tables)
    assert summary.num_packets == num
    assert summary.num_records >= num
    assert set(summary.skipped) <= {*SKIP_REASONS[1:], "truncated_record", "truncated_gzip"}
    assert summary.num_records == num + sum(v for k, v in summary.skipped.items() if k != "truncated_gzip")
    h = hashlib.sha256(repr((summary.format, summary.linktype, sorted(summary.skipped.items()))).encode())
    table = PacketTable.concat(tables)
    assert np.isfinite(table.timestamp).all()
    assert (table.length >= 0).all()
    for name in ("timestamp", "length", "src_mac", "dst_mac", "src_ip", "dst_ip", "protocol", "src_port"):
        h.update(getattr(table, name).tobytes())
    return "ok", h.hexdigest()


@pytest.fixture(scope="module")
def warm_seeds(capture_seeds: list[Any]) -> list[Any]:
    """The seeds, after one read of each kind (numba loads its compiled kernels on first use)."""
    for seed in capture_seeds:
        parse_capture(seed.data)
    return capture_seeds


@settings(max_examples=CASES, derandomize=True, database=None)
@given(data=st.data())
def test_mutated_captures_give_a_table_or_a_fediot_error(
    warm_seeds: list[Any], mutate: Callable[..., bytes], data: st.DataObject
) -> None:
    # Prepare
    seed = data.draw(st.sampled_from(warm_seeds), label="seed")
    case = mutate(seed, lambda lo, hi: data.draw(st.integers(lo, hi)))
    batch = data.draw(st.sampled_from([4096, 1 << 16]), label="batch_bytes")

    # Execute
    tracemalloc.start()
    try:
        with _deadline():
            small = _outcome(case, batch)
            full = _outcome(case, 1 << 24)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

    # Assert: same outcome whatever the batch size; memory within the documented bound for this input
    assert small == full
    assert peak <= (1 << 20) + 16 * max(len(case), len(seed.data)), f"peak {peak} B for {len(case)} B"


def test_pcapng_conversions_of_the_seeds_read_as_their_pcap(capture_seeds: list[Any]) -> None:
    # Execute
    results = {seed.name: parse_capture(seed.data, name=seed.name) for seed in capture_seeds}

    # Assert: no skips; each pcapng variant holds its pcap's packets (timestamps to its resolution)
    for seed in capture_seeds:
        table, summary = results[seed.name]
        pcap, _ = results[seed.origin]
        assert summary.skipped == {}
        assert summary.format == ("pcapng" if seed.pcapng else "pcap")
        assert len(table) == len(pcap) > 20
        for name in ("length", "src_mac", "dst_mac", "src_ip", "dst_ip", "protocol", "src_port", "dst_port"):
            np.testing.assert_array_equal(getattr(table, name), getattr(pcap, name))
        np.testing.assert_allclose(table.timestamp, pcap.timestamp, rtol=0, atol=1e-3)
