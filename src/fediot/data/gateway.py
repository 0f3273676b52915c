"""The gateway dataset: real IoT device traffic plus real attack traffic replayed as if from the device.

Benign traffic: the IoT Sentinel captures (Miettinen et al., ICDCS 2017), one client per device with at least
``min_packets`` packets; a device's captures are merged into one stream in time order and its first
``max_benign_packets`` packets kept.

Attacks, replayed as if the device were infected; each attack type's block starts 1 s after the device's
last benign packet and keeps the capture's own timing. Block size per attack type (the rule):
``min(len(capture), max(min_attack_packets, round(attack_ratio * n_benign)))``; a capture longer than that
contributes a contiguous block at a seeded offset, a shorter one all of it.

- ``ddos.*`` (v1 and v2): the StopDDoS captures (Haaijer 2022). Every packet gets the device's MAC as
  source MAC; the UDP amplification flood, whose sources are real reflectors, also the device's IPv4
  address as source IP; the SYN flood's sources are spoofed, so they stay (``syn_flood_source="device"``,
  not the default, rewrites them too: a what-if that shows how much the spoofing hides). The amplification
  capture's ICMP packets (the victim's replies) are dropped.
- v2 only: the lab captures in ``data/lab/`` (``lab/capture.py``: nmap, masscan, hping3, hydra, ab,
  dnsperf, arp-scan, MQTT and IRC clients against real services in network namespaces), both directions as
  the device's own port would see them: the lab attacker's MAC and IPv4 address (02:77:00:00:00:02,
  10.77.0.2) become the device's, in source and destination fields alike; spoofed sources (10.77.128.0/17)
  and the victims (10.77.1.x) stay. Attack types ``bruteforce.*``, ``scan.*``, ``flood.*``, ``dns.*``,
  ``cc.*`` (:data:`LAB_ATTACKS`).

``version=1`` builds the first dataset (the two floods, 2,000-packet blocks: ``min_attack_packets=500``,
``attack_ratio=0.5``) byte-identical to what fediot built before v2; ``version=2`` (the default) adds the
lab attacks with smaller blocks (``min_attack_packets=100``, ``attack_ratio=0.05``: 200 rows per attack
type for a device with 4,000 benign packets), so that 25 attack types cost about as many rows as v1's two.

Features: fediot's AfterImage extractor over the benign stream followed by one attack (each attack on its
own copy of the benign stream, as N-BaIoT captured each attack separately). Written in the N-BaIoT UCI
layout::

    <out>/<Device>/benign_traffic.csv.gz
    <out>/<Device>/ddos_attacks/syn_flood.csv.gz        -> attack type "ddos.syn_flood"
    <out>/<Device>/scan_attacks/nmap_syn.csv.gz         -> attack type "scan.nmap_syn" (v2)
    <out>/manifest.json                                 sources (sha256), parameters, row counts

Deterministic: the same config (seed included) gives byte-identical files (gzip mtime 0, fixed formatting),
whatever the number of worker processes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import multiprocessing
import os
import shutil
import tarfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
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
    "GATEWAY_VERSIONS",
    "LAB_ATTACKS",
    "GatewayConfig",
    "build_gateway_dataset",
    "default_cache_dir",
    "gateway_dataset_path",
]

log = logging.getLogger(__name__)

GATEWAY_FORMAT = 2
"""Bumped whenever the builder's output changes; a cached dataset of another format is rebuilt."""
GATEWAY_VERSIONS = (1, 2)
"""Dataset versions :class:`GatewayConfig` can build (see the module docstring)."""

_TAR = "iot_sentinel/captures_IoT-Sentinel.tar.gz"
_FLOODS = {
    "syn_flood": "ddos_pcaps/pkt.TCP.synflood.spoofed.pcap.gz",
    "udp_flood": "ddos_pcaps/amp.UDP.bacnet.IOT.37810.pcap.gz",
}
LAB_ATTACKS = (
    "bruteforce.ssh", "bruteforce.telnet",
    "cc.irc", "cc.mqtt",
    "dns.random_subdomain",
    "flood.ack", "flood.ack_spoofed", "flood.http_get", "flood.icmp", "flood.icmp_spoofed",
    "flood.syn", "flood.syn_spoofed", "flood.udp", "flood.udp_spoofed",
    "scan.arp", "scan.icmp_sweep", "scan.masscan", "scan.masscan_telnet_slow", "scan.nmap_connect",
    "scan.nmap_syn", "scan.nmap_syn_slow", "scan.nmap_udp", "scan.nmap_version",
)  # fmt: skip
"""The v2 lab attack types: ``data/lab/<type>.pcap.gz``, made by ``lab/capture.py``."""
_LAB_ATTACKER_MAC = 0x02_77_00_00_00_02
_LAB_ATTACKER_IP = (10 << 24) | (77 << 16) | 2
_DEFAULTS = {1: (500, 0.5), 2: (100, 0.05)}  # version -> (min_attack_packets, attack_ratio)
_GAP_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Parameters of the gateway dataset (see the module docstring for the rules).

    ``min_attack_packets`` and ``attack_ratio`` default (``None``) to the version's values: 500 and 0.5
    for v1, 100 and 0.05 for v2 (see :attr:`attack_block`).
    """

    seed: int = 0
    version: int = 1
    min_packets: int = 500
    max_benign_packets: int = 4000
    min_attack_packets: int | None = None
    attack_ratio: float | None = None
    syn_flood_source: str = "spoofed"

    def __post_init__(self) -> None:
        if self.version not in GATEWAY_VERSIONS:
            raise ConfigError(f"gateway version must be one of {GATEWAY_VERSIONS}, got {self.version!r}")
        if self.syn_flood_source not in ("spoofed", "device"):
            raise ConfigError(f"syn_flood_source must be spoofed or device, got {self.syn_flood_source!r}")
        if self.min_packets < 3 or self.max_benign_packets < self.min_packets:
            raise ConfigError(f"need 3 <= min_packets <= max_benign_packets, got {self}")
        min_attack, ratio = self.attack_block
        if min_attack < 1 or not ratio > 0:
            raise ConfigError(f"need min_attack_packets >= 1 and attack_ratio > 0, got {self}")

    @property
    def attack_block(self) -> tuple[int, float]:
        """``(min_attack_packets, attack_ratio)`` with the version's defaults filled in."""
        min_attack, ratio = _DEFAULTS[self.version]
        return (
            min_attack if self.min_attack_packets is None else self.min_attack_packets,
            ratio if self.attack_ratio is None else self.attack_ratio,
        )


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
    capture: PacketTable,
    n: int,
    start: int,
    *,
    mac: int,
    ip: NDArray[np.uint64] | None,
    rewrite_ip: bool,
    t0: float,
) -> PacketTable:
    """Return a one-way flood's block as the device sends it: its source MAC (and IP if ``rewrite_ip``)."""
    block = capture.take(np.arange(start, start + n))
    src_mac = np.full(n, mac, dtype=np.uint64)
    src_ip = block.src_ip.copy()
    if rewrite_ip and ip is not None:
        src_ip[:] = ip
    return _with(block, src_mac=src_mac, src_ip=src_ip, timestamp=block.timestamp - block.timestamp[0] + t0)


def _replay_lab(
    capture: PacketTable, n: int, start: int, *, mac: int, ip: NDArray[np.uint64] | None, t0: float
) -> PacketTable:
    """Return a lab capture's block as the device's port sees it: the lab attacker becomes the device.

    Both directions are rewritten (the attacker's replies and the victims' answers to it); spoofed sources
    and the victims' addresses stay. A device without a known IPv4 address keeps the lab attacker's.
    """
    block = capture.take(np.arange(start, start + n))
    attacker = np.uint64(_LAB_ATTACKER_MAC)
    src_mac = np.where(block.src_mac == attacker, np.uint64(mac), block.src_mac).astype(np.uint64)
    dst_mac = np.where(block.dst_mac == attacker, np.uint64(mac), block.dst_mac).astype(np.uint64)
    src_ip, dst_ip = block.src_ip.copy(), block.dst_ip.copy()
    if ip is not None:
        v4 = block.ip_version == 4
        for column in (src_ip, dst_ip):
            column[v4 & (column[:, 0] == 0) & (column[:, 1] == np.uint64(_LAB_ATTACKER_IP))] = ip
    return _with(
        block, src_mac=src_mac, dst_mac=dst_mac, src_ip=src_ip, dst_ip=dst_ip,
        timestamp=block.timestamp - block.timestamp[0] + t0,
    )  # fmt: skip


def _with(table: PacketTable, **columns: NDArray[Any]) -> PacketTable:
    names = ("timestamp", "length", "src_mac", "dst_mac", "src_ip", "dst_ip", "ip_version", "protocol",
             "src_port", "dst_port")  # fmt: skip
    fields = {name: getattr(table, name) for name in names}
    fields.update(columns)
    return PacketTable(**fields)


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


@dataclass(frozen=True, slots=True)
class _Attack:
    """One attack type's capture and how it is replayed from a device."""

    key: str  # "<family>.<variant>"
    source: str  # shipped file, relative to data/
    packets: PacketTable
    lab: bool  # both directions rewritten (lab) or one-way flood (StopDDoS)
    rewrite_ip: bool  # floods only: also rewrite the source IP


@dataclass(frozen=True, slots=True)
class _Job:
    """One device's share of the build (its attack blocks already drawn, so workers draw nothing)."""

    device: str
    mac: int
    packets: PacketTable
    num_captures: int
    max_benign: int
    blocks: tuple[tuple[int, int], ...]  # (n, start) per attack, in _Attack order
    folder: Path


_ATTACKS: list[_Attack] = []  # set by build_gateway_dataset before workers fork; read by _build_device


def _load_attacks(config: GatewayConfig) -> list[_Attack]:
    syn = read_pcap(shipped_file(_FLOODS["syn_flood"]))[0]
    udp = read_pcap(shipped_file(_FLOODS["udp_flood"]))[0]
    attacks = [
        _Attack("ddos.syn_flood", _FLOODS["syn_flood"], syn, False, config.syn_flood_source == "device"),
        _Attack("ddos.udp_flood", _FLOODS["udp_flood"], udp.take(udp.protocol == PROTO_UDP), False, True),
    ]
    if config.version >= 2:
        for key in LAB_ATTACKS:
            rel = f"lab/{key}.pcap.gz"
            attacks.append(_Attack(key, rel, read_pcap(shipped_file(rel))[0], True, False))
    return attacks


def _build_device(job: _Job) -> dict[str, Any]:
    """Extract and write one device's benign and attack tables; return its manifest entry."""
    packets, mac = job.packets, job.mac
    benign = packets.take(np.arange(min(len(packets), job.max_benign)))
    header = ",".join(feature_names())
    n_benign = len(benign)
    ip = _device_ip(benign, mac)
    t0 = float(benign.timestamp[-1]) + _GAP_SECONDS
    entry: dict[str, Any] = {
        "mac": ":".join(f"{(mac >> s) & 0xFF:02x}" for s in range(40, -8, -8)),
        "ipv4": None if ip is None else _ipv4_text(int(ip[1])),
        "captures": job.num_captures,
        "packets_available": len(packets),
        "rows": {"benign": n_benign},
        "attack_offsets": {},
    }
    benign_rows: NDArray[np.float64] | None = None
    for attack, (n, start) in zip(_ATTACKS, job.blocks, strict=True):
        if attack.lab:
            replayed = _replay_lab(attack.packets, n, start, mac=mac, ip=ip, t0=t0)
        else:
            replayed = _replay(attack.packets, n, start, mac=mac, ip=ip, rewrite_ip=attack.rewrite_ip, t0=t0)
        feats, _ = extract_features(PacketTable.concat([benign, replayed]), order="given")
        if benign_rows is None:
            benign_rows = feats[:n_benign]
        family, variant = attack.key.split(".", 1)
        target = job.folder / f"{family}_attacks" / f"{variant}.csv.gz"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_csv_gz_bytes(feats[n_benign:], header))
        entry["rows"][attack.key] = n
        entry["attack_offsets"][attack.key] = start
    assert benign_rows is not None
    (job.folder / "benign_traffic.csv.gz").write_bytes(_csv_gz_bytes(benign_rows, header))
    return entry


def build_gateway_dataset(
    out: Path,
    config: GatewayConfig | None = None,
    *,
    progress: Callable[[str, int, int], None] | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Build the gateway dataset into ``out`` (replaced atomically as a whole) and return its manifest.

    Parameters
    ----------
    out : Path
        Target folder. It is built beside it under a temporary name, then renamed over it.
    config : GatewayConfig, optional
    progress : callable, optional
        ``progress(device, done, total)`` after each device.
    workers : int, optional
        Processes extracting devices in parallel (default: the CPUs this process may use). The output does
        not depend on it: every random choice is drawn before the work is shared out.

    Returns
    -------
    dict
        The manifest also written to ``out/manifest.json``.
    """
    config = config or GatewayConfig()
    out = Path(out)
    tar_path = shipped_file(_TAR)
    attacks = _load_attacks(config)
    devices = _read_sentinel(tar_path)
    kept = {d: v for d, v in devices.items() if len(v[1]) >= config.min_packets}
    if not kept:
        raise DataError(f"no device has >= {config.min_packets} packets", path=tar_path)
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 41]))
    min_attack, ratio = config.attack_block
    tmp = out.parent / f".{out.name}.building-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    jobs = []
    for device, (mac, packets, num_captures) in kept.items():
        n_benign = min(len(packets), config.max_benign_packets)
        blocks = []
        for attack in attacks:
            n = min(len(attack.packets), max(min_attack, round(ratio * n_benign)))
            blocks.append((n, int(rng.integers(0, len(attack.packets) - n + 1))))
        jobs.append(
            _Job(device, mac, packets, num_captures, config.max_benign_packets, tuple(blocks), tmp / device)
        )
    _ATTACKS[:] = attacks
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = max(1, min(workers, len(jobs)))
    if "fork" not in multiprocessing.get_all_start_methods():
        workers = 1  # workers read the loaded captures from this process's memory
    manifest_devices: dict[str, Any] = {}
    sources = {a.source: sha256_file(shipped_file(a.source)) for a in attacks}
    try:
        for job in jobs:
            job.folder.mkdir()
        results: Iterator[dict[str, Any]]
        pool = None
        if workers == 1:
            results = map(_build_device, jobs)
        else:
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
            results = pool.map(_build_device, jobs)
        try:
            for done, (job, entry) in enumerate(zip(jobs, results, strict=True), start=1):
                manifest_devices[job.device] = entry
                if progress is not None:
                    progress(job.device, done, len(jobs))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        manifest = {
            "dataset": "fediot gateway",
            "format": GATEWAY_FORMAT,
            "version": config.version,
            "config": asdict(config),
            "layout": "N-BaIoT UCI: <Device>/benign_traffic.csv.gz, <Device>/<family>_attacks/<var>.csv.gz",
            "attack_types": [a.key for a in attacks],
            "sources": {_TAR: sha256_file(tar_path), **sources},
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
    finally:
        _ATTACKS.clear()
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
    name = f"gateway-v{config.version}-f{GATEWAY_FORMAT}-seed{config.seed}"
    if config != GatewayConfig(seed=config.seed, version=config.version):
        digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:10]
        name += f"-{digest}"
    root = (cache_dir or default_cache_dir()) / name
    if rebuild or not _manifest_ok(root, config):
        log.info("building the gateway dataset into %s (first use)", root)
        build_gateway_dataset(root, config, progress=progress)
    return root
