"""High-level extraction: captures (or a packet table) -> the N-BaIoT feature matrix; saving it."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from fediot.errors import ConfigError, DataError
from fediot.features.afterimage_ref import compute_features_ref
from fediot.features.columns import AfterImageConfig, feature_names
from fediot.features.pcap import PacketTable, ReadSummary, read_pcap
from fediot.features.stream import compute_features_fast

__all__ = ["ExtractSummary", "extract_features", "read_packets", "write_features"]

Order = Literal["time", "given"]
Implementation = Literal["fast", "reference"]


@dataclass(frozen=True, slots=True)
class ExtractSummary:
    """What an extraction read and produced.

    Parameters
    ----------
    files : tuple of ReadSummary
        One per capture read (empty when a packet table was given).
    num_packets : int
        Rows of the feature matrix.
    order : str
        ``"time"`` (all packets merged and stably sorted by timestamp) or ``"given"``.
    skipped : dict of str to int
        Skipped records of all files, by reason.
    """

    files: tuple[ReadSummary, ...]
    num_packets: int
    order: str
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def num_records(self) -> int:
        """Packet records found in all files (``num_packets`` plus the skipped ones)."""
        return sum(f.num_records for f in self.files) if self.files else self.num_packets


def read_packets(
    paths: Sequence[str | Path],
    *,
    order: Order = "time",
    on_file: Callable[[ReadSummary], None] | None = None,
) -> tuple[PacketTable, tuple[ReadSummary, ...]]:
    """Read several captures into one packet table.

    Parameters
    ----------
    paths : sequence of str or Path
        Capture files (pcap/pcapng, optionally gzipped).
    order : {"time", "given"}
        ``"time"``: merge all packets and sort them by timestamp (stable, so ties keep file order, then
        packet order). ``"given"``: concatenate the files in the given order, packets in file order.
    on_file : callable, optional
        Called with each file's summary after it is read (e.g. to advance a progress bar).

    Returns
    -------
    packets : PacketTable
        All decoded packets (n_packets rows).
    files : tuple of ReadSummary
        One summary per file, in the given order.
    """
    _check_order(order)
    tables = []
    summaries = []
    for path in paths:
        table, summary = read_pcap(path)
        tables.append(table)
        summaries.append(summary)
        if on_file is not None:
            on_file(summary)
    packets = PacketTable.concat(tables)
    if order == "time":
        packets = packets.take(packets.time_order())
    return packets, tuple(summaries)


def extract_features(
    source: Sequence[str | Path] | str | Path | PacketTable,
    *,
    config: AfterImageConfig | None = None,
    order: Order = "time",
    implementation: Implementation = "fast",
    on_file: Callable[[ReadSummary], None] | None = None,
) -> tuple[NDArray[np.float64], ExtractSummary]:
    """Compute the 115 N-BaIoT (Kitsune AfterImage) features of every packet, as one stream.

    Parameters
    ----------
    source : path, sequence of paths, or PacketTable
        Captures to read (see :func:`read_packets`), or packets already parsed (e.g. with rewritten
        addresses or timestamps); a table is processed in its row order unless ``order="time"``.
    config : AfterImageConfig, optional
        Lambdas and idle-stream purging (default: N-BaIoT's five lambdas, 115 columns).
    order : {"time", "given"}
        How packets of several files (or a table's rows) are ordered before extraction (see
        :func:`read_packets`).
    implementation : {"fast", "reference"}
        The numba kernel, or the plain-Python reference (about 30x slower; same results).
    on_file : callable, optional
        Called with each file's summary after it is read.

    Returns
    -------
    features : ndarray of shape (n_packets, 115), float64
        One row per packet, columns in ``feature_names()`` order (the N-BaIoT CSV header).
    summary : ExtractSummary
        Files read, packet count, skipped records by reason.

    Raises
    ------
    DataError
        If a capture is unreadable, or there is no packet at all.
    """
    config = config or AfterImageConfig()
    _check_order(order)
    if implementation not in ("fast", "reference"):
        raise ConfigError(f"implementation must be 'fast' or 'reference', got {implementation!r}")
    if isinstance(source, PacketTable):
        packets = source.take(source.time_order()) if order == "time" else source
        files: tuple[ReadSummary, ...] = ()
    else:
        paths = [source] if isinstance(source, str | Path) else list(source)
        if not paths:
            raise DataError("no capture files given")
        packets, files = read_packets(paths, order=order, on_file=on_file)
    skipped: dict[str, int] = {}
    for f in files:
        for reason, count in f.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + count
    if len(packets) == 0:
        where = ", ".join(f.path for f in files) or "the packet table"
        raise DataError(f"no decodable packets in {where} (skipped: {skipped or 'none'})")
    if implementation == "fast":
        features = compute_features_fast(packets, config)
    else:
        features = compute_features_ref(packets, config)
    return features, ExtractSummary(files=files, num_packets=len(packets), order=order, skipped=skipped)


def write_features(
    path: str | Path, features: NDArray[np.float64], *, lambdas: tuple[float, ...] | None = None
) -> Path:
    """Write a feature matrix with the N-BaIoT header to CSV, or Parquet when the suffix is ``.parquet``.

    The file is written to a temporary file in the same folder and then moved into place (atomic).

    Parameters
    ----------
    path : str or Path
        Output file; parent folders are created.
    features : ndarray of shape (n_packets, n_features), float64
        As returned by :func:`extract_features`.
    lambdas : tuple of float, optional
        The lambdas the features were computed with (default: N-BaIoT's), for the column names.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ConfigError
        If Parquet is asked for and pyarrow is not installed (the ``parquet`` extra).
    """
    from fediot.features.writer import write_csv, write_parquet

    path = Path(path)
    names = feature_names(lambdas) if lambdas is not None else feature_names()
    if features.ndim != 2 or features.shape[1] != len(names):
        raise DataError(f"features have shape {features.shape}, expected (n, {len(names)})")
    parquet = path.suffix.lower() == ".parquet"
    if parquet and importlib.util.find_spec("pyarrow") is None:
        raise ConfigError(
            f"writing {path.name} needs pyarrow: pip install 'fediot[parquet]' (or use a .csv file)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if parquet:
            write_parquet(tmp, features, names)
        else:
            write_csv(tmp, features, names)  # the bytes frame.to_csv(index=False) wrote
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _check_order(order: str) -> None:
    if order not in ("time", "given"):
        raise ConfigError(f"order must be 'time' or 'given', got {order!r}")
