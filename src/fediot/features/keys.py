"""Kitsune's stream keys (MAC-IP, host, IP channel, socket) as fixed-width uint64 words.

Every packet has one key per stream group, built by the compiled kernel
(:func:`fediot.features.afterimage_fast.process_packets`) from the packet's columns and looked up in that
group's incremental hash table, so stream identity needs no pass over the whole capture.

Conventions (Kitsune's ``FeatureExtractor``): the network endpoint is the IP address (ARP: the
sender/target protocol address), written ``(kind, ip_high, ip_low)``; packets with neither IP nor ARP use
``(KIND_MAC, 0, mac)`` instead. The socket endpoint (``HpHp``) adds a port code to the network endpoint:
``port + PORT_CODE_OFFSET`` for TCP and UDP (which share keys, as in Kitsune's strings), ``PORT_CODE_ICMP``
for IPv4 ICMP, ``PORT_CODE_NONE`` for other IP protocols; ARP and non-IP packets use ``(KIND_MAC, 0, mac,
PORT_CODE_NONE)``. Kinds keep MACs, IPv4 and IPv6 apart, so Kitsune's string collisions cannot happen.

Keys, in words (``KEY_WORDS``):

* ``MI_dir``: ``(src_mac, *src_endpoint)``, 4 words; ``H``: ``src_endpoint``, 3 words.
* ``HH``: both network endpoints, smaller first (word-wise), 6 words; the packet's direction is its
  *side*: 0 from the smaller endpoint, ``SIDE_REVERSE`` from the larger, ``SIDE_SELF`` when they are equal.
* ``HH_jit``: the ``HH`` key plus one word, 1 for ``SIDE_REVERSE`` and 0 otherwise (a directed channel).
* ``HpHp``: both socket endpoints, smaller first, 8 words, with a side as for ``HH``.
"""

from __future__ import annotations

__all__ = [
    "KEY_WORDS",
    "KIND_IPV4",
    "KIND_IPV6",
    "KIND_MAC",
    "PORT_CODE_ICMP",
    "PORT_CODE_NONE",
    "PORT_CODE_OFFSET",
    "SIDE_REVERSE",
    "SIDE_SELF",
]

KIND_MAC = 1
KIND_IPV4 = 2
KIND_IPV6 = 3
PORT_CODE_ICMP = 0
"""Port code of IPv4 ICMP packets (Kitsune's ``'icmp'``)."""
PORT_CODE_NONE = 1
"""Port code of packets without TCP/UDP ports (Kitsune's empty protocol string)."""
PORT_CODE_OFFSET = 2
"""TCP/UDP port ``p`` has port code ``p + PORT_CODE_OFFSET``."""
SIDE_REVERSE = 1
"""Side of a packet going from the pair's larger endpoint to the smaller (0: the other way)."""
SIDE_SELF = 2
"""Side of a packet whose source and destination endpoints are the same (e.g. a gratuitous ARP)."""

KEY_WORDS: dict[str, int] = {"MI_dir": 4, "H": 3, "HH": 6, "HH_jit": 7, "HpHp": 8, "HH_jit_gaps": 7}
"""Key width (uint64 words) of each stream table."""
