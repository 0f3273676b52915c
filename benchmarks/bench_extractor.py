"""Packets/s of the AfterImage feature extractor: plain-Python reference vs numba kernel, same run.

Run: python benchmarks/bench_extractor.py [--devices D-LinkSiren HueBridge ...] [--repeats 3]

Workloads: all captures of a few IoT Sentinel devices as one time-ordered stream, and the spoofed SYN flood.
Reports parsing (pcap -> PacketTable), statistics (reference; numba: the StreamingExtractor fed the whole
capture at once, and fed in 1,000-packet chunks, best of --repeats after a warm-up) and end-to-end numba
(parse + stats). Numba compile/cache-load time is reported separately.
"""

from __future__ import annotations

import argparse
import platform
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np

from fediot.data.paths import shipped_file
from fediot.features import (
    PacketTable,
    StreamingExtractor,
    compute_features_fast,
    compute_features_ref,
    read_packets,
)

DEFAULT_DEVICES = ("D-LinkSiren", "HueBridge", "EdimaxPlug1101W", "TP-LinkPlugHS110", "WeMoSwitch")


def _best(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _extract_devices(devices: tuple[str, ...], folder: Path) -> list[Path]:
    archive = shipped_file("iot_sentinel/captures_IoT-Sentinel.tar.gz")
    with tarfile.open(archive, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.name.split("/")[1:2] and m.name.split("/")[1] in devices]
        tar.extractall(folder, members=members, filter="data")
    return sorted((folder / "captures_IoT-Sentinel").glob("*/*.pcap"))


def _feed_chunks(chunks: list[PacketTable]) -> list[np.ndarray]:
    extractor = StreamingExtractor()
    return [extractor.feed(chunk) for chunk in chunks]


def bench(paths: list[Path], repeats: int, chunk: int = 1000) -> dict[str, float]:
    packets: PacketTable = read_packets(paths)[0]
    n = len(packets)
    t_parse = _best(lambda: read_packets(paths), repeats)
    t_fast = _best(lambda: compute_features_fast(packets), repeats)
    chunks = [packets.take(np.arange(s, min(s + chunk, n))) for s in range(0, n, chunk)]
    t_chunked = _best(lambda: _feed_chunks(chunks), repeats)
    start = time.perf_counter()
    ref = compute_features_ref(packets)
    t_ref = time.perf_counter() - start
    fast = compute_features_fast(packets)
    assert np.allclose(fast, ref, rtol=1e-9, atol=1e-9), "implementations disagree"
    assert np.array_equal(np.vstack(_feed_chunks(chunks)), fast), "chunked feeding differs"
    t_e2e = _best(lambda: compute_features_fast(read_packets(paths)[0]), repeats)
    return {
        "packets": n, "files": len(paths), "parse": n / t_parse, "reference": n / t_ref, "numba": n / t_fast,
        "chunked": n / t_chunked, "ratio": t_ref / t_fast, "numba_e2e": n / t_e2e,
        "ref_e2e": n / (t_parse + t_ref),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="+", default=list(DEFAULT_DEVICES))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    start = time.perf_counter()
    tiny = read_packets([shipped_file("ddos_pcaps/amp.UDP.bacnet.IOT.37810.pcap.gz")])[0].take(np.arange(10))
    compute_features_fast(tiny)
    _feed_chunks([tiny] * 3)
    warmup = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        sentinel = _extract_devices(tuple(args.devices), Path(tmp))
        rows = {
            f"IoT Sentinel, {len(args.devices)} devices": bench(sentinel, args.repeats),
            "SYN flood (spoofed)": bench(
                [shipped_file("ddos_pcaps/pkt.TCP.synflood.spoofed.pcap.gz")], args.repeats
            ),
        }

    print(f"python {platform.python_version()}, numba {numba.__version__}, numpy {np.__version__}, 1 thread")
    print(f"numba first call (compile, or load from cache) + 10 packets: {warmup:.2f} s")
    print(f"devices: {', '.join(args.devices)}")
    header = (
        f"{'workload':32} {'packets':>8} {'parse/s':>10} {'ref/s':>9} {'numba/s':>10} "
        f"{'chunked/s':>10} {'ratio':>6} {'e2e numba/s':>12} {'e2e ref/s':>10}"
    )
    print(header)
    print("-" * len(header))
    for label, r in rows.items():
        print(
            f"{label:32} {r['packets']:>8.0f} {r['parse']:>10,.0f} {r['reference']:>9,.0f} "
            f"{r['numba']:>10,.0f} {r['chunked']:>10,.0f} {r['ratio']:>5.1f}x "
            f"{r['numba_e2e']:>12,.0f} {r['ref_e2e']:>10,.0f}"
        )
    print(
        "packets/s; stats = reference or numba kernel on pre-parsed packets (numba incl. output allocation);"
    )
    print("numba = StreamingExtractor fed the whole capture; chunked = fed 1,000-packet chunks (same rows);")
    print("e2e numba = read + decode + numba stats; e2e ref = read + decode + reference stats.")


if __name__ == "__main__":
    main()
