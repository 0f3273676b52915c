"""Read pcap/pcapng captures (optionally gzipped) into a columnar packet table."""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dpkt
import numpy as np
from numba import njit
from numpy.typing import NDArray

from fediot.errors import DataError

__all__ = [
    "LINKTYPE_ETHERNET",
    "PROTO_ARP",
    "PROTO_ICMP",
    "PROTO_OTHER",
    "PROTO_TCP",
    "PROTO_UDP",
    "SKIP_REASONS",
    "SUPPORTED_LINKTYPES",
    "PacketTable",
    "ReadSummary",
    "parse_capture",
    "read_pcap",
]

LINKTYPE_ETHERNET = 1
_LINKTYPE_RAW = 101
_LINKTYPE_LINUX_SLL = 113
_LINKTYPE_IPV4 = 228
_LINKTYPE_IPV6 = 229
_LINKTYPE_LINUX_SLL2 = 276
SUPPORTED_LINKTYPES: dict[int, str] = {
    LINKTYPE_ETHERNET: "Ethernet",
    _LINKTYPE_RAW: "raw IP (no MAC addresses: both MACs are 0)",
    _LINKTYPE_LINUX_SLL: "Linux cooked v1 (source MAC from the header, destination MAC 0)",
    _LINKTYPE_IPV4: "raw IPv4 (MACs 0)",
    _LINKTYPE_IPV6: "raw IPv6 (MACs 0)",
    _LINKTYPE_LINUX_SLL2: "Linux cooked v2 (source MAC from the header, destination MAC 0)",
}

PROTO_OTHER = 0
"""Neither TCP, UDP, IPv4 ICMP nor ARP (IGMP, ICMPv6, later IP fragments, non-IP layer 2, ...)."""
PROTO_TCP = 1
PROTO_UDP = 2
PROTO_ICMP = 3
"""IPv4 ICMP only (Kitsune's convention: ICMPv6 counts as "other")."""
PROTO_ARP = 4
"""Ethernet/IPv4 ARP; ``src_ip``/``dst_ip`` hold the ARP sender/target protocol addresses."""

# status codes of the numba decoder -> reason names (0 = decoded)
SKIP_REASONS: tuple[str, ...] = (
    "ok",
    "short_link_header",
    "short_ip_header",
    "bad_ip_header",
    "short_l4_header",
    "short_arp",
    "caplen_exceeds_wire_length",
)
_MAX_CAPLEN = 1 << 18  # 256 KiB: larger than any real snaplen; more means a corrupt record header
_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e6),
    b"\xa1\xb2\xc3\xd4": (">", 1e6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e9),
    b"\xa1\xb2\x3c\x4d": (">", 1e9),
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class PacketTable:
    """Columnar parsed packets: one row per packet, no Python object per packet.

    Addresses are integers: a MAC is the 48-bit big-endian value in a ``uint64``; an IP address is two
    ``uint64`` words (high, low) of the 128-bit value (IPv4: high word 0, low word the 32-bit address).
    Builders may rewrite any column (e.g. MACs, IPs, timestamps of attack packets) and pass the table to
    :func:`fediot.features.extract_features`.

    Parameters
    ----------
    timestamp : ndarray of shape (n_packets,), float64
        Capture time in seconds since the epoch.
    length : ndarray of shape (n_packets,), int64
        Frame length on the wire (bytes), the size Kitsune feeds its statistics.
    src_mac, dst_mac : ndarray of shape (n_packets,), uint64
        Link-layer addresses (0 where the link type has none).
    src_ip, dst_ip : ndarray of shape (n_packets, 2), uint64
        Network-layer addresses (ARP: sender/target protocol addresses; 0 when ``ip_version`` is 0).
    ip_version : ndarray of shape (n_packets,), uint8
        4, 6, or 0 for packets without an IP/ARP address (they are keyed by MAC, as in Kitsune).
    protocol : ndarray of shape (n_packets,), uint8
        One of ``PROTO_OTHER``, ``PROTO_TCP``, ``PROTO_UDP``, ``PROTO_ICMP``, ``PROTO_ARP``.
    src_port, dst_port : ndarray of shape (n_packets,), int32
        TCP/UDP ports; -1 for other protocols.
    """

    timestamp: NDArray[np.float64]
    length: NDArray[np.int64]
    src_mac: NDArray[np.uint64]
    dst_mac: NDArray[np.uint64]
    src_ip: NDArray[np.uint64]
    dst_ip: NDArray[np.uint64]
    ip_version: NDArray[np.uint8]
    protocol: NDArray[np.uint8]
    src_port: NDArray[np.int32]
    dst_port: NDArray[np.int32]

    def __post_init__(self) -> None:
        n = self.timestamp.shape[0]
        for name, dtype, ndim in _COLUMNS:
            col = getattr(self, name)
            if not isinstance(col, np.ndarray) or col.dtype != dtype:
                raise DataError(f"PacketTable.{name} must be a numpy array of dtype {np.dtype(dtype)}")
            expected = (n,) if ndim == 1 else (n, 2)
            if col.shape != expected:
                raise DataError(f"PacketTable.{name} has shape {col.shape}, expected {expected}")

    def __len__(self) -> int:
        return int(self.timestamp.shape[0])

    @classmethod
    def empty(cls) -> PacketTable:
        """Return a table with no packets."""
        return cls(**{name: np.zeros((0,) if nd == 1 else (0, 2), dtype=dt) for name, dt, nd in _COLUMNS})

    def take(self, index: NDArray[np.intp] | NDArray[np.bool_]) -> PacketTable:
        """Return the rows selected by an integer index or boolean mask, of shape (n_selected,)."""
        return PacketTable(
            **{name: np.ascontiguousarray(getattr(self, name)[index]) for name, _, _ in _COLUMNS}
        )

    @staticmethod
    def concat(tables: Sequence[PacketTable]) -> PacketTable:
        """Concatenate tables row-wise, in the given order."""
        if not tables:
            return PacketTable.empty()
        return PacketTable(
            **{name: np.concatenate([getattr(t, name) for t in tables]) for name, _, _ in _COLUMNS}
        )

    def time_order(self) -> NDArray[np.intp]:
        """Return the stable permutation, of shape (n_packets,), that sorts packets by timestamp."""
        return np.argsort(self.timestamp, kind="stable")


_COLUMNS: tuple[tuple[str, type[np.generic], int], ...] = (
    ("timestamp", np.float64, 1),
    ("length", np.int64, 1),
    ("src_mac", np.uint64, 1),
    ("dst_mac", np.uint64, 1),
    ("src_ip", np.uint64, 2),
    ("dst_ip", np.uint64, 2),
    ("ip_version", np.uint8, 1),
    ("protocol", np.uint8, 1),
    ("src_port", np.int32, 1),
    ("dst_port", np.int32, 1),
)


@dataclass(frozen=True, slots=True)
class ReadSummary:
    """What reading one capture produced.

    Parameters
    ----------
    path : str
        The file read.
    format : str
        ``"pcap"`` or ``"pcapng"``.
    linktype : int
        Link-layer header type (1 = Ethernet).
    num_records : int
        Packet records found in the file.
    num_packets : int
        Packets decoded into the table (``num_records`` minus the skipped ones).
    skipped : dict of str to int
        Records not in the table, by reason (e.g. ``"truncated_record"``, ``"short_ip_header"``).
    """

    path: str
    format: str
    linktype: int
    num_records: int
    num_packets: int
    skipped: dict[str, int] = field(default_factory=dict)


def read_pcap(path: str | Path) -> tuple[PacketTable, ReadSummary]:
    """Read a pcap or pcapng file, gzipped or not (detected by magic number), into a packet table.

    The whole file is read into memory. Packets keep the file's order.

    Parameters
    ----------
    path : str or Path
        The capture file.

    Returns
    -------
    table : PacketTable
        One row per decoded packet, shape (n_packets,) per column.
    summary : ReadSummary
        Record counts and skipped records by reason.

    Raises
    ------
    DataError
        If the file is empty, not a capture (wrong magic), a corrupt gzip, has an unsupported link type, or a
        record header with an impossible length (the rest of the file cannot be framed).
    """
    path = Path(path)
    data = path.read_bytes()
    return parse_capture(data, name=str(path))


def parse_capture(data: bytes, *, name: str = "<bytes>") -> tuple[PacketTable, ReadSummary]:
    """Parse the bytes of a pcap/pcapng capture (optionally gzipped); see :func:`read_pcap`.

    Parameters
    ----------
    data : bytes
        The file content.
    name : str
        Used in error messages and the summary.

    Returns
    -------
    table : PacketTable
        One row per decoded packet.
    summary : ReadSummary
        Record counts and skipped records by reason.
    """
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"corrupt or truncated gzip stream ({exc})", path=name) from None
    if not data:
        raise DataError("empty file: not a pcap/pcapng capture", path=name)
    magic = data[:4]
    if magic in _PCAP_MAGICS:
        fmt = "pcap"
        linktype, ts, wire, offsets, caplens, skipped = _frame_pcap(data, name)
    elif magic == _PCAPNG_MAGIC:
        fmt = "pcapng"
        linktype, ts, wire, offsets, caplens, skipped = _frame_pcapng(data, name)
    else:
        raise DataError(
            f"not a pcap or pcapng capture (magic 0x{magic.hex()}; expected a1b2c3d4, a1b23c4d, "
            "0a0d0d0a or a gzip of one)",
            path=name,
        )
    if linktype not in SUPPORTED_LINKTYPES:
        raise DataError(
            f"unsupported link type {linktype} (supported: "
            + ", ".join(f"{k} {v}" for k, v in SUPPORTED_LINKTYPES.items())
            + ")",
            path=name,
        )
    buf = np.frombuffer(data, dtype=np.uint8)
    n = ts.shape[0]
    cols = _alloc_columns(n)
    status = np.zeros(n, dtype=np.uint8)
    _decode_headers(
        buf, offsets, caplens, wire, linktype, status,
        cols["src_mac"], cols["dst_mac"], cols["src_ip"], cols["dst_ip"],
        cols["ip_version"], cols["protocol"], cols["src_port"], cols["dst_port"],
    )  # fmt: skip
    cols["timestamp"] = ts
    cols["length"] = wire
    ok = status == 0
    counts = np.bincount(status, minlength=len(SKIP_REASONS))
    for code in range(1, len(SKIP_REASONS)):
        if counts[code]:
            skipped[SKIP_REASONS[code]] = skipped.get(SKIP_REASONS[code], 0) + int(counts[code])
    table = PacketTable(**cols)
    if not ok.all():
        table = table.take(ok)
    num_records = n + skipped.get("truncated_record", 0)
    summary = ReadSummary(
        path=name, format=fmt, linktype=linktype, num_records=num_records, num_packets=len(table),
        skipped=skipped,
    )  # fmt: skip
    return table, summary


def _alloc_columns(n: int) -> dict[str, Any]:
    return {
        "src_mac": np.zeros(n, np.uint64),
        "dst_mac": np.zeros(n, np.uint64),
        "src_ip": np.zeros((n, 2), np.uint64),
        "dst_ip": np.zeros((n, 2), np.uint64),
        "ip_version": np.zeros(n, np.uint8),
        "protocol": np.zeros(n, np.uint8),
        "src_port": np.full(n, -1, np.int32),
        "dst_port": np.full(n, -1, np.int32),
    }


_Framed = tuple[
    int, NDArray[np.float64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], dict[str, int]
]


def _frame_pcap(data: bytes, name: str) -> _Framed:
    """Validate the classic pcap header with dpkt, then frame the records (numba, over the raw bytes)."""
    try:
        reader = dpkt.pcap.Reader(io.BytesIO(data))
    except (ValueError, struct.error, dpkt.NeedData, dpkt.UnpackError) as exc:
        raise DataError(f"invalid pcap file header ({exc})", path=name) from None
    linktype = int(reader.datalink()) & 0x0FFFFFFF  # the upper bits may carry FCS information
    endian, divisor = _PCAP_MAGICS[data[:4]]
    buf = np.frombuffer(data, dtype=np.uint8)
    n, bad_offset, bad_len, truncated = _count_pcap_records(buf, endian == ">")
    if bad_offset >= 0:
        raise DataError(
            f"corrupt record header at byte offset {bad_offset} (record {n + 1}): captured length {bad_len} "
            f"exceeds {_MAX_CAPLEN} bytes; the rest of the file cannot be read",
            path=name,
        )
    ts = np.empty(n, np.float64)
    wire = np.empty(n, np.int64)
    offsets = np.empty(n, np.int64)
    caplens = np.empty(n, np.int64)
    _fill_pcap_records(buf, endian == ">", divisor, ts, wire, offsets, caplens)
    skipped = {"truncated_record": 1} if truncated else {}
    return linktype, ts, wire, offsets, caplens, skipped


@njit(cache=True)
def _u32(buf: Any, off: int, big: bool) -> int:  # pragma: no cover - compiled
    if big:
        return (
            (int(buf[off]) << 24) | (int(buf[off + 1]) << 16) | (int(buf[off + 2]) << 8) | int(buf[off + 3])
        )
    return (int(buf[off + 3]) << 24) | (int(buf[off + 2]) << 16) | (int(buf[off + 1]) << 8) | int(buf[off])


@njit(cache=True)
def _count_pcap_records(buf: Any, big: bool) -> tuple[int, int, int, bool]:  # pragma: no cover - compiled
    size = buf.shape[0]
    off = 24
    n = 0
    while off < size:
        if off + 16 > size:
            return n, -1, 0, True
        caplen = _u32(buf, off + 8, big)
        if caplen > _MAX_CAPLEN:
            return n, off, caplen, False
        if off + 16 + caplen > size:
            return n, -1, 0, True
        off += 16 + caplen
        n += 1
    return n, -1, 0, False


@njit(cache=True)
def _fill_pcap_records(
    buf: Any, big: bool, divisor: float, ts: Any, wire: Any, offsets: Any, caplens: Any
) -> None:  # pragma: no cover - compiled
    off = 24
    for i in range(ts.shape[0]):
        ts[i] = _u32(buf, off, big) + _u32(buf, off + 4, big) / divisor
        caplen = _u32(buf, off + 8, big)
        wire[i] = _u32(buf, off + 12, big)
        offsets[i] = off + 16
        caplens[i] = caplen
        off += 16 + caplen


def _frame_pcapng(data: bytes, name: str) -> _Framed:
    """Validate the pcapng section header with dpkt, then walk the blocks (one struct call per block)."""
    try:
        dpkt.pcapng.Reader(io.BytesIO(data))
    except (ValueError, struct.error, dpkt.NeedData, dpkt.UnpackError) as exc:
        raise DataError(f"invalid pcapng file ({exc})", path=name) from None
    size = len(data)
    end = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    hdr = struct.Struct(end + "II")
    epb = struct.Struct(end + "IIIII")
    interfaces: list[tuple[int, float, float]] = []  # linktype, divisor, offset seconds
    ts_l: list[float] = []
    wire_l: list[int] = []
    off_l: list[int] = []
    cap_l: list[int] = []
    skipped: dict[str, int] = {}
    off = 0
    while off < size:
        if off + 12 > size:
            skipped["truncated_record"] = skipped.get("truncated_record", 0) + 1
            break
        btype, blen = hdr.unpack_from(data, off)
        if blen < 12 or blen % 4 or blen > _MAX_CAPLEN + 64:
            raise DataError(
                f"corrupt pcapng block at byte offset {off}: block length {blen}; the rest cannot be read",
                path=name,
            )
        if off + blen > size:
            skipped["truncated_record"] = skipped.get("truncated_record", 0) + 1
            break
        if btype == 0x0A0D0D0A:  # a new section: interface numbering restarts
            if data[off + 8 : off + 12] != data[8:12]:
                raise DataError(f"pcapng section at offset {off} changes byte order (unsupported)", path=name)
            interfaces = []
        elif btype == 1:  # interface description block
            idb_cls = (
                dpkt.pcapng.InterfaceDescriptionBlockLE
                if end == "<"
                else dpkt.pcapng.InterfaceDescriptionBlock
            )
            interfaces.append(_parse_idb(idb_cls(data[off : off + blen])))
        elif btype in (6, 2):  # enhanced packet block / obsolete packet block
            iface, ts_hi, ts_lo, caplen, pkt_len = epb.unpack_from(data, off + 8)
            if btype == 2:
                iface &= 0xFFFF
            if iface >= len(interfaces):
                raise DataError(f"packet block at offset {off} names unknown interface {iface}", path=name)
            _, divisor, tsoff = interfaces[iface]
            if caplen > blen - 32:
                raise DataError(
                    f"corrupt packet block at byte offset {off}: captured length {caplen}", path=name
                )
            ts_l.append(tsoff + ((ts_hi << 32) | ts_lo) / divisor)
            wire_l.append(pkt_len)
            off_l.append(off + 28)
            cap_l.append(caplen)
        elif btype == 3:  # simple packet block: no timestamp
            raise DataError("pcapng simple packet blocks have no timestamps (unsupported)", path=name)
        off += blen
    linktypes = {lt for lt, _, _ in interfaces}
    if len(linktypes) > 1:
        raise DataError(f"pcapng file mixes link types {sorted(linktypes)} (unsupported)", path=name)
    linktype = linktypes.pop() if linktypes else LINKTYPE_ETHERNET
    return (
        linktype,
        np.asarray(ts_l, np.float64),
        np.asarray(wire_l, np.int64),
        np.asarray(off_l, np.int64),
        np.asarray(cap_l, np.int64),
        skipped,
    )


def _parse_idb(idb: Any) -> tuple[int, float, float]:
    divisor = 1e6
    tsoffset = 0.0
    for opt in idb.opts:
        if opt.code == 9 and opt.data:  # if_tsresol
            val = opt.data[0]
            divisor = float(2 ** (val & 0x7F)) if val & 0x80 else float(10 ** (val & 0x7F))
        elif opt.code == 14 and len(opt.data) == 8:  # if_tsoffset
            tsoffset = float(
                struct.unpack(
                    "<q" if isinstance(idb, dpkt.pcapng.InterfaceDescriptionBlockLE) else ">q", opt.data
                )[0]
            )
    return int(idb.linktype), divisor, tsoffset


@njit(cache=True)
def _be16(buf: Any, off: int) -> int:  # pragma: no cover - compiled
    return (int(buf[off]) << 8) | int(buf[off + 1])


@njit(cache=True)
def _be_uint(buf: Any, off: int, nbytes: int) -> np.uint64:  # pragma: no cover - compiled
    v = np.uint64(0)
    for k in range(nbytes):
        v = (v << np.uint64(8)) | np.uint64(buf[off + k])
    return v


@njit(cache=True)
def _decode_headers(
    buf: Any, offsets: Any, caplens: Any, wire: Any, linktype: int, status: Any,
    src_mac: Any, dst_mac: Any, src_ip: Any, dst_ip: Any,
    ip_version: Any, protocol: Any, src_port: Any, dst_port: Any,
) -> None:  # pragma: no cover - compiled  # fmt: skip
    for i in range(offsets.shape[0]):
        o = offsets[i]
        c = caplens[i]
        end = o + c
        if c > wire[i]:
            status[i] = 6
            continue
        # ---- link layer -> (p, ethertype)
        if linktype == 1:
            if c < 14:
                status[i] = 1
                continue
            dst_mac[i] = _be_uint(buf, o, 6)
            src_mac[i] = _be_uint(buf, o + 6, 6)
            etype = _be16(buf, o + 12)
            p = o + 14
            while (etype == 0x8100 or etype == 0x88A8 or etype == 0x9100) and p + 4 <= end:
                etype = _be16(buf, p + 2)
                p += 4
        elif linktype == 113:
            if c < 16:
                status[i] = 1
                continue
            if _be16(buf, o + 4) == 6:
                src_mac[i] = _be_uint(buf, o + 6, 6)
            etype = _be16(buf, o + 14)
            p = o + 16
        elif linktype == 276:
            if c < 20:
                status[i] = 1
                continue
            if buf[o + 11] == 6:
                src_mac[i] = _be_uint(buf, o + 12, 6)
            etype = _be16(buf, o)
            p = o + 20
        else:  # raw IP (101, 228, 229)
            if c < 1:
                status[i] = 1
                continue
            etype = 0x0800 if (buf[o] >> 4) == 4 else (0x86DD if (buf[o] >> 4) == 6 else 0)
            p = o
        # ---- network layer
        l4 = -1
        proto = 0
        if etype == 0x0800:
            if p + 20 > end:
                status[i] = 2
                continue
            ihl = (buf[p] & 0x0F) * 4
            if (buf[p] >> 4) != 4 or ihl < 20:
                status[i] = 3
                continue
            if p + ihl > end:
                status[i] = 2
                continue
            ip_version[i] = 4
            src_ip[i, 1] = _be_uint(buf, p + 12, 4)
            dst_ip[i, 1] = _be_uint(buf, p + 16, 4)
            proto = int(buf[p + 9])
            if (_be16(buf, p + 6) & 0x1FFF) == 0:  # first (or only) fragment carries the L4 header
                l4 = p + ihl
            if proto == 1 and l4 >= 0:
                protocol[i] = 3
                l4 = -1
        elif etype == 0x86DD:
            if p + 40 > end:
                status[i] = 2
                continue
            if (buf[p] >> 4) != 6:
                status[i] = 3
                continue
            ip_version[i] = 6
            src_ip[i, 0] = _be_uint(buf, p + 8, 8)
            src_ip[i, 1] = _be_uint(buf, p + 16, 8)
            dst_ip[i, 0] = _be_uint(buf, p + 24, 8)
            dst_ip[i, 1] = _be_uint(buf, p + 32, 8)
            proto = int(buf[p + 6])
            q = p + 40
            for _ in range(8):  # hop-by-hop, routing, destination options, fragment
                if proto == 0 or proto == 43 or proto == 60:
                    if q + 2 > end:
                        break
                    proto = int(buf[q])
                    q += (int(buf[q + 1]) + 1) * 8
                elif proto == 44:
                    if q + 8 > end:
                        break
                    if (_be16(buf, q + 2) >> 3) != 0:  # not the first fragment
                        q = -1
                        break
                    proto = int(buf[q])
                    q += 8
                else:
                    break
            l4 = q
        elif etype == 0x0806:
            if p + 28 > end:
                status[i] = 5
                continue
            if _be16(buf, p) == 1 and _be16(buf, p + 2) == 0x0800 and buf[p + 4] == 6 and buf[p + 5] == 4:
                ip_version[i] = 4
                protocol[i] = 4
                src_ip[i, 1] = _be_uint(buf, p + 14, 4)
                dst_ip[i, 1] = _be_uint(buf, p + 24, 4)
            continue
        else:
            continue  # other layer-2 protocol: keyed by MAC addresses
        if (proto == 6 or proto == 17) and l4 >= 0:
            if l4 + 4 > end:
                status[i] = 4
                continue
            protocol[i] = 1 if proto == 6 else 2
            src_port[i] = _be16(buf, l4)
            dst_port[i] = _be16(buf, l4 + 2)
