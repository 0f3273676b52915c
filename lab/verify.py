"""Check that a lab capture holds only lab traffic (no packet to or from an address outside the lab).

Uses fediot's own capture reader (``fediot.features.pcap.read_pcap``), so a capture that passes here is
also one the dataset builder can read. The rules, all of which must hold for every packet:

- the capture decodes completely (no skipped record) and is Ethernet;
- it is IPv4 or ARP (the lab disables IPv6; any other frame is refused);
- source and destination IPv4 addresses (ARP: sender and target protocol addresses) lie in the lab range
  10.77.0.0/16;
- source MAC is one of the lab's interfaces; destination MAC is a lab interface or broadcast.

Run as a script: ``python lab/verify.py data/lab/*.pcap.gz`` (exit status 1 and one line per failing file).
"""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fediot.features.pcap import LINKTYPE_ETHERNET, PROTO_ARP, read_pcap

__all__ = ["LAB_MACS", "LAB_NET", "CaptureCheck", "check_capture"]

LAB_NET = ipaddress.IPv4Network("10.77.0.0/16")
"""Every address the lab assigns, and every spoofed source it draws, lies in this range."""
LAB_MACS = (0x02_77_00_00_00_02, 0x02_77_00_00_01_01)
"""The attacker's and the victim's interface MACs (set by lab/capture.py)."""
_BROADCAST = 0xFF_FF_FF_FF_FF_FF


@dataclass(frozen=True)
class CaptureCheck:
    """The result of :func:`check_capture`: packet counts and the reasons it failed (empty = passed)."""

    path: str
    packets: int
    ipv4: int
    arp: int
    first_time: float
    last_time: float
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Whether every packet is lab traffic."""
        return not self.problems


def _in_lab(words: np.ndarray) -> np.ndarray:
    low = int(LAB_NET.network_address)
    high = int(LAB_NET.broadcast_address)
    return (words[:, 0] == 0) & (words[:, 1] >= low) & (words[:, 1] <= high)


def check_capture(path: str | Path) -> CaptureCheck:
    """Read ``path`` with fediot's reader and check every packet against the lab's rules.

    Parameters
    ----------
    path : str or Path
        A pcap or pcapng file, gzipped or not.

    Returns
    -------
    CaptureCheck
        Counts, and one problem line per rule broken (with the number of packets breaking it).
    """
    table, summary = read_pcap(path)
    problems: list[str] = []
    if summary.linktype != LINKTYPE_ETHERNET:
        problems.append(f"link type {summary.linktype}, expected Ethernet (1)")
    if summary.skipped:
        problems.append(f"undecoded records {summary.skipped}")
    n = len(table)
    if n == 0:
        problems.append("no packets")
    not_v4 = table.ip_version != 4
    if not_v4.any():
        problems.append(f"{int(not_v4.sum())} packets that are neither IPv4 nor ARP")
    outside = ~(_in_lab(table.src_ip) & _in_lab(table.dst_ip))
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        src = ipaddress.IPv4Address(int(table.src_ip[first, 1]))
        dst = ipaddress.IPv4Address(int(table.dst_ip[first, 1]))
        problems.append(f"{int(outside.sum())} packets to or from outside {LAB_NET} (first: {src} -> {dst})")
    macs = np.array(LAB_MACS, dtype=np.uint64)
    bad_src = ~np.isin(table.src_mac, macs)
    bad_dst = ~(np.isin(table.dst_mac, macs) | (table.dst_mac == np.uint64(_BROADCAST)))
    if bad_src.any() or bad_dst.any():
        problems.append(f"{int((bad_src | bad_dst).sum())} packets with a MAC that is not a lab interface")
    return CaptureCheck(
        path=str(path),
        packets=n,
        ipv4=int(((table.ip_version == 4) & (table.protocol != PROTO_ARP)).sum()),
        arp=int((table.protocol == PROTO_ARP).sum()),
        first_time=float(table.timestamp.min()) if n else 0.0,
        last_time=float(table.timestamp.max()) if n else 0.0,
        problems=tuple(problems),
    )


def main(argv: list[str]) -> int:
    """Check each capture named in ``argv``; print one line each; return 1 if any failed."""
    failed = 0
    for name in argv:
        result = check_capture(name)
        status = "ok" if result.ok else "FAIL: " + "; ".join(result.problems)
        print(f"{name}: {result.packets} packets ({result.arp} ARP) {status}")
        failed += not result.ok
    return 1 if failed or not argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
