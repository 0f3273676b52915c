"""Kitsune's stream keys (MAC-IP, host, IP channel, socket) as dense integer ids, vectorised."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fediot.features.pcap import PROTO_ARP, PROTO_ICMP, PROTO_TCP, PROTO_UDP, PacketTable

__all__ = ["PORT_ICMP", "PORT_NONE", "SIDE_REVERSE", "SIDE_SELF", "StreamKeys", "encode_streams"]

PORT_NONE = -1
"""Port code of packets without TCP/UDP ports (Kitsune's empty protocol string)."""
PORT_ICMP = -2
"""Port code of IPv4 ICMP packets (Kitsune's ``'icmp'``)."""
SIDE_REVERSE = 1
"""``*_side`` value: the packet goes from the pair's larger endpoint id to the smaller (0: the other way)."""
SIDE_SELF = 2
"""``*_side`` value: source and destination endpoints are the same (e.g. a gratuitous ARP)."""

# address kinds: keep MACs, IPv4 and IPv6 apart as Kitsune's strings do
_KIND_MAC = 1
_KIND_IPV4 = 2
_KIND_IPV6 = 3


@dataclass(frozen=True, slots=True)
class StreamKeys:
    """Per-packet integer stream ids for the five AfterImage stream groups.

    Ids are dense (0 .. n_keys-1) within each group. A channel pair (HH or HpHp) holds both directions
    between two endpoints; ``*_side`` says which direction a packet goes (0, ``SIDE_REVERSE``, ``SIDE_SELF``).

    Parameters
    ----------
    timestamp : ndarray of shape (n_packets,), float64
        Packet times (seconds).
    size : ndarray of shape (n_packets,), float64
        Frame lengths (bytes), the value the statistics track.
    mi : ndarray of shape (n_packets,), int64
        Source MAC + source IP key (``MI_dir``).
    host : ndarray of shape (n_packets,), int64
        Source IP key (``H``).
    hh_pair, hh_side : ndarray of shape (n_packets,), int64
        IP channel pair and direction (``HH``); the jitter key (``HH_jit``) is ``2 * hh_pair + (side == 1)``.
    hp_pair, hp_side : ndarray of shape (n_packets,), int64
        Socket (IP + port) pair and direction (``HpHp``).
    num_mi, num_host, num_hh, num_hp : int
        Number of distinct keys of each group.
    """

    timestamp: NDArray[np.float64]
    size: NDArray[np.float64]
    mi: NDArray[np.int64]
    host: NDArray[np.int64]
    hh_pair: NDArray[np.int64]
    hh_side: NDArray[np.int64]
    hp_pair: NDArray[np.int64]
    hp_side: NDArray[np.int64]
    num_mi: int
    num_host: int
    num_hh: int
    num_hp: int

    def __len__(self) -> int:
        return int(self.timestamp.shape[0])


def encode_streams(packets: PacketTable) -> StreamKeys:
    """Assign Kitsune's stream keys to every packet, as dense integer ids.

    Conventions (Kitsune's ``FeatureExtractor``): the network address is the IP (ARP: the sender/target
    protocol address); packets with neither IP nor ARP use their MAC addresses instead. The HpHp endpoint is
    IP + TCP/UDP port; IPv4 ICMP uses the port code ``'icmp'``; other IP protocols use the IP alone; ARP and
    non-IP packets use the MAC address alone. TCP and UDP ports share keys (as in Kitsune's strings).

    Parameters
    ----------
    packets : PacketTable
        Parsed packets, n_packets rows.

    Returns
    -------
    StreamKeys
        Integer ids, each of shape (n_packets,).
    """
    n = len(packets)
    no_ip = packets.ip_version == 0
    kind = np.where(no_ip, _KIND_MAC, np.where(packets.ip_version == 6, _KIND_IPV6, _KIND_IPV4)).astype(
        np.uint64
    )
    src_net = np.empty((n, 3), np.uint64)
    dst_net = np.empty((n, 3), np.uint64)
    for net, ip, mac in (
        (src_net, packets.src_ip, packets.src_mac),
        (dst_net, packets.dst_ip, packets.dst_mac),
    ):
        net[:, 0] = kind
        net[:, 1] = np.where(no_ip, np.uint64(0), ip[:, 0])
        net[:, 2] = np.where(no_ip, mac, ip[:, 1])

    mi, num_mi = _dense_ids(np.column_stack([packets.src_mac, src_net]))
    host, num_host = _dense_ids(src_net)
    hh_pair, hh_side, num_hh = _pairs(src_net, dst_net)

    by_mac = no_ip | (packets.protocol == PROTO_ARP)
    tcp_udp = (packets.protocol == PROTO_TCP) | (packets.protocol == PROTO_UDP)
    src_port = np.where(
        tcp_udp, packets.src_port, np.where(packets.protocol == PROTO_ICMP, PORT_ICMP, PORT_NONE)
    )
    dst_port = np.where(
        tcp_udp, packets.dst_port, np.where(packets.protocol == PROTO_ICMP, PORT_ICMP, PORT_NONE)
    )
    src_end = np.empty((n, 4), np.uint64)
    dst_end = np.empty((n, 4), np.uint64)
    for end, net, mac, port in ((src_end, src_net, packets.src_mac, src_port),
                                (dst_end, dst_net, packets.dst_mac, dst_port)):  # fmt: skip
        end[:, 0] = np.where(by_mac, np.uint64(_KIND_MAC), net[:, 0])
        end[:, 1] = np.where(by_mac, np.uint64(0), net[:, 1])
        end[:, 2] = np.where(by_mac, mac, net[:, 2])
        end[:, 3] = np.where(by_mac, PORT_NONE, port).astype(np.int64).view(np.uint64)
    hp_pair, hp_side, num_hp = _pairs(src_end, dst_end)
    return StreamKeys(
        timestamp=np.ascontiguousarray(packets.timestamp, dtype=np.float64),
        size=packets.length.astype(np.float64),
        mi=mi, host=host, hh_pair=hh_pair, hh_side=hh_side, hp_pair=hp_pair, hp_side=hp_side,
        num_mi=num_mi, num_host=num_host, num_hh=num_hh, num_hp=num_hp,
    )  # fmt: skip


def _dense_ids(rows: NDArray[np.uint64]) -> tuple[NDArray[np.int64], int]:
    """Map equal rows of a (n, k) array to the same id in 0 .. n_distinct-1."""
    if rows.shape[0] == 0:
        return np.zeros(0, np.int64), 0
    rows = np.ascontiguousarray(rows)
    void = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    uniq, inverse = np.unique(void, return_inverse=True)
    return inverse.astype(np.int64).ravel(), int(uniq.shape[0])


def _pairs(
    src: NDArray[np.uint64], dst: NDArray[np.uint64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], int]:
    """Return (pair id, side, n_pairs) for directed (src, dst) endpoint rows of shape (n, k)."""
    n = src.shape[0]
    ends, _ = _dense_ids(np.concatenate([src, dst]))
    a, b = ends[:n], ends[n:]
    lo = np.minimum(a, b)
    hi = np.maximum(a, b)
    pair, num = _dense_ids(np.column_stack([lo, hi]).astype(np.uint64))
    side = np.where(a == b, SIDE_SELF, (a > b).astype(np.int64)).astype(np.int64)
    return pair, side, num
