"""Packets -> N-BaIoT feature vectors: pcap reading and Kitsune's damped incremental statistics (AfterImage).

Pipeline: :func:`read_pcap` (pcap/pcapng, gzip, Ethernet; columnar :class:`PacketTable`) ->
:class:`StreamingExtractor` (numba; stream keys in incremental hash tables, state carried from one batch of
packets to the next, bounded memory) or :func:`compute_features_ref` (plain Python, the oracle; same
numbers). :func:`compute_features_fast` is the extractor fed once; :func:`extract_features` does it all for
files or a packet table; :func:`write_features` saves CSV/Parquet with the N-BaIoT header.

Semantics follow Kitsune-py's ``AfterImage.py``; the deliberate deviations (per-channel ``HH`` as in the
published N-BaIoT rows, typed keys, idle-stream purging) are listed in :mod:`fediot.features.afterimage_ref`.
"""

from fediot.features.afterimage_ref import compute_features_ref
from fediot.features.columns import NBAIOT_LAMBDAS, AfterImageConfig, feature_names
from fediot.features.extract import ExtractSummary, extract_features, read_packets, write_features
from fediot.features.pcap import PacketTable, ReadSummary, parse_capture, read_pcap
from fediot.features.stream import DEFAULT_MAX_STREAMS, StreamingExtractor, compute_features_fast

__all__ = [
    "DEFAULT_MAX_STREAMS",
    "NBAIOT_LAMBDAS",
    "AfterImageConfig",
    "ExtractSummary",
    "PacketTable",
    "ReadSummary",
    "StreamingExtractor",
    "compute_features_fast",
    "compute_features_ref",
    "extract_features",
    "feature_names",
    "parse_capture",
    "read_packets",
    "read_pcap",
    "write_features",
]
