"""The gateway dataset: real IoT device traffic plus real floods replayed as if from the device, as N-BaIoT.

Benign traffic: the IoT Sentinel captures (Miettinen et al., ICDCS 2017), one client per device with at least
``min_packets`` packets; a device's captures are merged into one stream in time order and its first
``max_benign_packets`` packets kept. Attacks: the StopDDoS captures (Haaijer 2022) replayed as if the device
were infected: a contiguous block of each flood (seeded offset) gets the device's MAC as source MAC (and,
for the UDP amplification flood, whose sources are real reflectors, the device's IPv4 address as source IP;
the SYN flood's sources are spoofed, so they stay), and timestamps shifted to start 1 s after the device's
last benign packet. ``syn_flood_source="device"`` (not the default) also rewrites the SYN flood's
spoofed sources to the device's address, as a non-spoofing bot (e.g. Mirai's default) would send it: a
what-if that shows how much the spoofing hides. Attack block size per flood (the rule):
``min(len(flood), max(min_attack_packets, round(attack_ratio * n_benign)))``. The amplification
capture's ICMP packets (the victim's replies) are dropped; only its UDP packets are the device's flood.

Features: fediot's AfterImage extractor over the benign stream followed by one flood (each flood on its own
copy of the benign stream, as N-BaIoT captured each attack separately). Written in the N-BaIoT UCI layout::

    <out>/<Device>/benign_traffic.csv.gz
    <out>/<Device>/ddos_attacks/syn_flood.csv.gz        -> attack type "ddos.syn_flood"
    <out>/<Device>/ddos_attacks/udp_flood.csv.gz        -> attack type "ddos.udp_flood"
    <out>/manifest.json                                 sources (sha256), parameters, row counts

Deterministic: the same config (seed included) gives byte-identical files (gzip mtime 0, fixed formatting).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fediot.data.paths import sha256_file, shipped_file
from fediot.errors import ConfigError, DataError
from fediot.features.columns import feature_names
from fediot.features.extract import extract_features
from fediot.features.pcap import PROTO_UDP, PacketTable, parse_capture, read_pcap
from fediot.report.io import write_json

__all__ = [
    "GATEWAY_FORMAT",
    "GatewayConfig",
    "build_gateway_dataset",
    "default_cache_dir",
    "gateway_dataset_path",
]

log = logging.getLogger(__name__)

GATEWAY_FORMAT = 1
"""Bumped whenever the builder's output changes; a cached dataset of another format is rebuilt."""

_TAR = "iot_sentinel/captures_IoT-Sentinel.tar.gz"
_FLOODS = {
    "syn_flood": "ddos_pcaps/pkt.TCP.synflood.spoofed.pcap.gz",
    "udp_flood": "ddos_pcaps/amp.UDP.bacnet.IOT.37810.pcap.gz",
}
_GAP_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Parameters of the gateway dataset (see the module docstring for the rules)."""

    seed: int = 0
    min_packets: int = 500
    max_benign_packets: int = 4000
    min_attack_packets: int = 500
    attack_ratio: float = 0.5
    syn_flood_source: str = "spoofed"

    def __post_init__(self) -> None:
        if self.syn_flood_source not in ("spoofed", "device"):
            raise ConfigError(f"syn_flood_source must be spoofed or device, got {self.syn_flood_source!r}")
        if self.min_packets < 3 or self.max_benign_packets < self.min_packets:
            raise ConfigError(f"need 3 <= min_packets <= max_benign_packets, got {self}")
        if self.min_attack_packets < 1 or not self.attack_ratio > 0:
            raise ConfigError(f"need min_attack_packets >= 1 and attack_ratio > 0, got {self}")


def default_cache_dir() -> Path:
    """Return ``$FEDIOT_CACHE_DIR``, else ``$XDG_CACHE_HOME/fediot``, else ``~/.cache/fediot``."""
    env = os.environ.get("FEDIOT_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "fediot"


def _mac_to_int(text: str, where: str) -> int:
    parts = text.strip().lower().split(":")
    if len(parts) != 6:
        raise DataError(f"expected a MAC address like aa:bb:cc:dd:ee:ff, found {text.strip()!r}", path=where)
    try:
        return int("".join(parts), 16)
    except ValueError:
        raise DataError(f"expected a MAC address, found {text.strip()!r}", path=where) from None


def _read_sentinel(tar_path: Path) -> dict[str, tuple[int, PacketTable, int]]:
    """Return ``{device: (mac, packets in time order, number of captures)}`` from the IoT Sentinel tar."""
    captures: dict[str, list[PacketTable]] = {}
    macs: dict[str, int] = {}
    with tarfile.open(tar_path, "r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            parts = member.name.split("/")
            if len(parts) != 3:
                continue
            device, name = parts[1], parts[2]
            fh = tar.extractfile(member)
            if fh is None:
                continue
            data = fh.read()
            if name == "_iotdevice-mac.txt":
                macs[device] = _mac_to_int(data.decode("ascii", "replace"), f"{tar_path}:{member.name}")
            elif name.endswith(".pcap"):
                table, _ = parse_capture(data, name=f"{tar_path}:{member.name}")
                if len(table):
                    captures.setdefault(device, []).append(table)
    out = {}
    for device in sorted(captures):
        if device not in macs:
            raise DataError(f"device {device!r} has captures but no _iotdevice-mac.txt", path=tar_path)
        tables = sorted(captures[device], key=lambda t: float(t.timestamp.min()))
        merged = PacketTable.concat(tables)
        out[device] = (macs[device], merged.take(merged.time_order()), len(tables))
    return out


def _device_ip(packets: PacketTable, mac: int) -> NDArray[np.uint64] | None:
    mask = (packets.src_mac == np.uint64(mac)) & (packets.ip_version == 4) & (packets.src_ip[:, 1] != 0)
    if not mask.any():
        return None
    values, counts = np.unique(packets.src_ip[mask], axis=0, return_counts=True)
    return np.asarray(values[int(np.argmax(counts))], dtype=np.uint64)


def _replay(
    flood: PacketTable,
    n: int,
    start: int,
    *,
    mac: int,
    ip: NDArray[np.uint64] | None,
    rewrite_ip: bool,
    t0: float,
) -> PacketTable:
    block = flood.take(np.arange(start, start + n))
    src_mac = np.full(n, mac, dtype=np.uint64)
    src_ip = block.src_ip.copy()
    if rewrite_ip and ip is not None:
        src_ip[:] = ip
    timestamp = block.timestamp - block.timestamp[0] + t0
    return PacketTable(
        timestamp=timestamp,
        length=block.length,
        src_mac=src_mac,
        dst_mac=block.dst_mac,
        src_ip=src_ip,
        dst_ip=block.dst_ip,
        ip_version=block.ip_version,
        protocol=block.protocol,
        src_port=block.src_port,
        dst_port=block.dst_port,
    )


def _ipv4_text(value: int) -> str:
    return ".".join(str((value >> s) & 0xFF) for s in (24, 16, 8, 0))


def _csv_gz_bytes(rows: NDArray[np.float64], header: str) -> bytes:
    text = io.StringIO()
    text.write(header + "\n")
    np.savetxt(text, rows.astype(np.float32).astype(np.float64), fmt="%.9g", delimiter=",")
    raw = text.getvalue().encode("ascii")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=1, mtime=0) as gz:
        gz.write(raw)
    return buf.getvalue()


def build_gateway_dataset(
    out: Path, config: GatewayConfig | None = None, *, progress: Callable[[str, int, int], None] | None = None
) -> dict[str, Any]:
    """Build the gateway dataset into ``out`` (replaced atomically as a whole) and return its manifest.

    Parameters
    ----------
    out : Path
        Target folder. It is built beside it under a temporary name, then renamed over it.
    config : GatewayConfig, optional
    progress : callable, optional
        ``progress(device, done, total)`` after each device.

    Returns
    -------
    dict
        The manifest also written to ``out/manifest.json``.
    """
    config = config or GatewayConfig()
    out = Path(out)
    tar_path = shipped_file(_TAR)
    floods_all = {name: read_pcap(shipped_file(rel))[0] for name, rel in _FLOODS.items()}
    floods = {
        "syn_flood": floods_all["syn_flood"],
        "udp_flood": floods_all["udp_flood"].take(floods_all["udp_flood"].protocol == PROTO_UDP),
    }
    devices = _read_sentinel(tar_path)
    kept = {d: v for d, v in devices.items() if len(v[1]) >= config.min_packets}
    if not kept:
        raise DataError(f"no device has >= {config.min_packets} packets", path=tar_path)
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 41]))
    header = ",".join(feature_names())
    tmp = out.parent / f".{out.name}.building-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    manifest_devices: dict[str, Any] = {}
    try:
        for done, (device, (mac, packets, num_captures)) in enumerate(kept.items(), start=1):
            benign = packets.take(np.arange(min(len(packets), config.max_benign_packets)))
            n_benign = len(benign)
            ip = _device_ip(benign, mac)
            t0 = float(benign.timestamp[-1]) + _GAP_SECONDS
            folder = tmp / device
            (folder / "ddos_attacks").mkdir(parents=True)
            entry: dict[str, Any] = {
                "mac": ":".join(f"{(mac >> s) & 0xFF:02x}" for s in range(40, -8, -8)),
                "ipv4": None if ip is None else _ipv4_text(int(ip[1])),
                "captures": num_captures,
                "packets_available": len(packets),
                "rows": {"benign": n_benign},
                "attack_offsets": {},
            }
            benign_rows: NDArray[np.float64] | None = None
            for name, flood in floods.items():
                n = min(len(flood), max(config.min_attack_packets, round(config.attack_ratio * n_benign)))
                start = int(rng.integers(0, len(flood) - n + 1))
                rewrite_ip = name == "udp_flood" or config.syn_flood_source == "device"
                attack = _replay(flood, n, start, mac=mac, ip=ip, rewrite_ip=rewrite_ip, t0=t0)
                feats, _ = extract_features(PacketTable.concat([benign, attack]), order="given")
                if benign_rows is None:
                    benign_rows = feats[:n_benign]
                target = folder / "ddos_attacks" / f"{name}.csv.gz"
                target.write_bytes(_csv_gz_bytes(feats[n_benign:], header))
                entry["rows"][f"ddos.{name}"] = n
                entry["attack_offsets"][name] = start
            assert benign_rows is not None
            (folder / "benign_traffic.csv.gz").write_bytes(_csv_gz_bytes(benign_rows, header))
            manifest_devices[device] = entry
            if progress is not None:
                progress(device, done, len(kept))
        manifest = {
            "dataset": "fediot gateway",
            "format": GATEWAY_FORMAT,
            "config": asdict(config),
            "layout": "N-BaIoT UCI: <Device>/benign_traffic.csv.gz and <Device>/ddos_attacks/<attack>.csv.gz",
            "sources": {
                _TAR: sha256_file(tar_path),
                **{rel: sha256_file(shipped_file(rel)) for rel in _FLOODS.values()},
            },
            "devices_skipped": {d: len(v[1]) for d, v in devices.items() if d not in kept},
            "devices": manifest_devices,
            "files": {
                str(p.relative_to(tmp)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(tmp.rglob("*.csv.gz"))
            },
        }
        write_json(tmp / "manifest.json", manifest)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _manifest_ok(path: Path, config: GatewayConfig) -> bool:
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(manifest.get("format") == GATEWAY_FORMAT and manifest.get("config") == asdict(config))


def gateway_dataset_path(
    config: GatewayConfig | None = None,
    *,
    cache_dir: Path | None = None,
    rebuild: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> Path:
    """Return the folder of the gateway dataset for ``config``, building it on first use (cached).

    The cache lives in :func:`default_cache_dir` (override with ``cache_dir`` or ``$FEDIOT_CACHE_DIR``).
    """
    config = config or GatewayConfig()
    name = f"gateway-v{GATEWAY_FORMAT}-seed{config.seed}"
    if config != GatewayConfig(seed=config.seed):
        digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:10]
        name += f"-{digest}"
    root = (cache_dir or default_cache_dir()) / name
    if rebuild or not _manifest_ok(root, config):
        log.info("building the gateway dataset into %s (first use)", root)
        build_gateway_dataset(root, config, progress=progress)
    return root
