"""Fixtures of the feature tests: the shipped captures (extracted once per session) and tiny packets."""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fediot.data.paths import shipped_file
from fediot.features import PacketTable

FAST_DEVICES = ("D-LinkSiren", "HueBridge")


@pytest.fixture(scope="session")
def sentinel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The IoT Sentinel captures extracted to a session temp folder: ``<dir>/<Device>/*.pcap``."""
    archive = shipped_file("iot_sentinel/captures_IoT-Sentinel.tar.gz")
    target = tmp_path_factory.mktemp("iot_sentinel")
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(target, filter="data")
    return target / "captures_IoT-Sentinel"


@pytest.fixture(scope="session")
def fast_pcaps(sentinel_dir: Path) -> list[Path]:
    """All captures of two devices (a few thousand packets)."""
    return sorted(p for d in FAST_DEVICES for p in (sentinel_dir / d).glob("*.pcap"))


def make_packets(
    timestamps: list[float],
    sizes: list[int],
    *,
    src_ip: list[int] | int = 0x0A000001,
    dst_ip: list[int] | int = 0x0A000002,
    src_mac: list[int] | int = 0x020000000001,
    dst_mac: list[int] | int = 0x020000000002,
    src_port: list[int] | int = 40000,
    dst_port: list[int] | int = 80,
    protocol: int = 1,
    ip_version: int = 4,
) -> PacketTable:
    """Build a columnar IPv4 packet table directly (default: one TCP flow 10.0.0.1:40000 -> 10.0.0.2:80)."""
    n = len(timestamps)

    def col(value: list[int] | int, dtype: type[np.generic]) -> np.ndarray:
        return np.broadcast_to(np.asarray(value, dtype=dtype), (n,)).copy()

    src = np.zeros((n, 2), np.uint64)
    dst = np.zeros((n, 2), np.uint64)
    src[:, 1] = col(src_ip, np.uint64)
    dst[:, 1] = col(dst_ip, np.uint64)
    return PacketTable(
        timestamp=np.asarray(timestamps, np.float64),
        length=np.asarray(sizes, np.int64),
        src_mac=col(src_mac, np.uint64),
        dst_mac=col(dst_mac, np.uint64),
        src_ip=src,
        dst_ip=dst,
        ip_version=col(ip_version, np.uint8),
        protocol=col(protocol, np.uint8),
        src_port=col(src_port, np.int32),
        dst_port=col(dst_port, np.int32),
    )


@pytest.fixture
def packets() -> Callable[..., PacketTable]:
    """The :func:`make_packets` builder."""
    return make_packets
