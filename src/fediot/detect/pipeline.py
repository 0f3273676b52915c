"""``fediot detect``'s loop: packet batches from captures or an interface -> online detector -> alerts.

:func:`detect_stream` drives an :class:`~fediot.detect.online.OnlineDetector` over any iterator of
:class:`~fediot.features.pcap.PacketTable` batches, writes alerts and scores, stops between batches when
``stop()`` becomes true (a signal handler's flag), and returns a :class:`DetectSummary`.
:func:`capture_batches` reads pcap files in the given order as one stream of batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fediot.detect.alerts import LineWriter, ScoreWriter, alert_records
from fediot.detect.online import OnlineDetector
from fediot.features.pcap import CaptureReader, PacketTable, ReadSummary

__all__ = ["CaptureFiles", "DetectSummary", "detect_stream"]

_MAX_LATENCY_SAMPLES = 2_000_000


@dataclass(slots=True)
class DetectSummary:
    """What one ``fediot detect`` run saw (printed on exit; ``--stats`` writes it as JSON).

    Attributes
    ----------
    packets : int
        Packets scored.
    devices : int
        Distinct source MACs.
    alerts_by_device : dict of str to int
        Anomalous window verdicts per source MAC (``--min-score`` does not filter these).
    alerts_written : int
        Alert lines written (after ``--min-score``).
    records : int
        Capture records read (scored packets plus skipped ones).
    skipped : dict of str to int
        Records not scored, by reason (malformed headers, truncation).
    non_ip : int
        Scored packets without an IPv4/IPv6/ARP address (keyed by MAC, as in Kitsune).
    evictions : dict of str to int
        Streams evicted at the extractor's cap, per table.
    kernel_drops : int
        Frames the kernel dropped before capture (live input).
    seconds : float
        Wall time from start to end.
    stopped_by : str
        ``"end of input"``, ``"idle timeout"`` or the signal's name.
    latency : dict of str to float
        Live input: packet capture time to verdict written, p50/p99/max in seconds.
    """

    packets: int = 0
    devices: int = 0
    alerts_by_device: dict[str, int] = field(default_factory=dict)
    alerts_written: int = 0
    records: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    non_ip: int = 0
    evictions: dict[str, int] = field(default_factory=dict)
    kernel_drops: int = 0
    seconds: float = 0.0
    stopped_by: str = "end of input"
    latency: dict[str, float] = field(default_factory=dict)

    @property
    def packets_per_second(self) -> float:
        """Packets scored per wall-clock second."""
        return self.packets / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return plain JSON-able values (``packets_per_second`` included)."""
        return {
            "packets": self.packets, "devices": self.devices, "alerts": sum(self.alerts_by_device.values()),
            "alerts_by_device": dict(self.alerts_by_device), "alerts_written": self.alerts_written,
            "records": self.records, "skipped": dict(self.skipped), "non_ip": self.non_ip,
            "evictions": dict(self.evictions), "kernel_drops": self.kernel_drops,
            "seconds": self.seconds, "packets_per_second": self.packets_per_second,
            "stopped_by": self.stopped_by, "latency": dict(self.latency),
        }  # fmt: skip


class CaptureFiles:
    """Batches of one or more pcap/pcapng files (gzip allowed), read in the given order as one stream.

    Attributes
    ----------
    summaries : list of ReadSummary
        One per file read to its end.
    """

    kernel_drops = 0

    def __init__(self, paths: Sequence[str | Path]) -> None:
        self.paths = [Path(p) for p in paths]
        self.summaries: list[ReadSummary] = []
        self._reader: CaptureReader | None = None

    def batches(self, stop: Callable[[], bool]) -> Iterator[PacketTable]:
        """Yield the files' batches in order; stop early when ``stop()``."""
        for path in self.paths:
            reader = CaptureReader(path)
            self._reader = reader
            for batch in reader:
                yield batch
                if stop():
                    break
            self.summaries.append(reader.summary)
            self._reader = None
            if stop():
                return

    @property
    def num_records(self) -> int:
        """Records read so far."""
        done = sum(int(s.num_records) for s in self.summaries)
        return done + (self._reader.summary.num_records if self._reader is not None else 0)

    @property
    def skipped(self) -> dict[str, int]:
        """Records not decoded, by reason."""
        out: dict[str, int] = {}
        summaries = list(self.summaries)
        if self._reader is not None:
            summaries.append(self._reader.summary)
        for s in summaries:
            for k, v in s.skipped.items():
                out[k] = out.get(k, 0) + v
        return out


def detect_stream(
    online: OnlineDetector,
    batches: Iterable[PacketTable],
    *,
    alerts: LineWriter | None = None,
    scores: ScoreWriter | None = None,
    min_score: float | None = None,
    on_alerts: Callable[[list[dict[str, Any]]], None] | None = None,
    measure_latency: bool = False,
) -> DetectSummary:
    """Score every batch, write its alerts and scores; return the summary (counters of ``online``).

    Parameters
    ----------
    online : OnlineDetector
    batches : iterable of PacketTable
        Stops when exhausted (the caller's iterator ends on a signal or timeout).
    alerts, scores : writers, optional
    min_score : float, optional
        Only packets scoring at least this produce alert lines.
    on_alerts : callable, optional
        Called with each batch's alert records (e.g. to print them).
    measure_latency : bool
        Record, per packet, wall time minus capture time once its alerts are written (live input).
    """
    t0 = time.perf_counter()
    summary = DetectSummary()
    latencies: list[NDArray[np.float64]] = []
    kept = 0
    for batch in batches:
        verdicts = online.process(batch)
        records = alert_records(verdicts, online, min_score=min_score)
        if alerts is not None and records:
            alerts.write(records)
        if scores is not None:
            scores.write(verdicts)
        if on_alerts is not None and records:
            on_alerts(records)
        summary.alerts_written += len(records)
        summary.non_ip += int(np.count_nonzero(batch.ip_version == 0))
        if measure_latency and len(batch) and kept < _MAX_LATENCY_SAMPLES:
            lat = time.time() - batch.timestamp
            latencies.append(lat)
            kept += lat.shape[0]
    summary.seconds = time.perf_counter() - t0
    summary.packets = online.num_packets
    summary.devices = len(online.packets_by_device)
    summary.alerts_by_device = dict(sorted(online.alerts_by_device.items()))
    summary.evictions = online.extractor.evictions
    if latencies:
        lat = np.concatenate(latencies)
        summary.latency = {
            "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)),
            "max": float(lat.max()),
            "samples": float(lat.shape[0]),
        }
    return summary
