"""Alerts as JSON lines and per-packet score tables: the output side of ``fediot detect``.

Alert schema (one JSON object per line, :data:`ALERT_SCHEMA_VERSION`), one alert per packet whose window
verdict is anomalous (and whose score is at least ``--min-score``):

======================  ==========================================================================
field                   meaning
======================  ==========================================================================
``event_type``          ``"alert"``
``schema``              schema version (:data:`ALERT_SCHEMA_VERSION`)
``time``                packet capture time, ISO 8601 UTC with microseconds
``timestamp``           the same, seconds since the epoch (float)
``packet``              0-based position of the packet in the input (all inputs as one stream)
``device``              ``{"mac", "ip"}`` of the source (the device the vote is about); ``ip`` null if none
``peer``                ``{"mac", "ip"}`` of the destination
``protocol``            ``tcp``, ``udp``, ``icmp``, ``arp`` or ``other``
``src_port, dst_port``  TCP/UDP ports, null for other protocols
``score``               reconstruction MSE of the packet's features (higher = more anomalous)
``threshold``           the device's threshold (calibrated, else global); the packet is anomalous above it
``votes``, ``window``   anomalous packets among the device's last ``window`` packets (more than half alert)
``top_features``        the 3 features with the largest reconstruction error: ``[{"name", "error"}]``
======================  ==========================================================================

:class:`LineWriter` writes atomically (a temporary file renamed on :meth:`~LineWriter.close`: offline
input) or appends line-buffered (live input: each alert is on disk when written). :class:`ScoreWriter`
writes every packet's time, source MAC and IP, score, threshold, instance and window verdict as CSV, or
Parquet when the name ends ``.parquet`` (``pip install 'fediot[parquet]'``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from fediot.detect.online import BatchVerdicts, OnlineDetector, format_mac
from fediot.errors import ConfigError
from fediot.features.pcap import PROTO_ARP, PROTO_ICMP, PROTO_TCP, PROTO_UDP

__all__ = [
    "ALERT_SCHEMA_VERSION",
    "SCORE_COLUMNS",
    "LineWriter",
    "ScoreWriter",
    "alert_records",
    "format_ip",
]

ALERT_SCHEMA_VERSION = 1
"""Version of the alert JSON schema (the module docstring's table)."""

SCORE_COLUMNS = ("time", "src_mac", "src_ip", "score", "threshold", "instance", "window")
"""Columns of the ``--scores`` table."""

_PROTOCOLS = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp", PROTO_ARP: "arp"}


def format_ip(version: int, hi: int, lo: int) -> str | None:
    """Return the address held in the ``(hi, lo)`` words as text, or None when ``version`` is 0.

    Examples
    --------
    >>> format_ip(4, 0, 0xC0A80001), format_ip(0, 0, 0)
    ('192.168.0.1', None)
    """
    if version == 4:
        return str(ipaddress.IPv4Address(int(lo) & 0xFFFFFFFF))
    if version == 6:
        return str(ipaddress.IPv6Address((int(hi) << 64) | int(lo)))
    return None


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def alert_records(
    batch: BatchVerdicts, online: OnlineDetector, *, min_score: float | None = None
) -> list[dict[str, Any]]:
    """Return the alert objects of a batch (the schema of the module docstring), in packet order.

    Parameters
    ----------
    batch : BatchVerdicts
        One :meth:`OnlineDetector.process` result.
    online : OnlineDetector
        The detector that produced it (names the top features).
    min_score : float, optional
        Only packets scoring at least this alert.
    """
    mask = batch.verdicts.copy()
    if min_score is not None:
        mask &= batch.scores >= min_score
    rows = np.flatnonzero(mask)
    if rows.size == 0:
        return []
    p = batch.packets
    tops = online.top_features(batch.features[rows])
    out = []
    for r, top in zip(rows.tolist(), tops, strict=True):
        version = int(p.ip_version[r])
        proto = int(p.protocol[r])
        ported = proto in (PROTO_TCP, PROTO_UDP)
        ts = float(p.timestamp[r])
        out.append(
            {
                "event_type": "alert",
                "schema": ALERT_SCHEMA_VERSION,
                "time": _iso(ts),
                "timestamp": ts,
                "packet": batch.first_index + r,
                "device": {
                    "mac": format_mac(int(p.src_mac[r])),
                    "ip": format_ip(version, int(p.src_ip[r, 0]), int(p.src_ip[r, 1])),
                },
                "peer": {
                    "mac": format_mac(int(p.dst_mac[r])),
                    "ip": format_ip(version, int(p.dst_ip[r, 0]), int(p.dst_ip[r, 1])),
                },
                "protocol": _PROTOCOLS.get(proto, "other"),
                "src_port": int(p.src_port[r]) if ported else None,
                "dst_port": int(p.dst_port[r]) if ported else None,
                "score": float(batch.scores[r]),
                "threshold": float(batch.thresholds[r]),
                "votes": int(batch.votes[r]),
                "window": int(batch.window_sizes[r]),
                "top_features": [{"name": name, "error": err} for name, err in top],
            }
        )
    return out


class LineWriter:
    """Write JSON lines to a file: atomically (published on :meth:`close`) or appended line by line.

    Parameters
    ----------
    path : str or Path
        Target file.
    atomic : bool
        True: write a temporary file beside ``path`` and rename it over ``path`` on :meth:`close` (a reader
        sees the old file or the complete new one); :meth:`discard` drops it. False: append, line-buffered.
    """

    def __init__(self, path: str | Path, *, atomic: bool) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ConfigError(f"{self.path}: is a folder (expected a file for the alerts)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.atomic = atomic
        self.num_lines = 0
        self._tmp: Path | None = None
        if atomic:
            fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            self._tmp = Path(name)
            self._file: IO[str] = os.fdopen(fd, "w", encoding="utf-8")
        else:
            self._file = self.path.open("a", encoding="utf-8", buffering=1)

    def write(self, records: list[dict[str, Any]]) -> None:
        """Write each record as one compact JSON line."""
        for record in records:
            self._file.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
        self.num_lines += len(records)

    def close(self) -> None:
        """Flush, fsync and (atomic mode) publish the file."""
        if self._file.closed:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        if self._tmp is not None:
            os.chmod(self._tmp, 0o644)
            os.replace(self._tmp, self.path)
            self._tmp = None

    def discard(self) -> None:
        """Close without publishing (atomic mode: the target keeps its old content)."""
        if not self._file.closed:
            self._file.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


class ScoreWriter:
    """Write every packet's score row (:data:`SCORE_COLUMNS`) as CSV, or Parquet for a ``.parquet`` name.

    The file is written to a temporary name and renamed on :meth:`close` when ``atomic``; else appended
    (CSV) batch by batch. Floats are written with their shortest round-trip representation.
    """

    def __init__(self, path: str | Path, *, atomic: bool) -> None:
        self.path = Path(path)
        self.parquet = self.path.suffix == ".parquet"
        self._macs: dict[int, str] = {}
        self._ips: dict[tuple[int, int, int], str] = {}
        self._writer: Any = None
        if self.parquet:
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise ConfigError(
                    f"--scores {self.path}: Parquet needs pyarrow; "
                    "install it with: pip install 'fediot[parquet]'"
                ) from None
        self._lines = LineWriter(self.path, atomic=atomic) if not self.parquet else None
        if self.parquet:
            fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            os.close(fd)
            self._tmp: Path | None = Path(name)
        else:
            self._tmp = None
            if self._lines is not None and (atomic or self.path.stat().st_size == 0):
                self._lines._file.write(",".join(SCORE_COLUMNS) + "\n")

    def _mac(self, value: int) -> str:
        text = self._macs.get(value)
        if text is None:
            text = self._macs[value] = format_mac(value)
        return text

    def _ip(self, key: tuple[int, int, int]) -> str:
        text = self._ips.get(key)
        if text is None:
            text = self._ips[key] = format_ip(*key) or ""
        return text

    def columns(self, batch: BatchVerdicts) -> dict[str, Any]:
        """Return the batch's score columns (:data:`SCORE_COLUMNS`)."""
        p = batch.packets
        macs = [self._mac(m) for m in p.src_mac.tolist()]
        lo = p.src_ip[:, 1]
        octets = np.stack([(lo >> np.uint64(s)) & np.uint64(0xFF) for s in (24, 16, 8, 0)], axis=1).tolist()
        ips = [
            f"{o[0]}.{o[1]}.{o[2]}.{o[3]}" if v == 4 else self._ip((v, hi, lw))
            for v, o, hi, lw in zip(
                p.ip_version.tolist(), octets, p.src_ip[:, 0].tolist(), lo.tolist(), strict=True
            )
        ]
        return {
            "time": p.timestamp,
            "src_mac": macs,
            "src_ip": ips,
            "score": batch.scores,
            "threshold": batch.thresholds,
            "instance": batch.flags.astype(np.int8),
            "window": batch.verdicts.astype(np.int8),
        }

    def write(self, batch: BatchVerdicts) -> None:
        """Append the rows of one batch."""
        if len(batch) == 0:
            return
        cols = self.columns(batch)
        if self.parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.table(cols)
            if self._writer is None:
                self._writer = pq.ParquetWriter(str(self._tmp), table.schema)
            self._writer.write_table(table)
            return
        assert self._lines is not None
        text = _csv_rows(cols)
        self._lines._file.write(text)
        self._lines.num_lines += len(batch)

    def close(self) -> None:
        """Finish and publish the file."""
        if self._lines is not None:
            self._lines.close()
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:
            empty = {c: pa.array([], type=t) for c, t in zip(SCORE_COLUMNS, _arrow_types(), strict=True)}
            self._writer = pq.ParquetWriter(str(self._tmp), pa.table(empty).schema)
        self._writer.close()
        assert self._tmp is not None
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, self.path)
        self._tmp = None

    def discard(self) -> None:
        """Drop the temporary file (atomic CSV or Parquet)."""
        if self._lines is not None:
            self._lines.discard()
            return
        if self._writer is not None:
            self._writer.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)


def _arrow_types() -> tuple[Any, ...]:
    import pyarrow as pa

    return (pa.float64(), pa.string(), pa.string(), pa.float64(), pa.float64(), pa.int8(), pa.int8())


def _csv_rows(cols: dict[str, Any]) -> str:
    def floats(a: NDArray[np.float64]) -> list[str]:
        return [repr(v) for v in a.tolist()]

    parts = zip(
        floats(cols["time"]), cols["src_mac"], cols["src_ip"], floats(cols["score"]),
        floats(cols["threshold"]), cols["instance"].tolist(), cols["window"].tolist(), strict=True,
    )  # fmt: skip
    return "".join(f"{t},{m},{i},{s},{h},{a},{w}\n" for t, m, i, s, h, a, w in parts)
