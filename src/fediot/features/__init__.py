"""Packets -> N-BaIoT feature vectors: pcap reading and Kitsune's damped incremental statistics (AfterImage).

Pipeline: :func:`read_pcap` (pcap/pcapng, gzip, Ethernet; columnar :class:`PacketTable`) ->
:func:`encode_streams` (Kitsune's stream keys as integer ids) -> :func:`compute_features_fast` (numba) or
:func:`compute_features_ref` (plain Python, the oracle; same numbers). :func:`extract_features` does it all
for files or a packet table; :func:`write_features` saves CSV/Parquet with the N-BaIoT header.

Semantics follow Kitsune-py's ``AfterImage.py``; the deliberate deviations (per-channel ``HH`` as in the
published N-BaIoT rows, typed keys, idle-stream purging) are listed in :mod:`fediot.features.afterimage_ref`.
"""

from fediot.features.afterimage_fast import compute_features_fast
from fediot.features.afterimage_ref import compute_features_ref
from fediot.features.columns import NBAIOT_LAMBDAS, AfterImageConfig, feature_names
from fediot.features.extract import ExtractSummary, extract_features, read_packets, write_features
from fediot.features.keys import StreamKeys, encode_streams
from fediot.features.pcap import PacketTable, ReadSummary, parse_capture, read_pcap

__all__ = [
    "NBAIOT_LAMBDAS",
    "AfterImageConfig",
    "ExtractSummary",
    "PacketTable",
    "ReadSummary",
    "StreamKeys",
    "compute_features_fast",
    "compute_features_ref",
    "encode_streams",
    "extract_features",
    "feature_names",
    "parse_capture",
    "read_packets",
    "read_pcap",
    "write_features",
]
