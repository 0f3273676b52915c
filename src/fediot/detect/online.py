"""Online detection: packets in, per-packet scores, per-device window votes and alerts out.

:class:`OnlineDetector` joins a :class:`~fediot.features.stream.StreamingExtractor` (feature state carried
from batch to batch) and a fitted :class:`~fediot.detect.detector.AnomalyDetector`. Each batch of packets
is extracted, scored with ``detector.anomaly_score`` (higher = more anomalous), compared with the
threshold of its device (the source MAC: ``detector.threshold_for(mac)``, the global threshold for an
uncalibrated device), and voted per device: a packet's window verdict is anomalous when more than half of
that device's last ``window`` instance flags (this packet's included) are anomalous, exactly
:func:`~fediot.detect.window.window_vote` applied to each device's packet sequence. Batching never changes
a result: the votes of a device carry over from one batch to the next.

No I/O happens here; :mod:`fediot.detect.alerts` turns the verdicts into JSON lines and score tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from fediot.detect.detector import AnomalyDetector
from fediot.errors import DataError
from fediot.features.columns import feature_names
from fediot.features.pcap import PacketTable
from fediot.features.stream import DEFAULT_MAX_STREAMS, StreamingExtractor

__all__ = ["BatchVerdicts", "OnlineDetector", "check_feature_set", "format_mac", "parse_mac"]

TOP_FEATURES = 3
"""Features named in an alert: those with the largest reconstruction error."""

MIN_SCORE_ROWS = 8
"""Batches of fewer rows are scored padded to this many (copies of their last row), then cut back.

PyTorch's CPU matrix products take another kernel for a handful of rows (1-4 here), whose float32 sums
round differently (measured up to 1.3e-8 on the shipped captures); from 5 rows on, a row's score does not
depend on the batch it is in (with one intra-op thread). Padding keeps live scores, whose batches can hold
one packet, bit-identical to the offline ones."""


def format_mac(value: int) -> str:
    """Return the 48-bit MAC ``value`` as ``aa:bb:cc:dd:ee:ff``.

    Examples
    --------
    >>> format_mac(0x0A1B2C3D4E5F)
    '0a:1b:2c:3d:4e:5f'
    """
    raw = f"{int(value):012x}"
    return ":".join(raw[i : i + 2] for i in range(0, 12, 2))


def parse_mac(text: str) -> str:
    """Return ``text`` as a canonical lower-case MAC (``aa:bb:cc:dd:ee:ff``); ``-`` separators accepted.

    Raises
    ------
    DataError
        If ``text`` is not six hexadecimal byte pairs.

    Examples
    --------
    >>> parse_mac("0A-1B-2C-3D-4E-5F")
    '0a:1b:2c:3d:4e:5f'
    """
    parts = text.strip().lower().replace("-", ":").split(":")
    if len(parts) != 6 or any(len(p) != 2 or any(c not in "0123456789abcdef" for c in p) for p in parts):
        raise DataError(f"not a MAC address: {text!r} (expected six hex byte pairs, e.g. 0a:1b:2c:3d:4e:5f)")
    return ":".join(parts)


def check_feature_set(
    detector: AnomalyDetector, extractor: StreamingExtractor, *, what: str = "the model"
) -> None:
    """Raise :class:`DataError` unless ``detector`` scores the rows ``extractor`` produces.

    Checks the feature set name (``nbaiot``), the width and, when the detector recorded them, the column
    names in order (names the first difference).
    """
    feature_set = detector.feature_set_
    if feature_set != "nbaiot":
        raise DataError(
            f"{what} was trained on feature set {feature_set!r}; fediot detect computes 'nbaiot' features "
            "from packets"
        )
    width = detector.n_features_in_
    if width != extractor.num_features:
        raise DataError(
            f"{what} takes {width} features per row; the packet extractor produces {extractor.num_features}"
        )
    names = detector.feature_names_in_
    if names is not None:
        expected = feature_names(extractor.config.lambdas)
        for i, (got, want) in enumerate(zip(names, expected, strict=True)):
            if got != want:
                raise DataError(f"{what}: feature {i} is {got!r}; the packet extractor's is {want!r}")


@dataclass(frozen=True, slots=True)
class BatchVerdicts:
    """Per-packet results of one batch (row ``i`` belongs to ``packets`` row ``i``).

    Attributes
    ----------
    packets : PacketTable
        The batch's packets.
    features : ndarray of shape (n_packets, n_features), float64
        Their feature rows.
    scores : ndarray of shape (n_packets,), float64
        ``detector.anomaly_score(features)``: higher = more anomalous.
    thresholds : ndarray of shape (n_packets,), float64
        The threshold of each packet's device (source MAC).
    flags : ndarray of shape (n_packets,), bool
        Instance verdicts, ``scores > thresholds``.
    votes : ndarray of shape (n_packets,), int64
        Anomalous flags among the device's last ``window_sizes`` packets (this one included).
    window_sizes : ndarray of shape (n_packets,), int64
        Packets in that window (``min(window, packets of the device so far)``).
    verdicts : ndarray of shape (n_packets,), bool
        Window verdicts, ``2 * votes > window_sizes``.
    first_index : int
        Stream position of the batch's first packet (0 for the first packet ever fed).
    """

    packets: PacketTable
    features: NDArray[np.float64]
    scores: NDArray[np.float64]
    thresholds: NDArray[np.float64]
    flags: NDArray[np.bool_]
    votes: NDArray[np.int64]
    window_sizes: NDArray[np.int64]
    verdicts: NDArray[np.bool_]
    first_index: int

    def __len__(self) -> int:
        return len(self.packets)


@dataclass(slots=True)
class _Votes:
    """A device's last ``window - 1`` instance flags (oldest first) and its packet count."""

    recent: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    seen: int = 0


class OnlineDetector:
    """Score packets batch by batch with a fitted detector; vote per device; state carried across batches.

    Parameters
    ----------
    detector : AnomalyDetector
        A fitted detector trained on the ``nbaiot`` feature set (115 columns).
    window : int, optional
        Majority-vote window per device (default: the detector's ``window_``).
    max_streams : int or None
        Stream cap of the feature extractor (see :class:`~fediot.features.stream.StreamingExtractor`).

    Attributes
    ----------
    extractor : StreamingExtractor
    num_packets : int
        Packets processed so far.
    packets_by_device, alerts_by_device : dict of str to int
        Packets and anomalous window verdicts per source MAC.

    Raises
    ------
    DataError
        If the detector was trained on another feature set or width.
    """

    def __init__(
        self,
        detector: AnomalyDetector,
        *,
        window: int | None = None,
        max_streams: int | None = DEFAULT_MAX_STREAMS,
    ) -> None:
        self.detector = detector
        self.extractor = StreamingExtractor(max_streams=max_streams)
        check_feature_set(detector, self.extractor)
        ws = int(detector.window_) if window is None else int(window)
        if ws < 1:
            raise DataError(f"window must be >= 1, got {ws}")
        self.window = ws
        self._votes: dict[int, _Votes] = {}
        self._thresholds: dict[int, float] = {}
        self.num_packets = 0
        self.packets_by_device: dict[str, int] = {}
        self.alerts_by_device: dict[str, int] = {}

    def warm_up(self) -> None:
        """Compile the extractor's kernels and run the model once, on synthetic packets, keeping no state.

        Call it before live capture, so the first real packets do not wait for compilation.
        """
        n = MIN_SCORE_ROWS
        ips = np.zeros((n, 2), np.uint64)
        ips[:, 1] = 0x0A000001
        table = PacketTable(
            timestamp=np.arange(n, dtype=np.float64), length=np.full(n, 60, np.int64),
            src_mac=np.ones(n, np.uint64), dst_mac=np.full(n, 2, np.uint64), src_ip=ips, dst_ip=ips + 1,
            ip_version=np.full(n, 4, np.uint8), protocol=np.full(n, 2, np.uint8),
            src_port=np.full(n, 1000, np.int32), dst_port=np.full(n, 53, np.int32),
        )  # fmt: skip
        rows = StreamingExtractor(self.extractor.config, max_streams=None).feed(table)
        self._score(rows)
        self.top_features(rows[:1])

    def threshold_of(self, mac: int) -> float:
        """Return the threshold of the device with source MAC ``mac`` (its calibrated one, or the global)."""
        cached = self._thresholds.get(mac)
        if cached is None:
            cached = self.detector.threshold_for(format_mac(mac))
            self._thresholds[mac] = cached
        return cached

    def process(self, packets: PacketTable) -> BatchVerdicts:
        """Extract, score, threshold and vote the next packets (in their row order).

        Parameters
        ----------
        packets : PacketTable
            The next n_packets packets of the traffic.

        Returns
        -------
        BatchVerdicts
        """
        first = self.num_packets
        features = self.extractor.feed(packets)
        n = len(packets)
        if n == 0:
            empty_f = np.zeros(0, dtype=np.float64)
            empty_i = np.zeros(0, dtype=np.int64)
            empty_b = np.zeros(0, dtype=bool)
            return BatchVerdicts(
                packets, features, empty_f, empty_f, empty_b, empty_i, empty_i, empty_b, first
            )
        scores = self._score(features)
        macs, inverse = np.unique(packets.src_mac, return_inverse=True)
        inverse = inverse.reshape(-1)
        device_thr = np.array([self.threshold_of(int(m)) for m in macs], dtype=np.float64)
        thresholds = device_thr[inverse]
        flags = scores > thresholds
        votes = np.empty(n, dtype=np.int64)
        sizes = np.empty(n, dtype=np.int64)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(macs.shape[0] + 1))
        for d, mac in enumerate(macs.tolist()):
            rows = order[bounds[d] : bounds[d + 1]]
            v, s = self._vote(int(mac), flags[rows])
            votes[rows] = v
            sizes[rows] = s
        verdicts = 2 * votes > sizes
        for d, mac in enumerate(macs.tolist()):
            rows = order[bounds[d] : bounds[d + 1]]
            name = format_mac(int(mac))
            self.packets_by_device[name] = self.packets_by_device.get(name, 0) + int(rows.shape[0])
            alerts = int(np.count_nonzero(verdicts[rows]))
            if alerts:
                self.alerts_by_device[name] = self.alerts_by_device.get(name, 0) + alerts
        self.num_packets += n
        return BatchVerdicts(packets, features, scores, thresholds, flags, votes, sizes, verdicts, first)

    def _score(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        n = features.shape[0]
        if n >= MIN_SCORE_ROWS:
            return self.detector.anomaly_score(features)
        pad = np.repeat(features[-1:], MIN_SCORE_ROWS - n, axis=0)
        return self.detector.anomaly_score(np.vstack([features, pad]))[:n]

    def _vote(self, mac: int, flags: NDArray[np.bool_]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Votes and window sizes of one device's new flags, continuing its history."""
        state = self._votes.setdefault(mac, _Votes())
        ws = self.window
        seq = np.concatenate([state.recent, flags])
        h = state.recent.shape[0]
        csum = np.concatenate([[0], np.cumsum(seq, dtype=np.int64)])
        end = np.arange(h + 1, seq.shape[0] + 1)
        start = np.maximum(end - ws, 0)
        votes = csum[end] - csum[start]
        # the window also holds packets older than the kept history only when the device saw them
        sizes = np.minimum(state.seen + np.arange(1, flags.shape[0] + 1), ws).astype(np.int64)
        state.seen += int(flags.shape[0])
        state.recent = seq[-(ws - 1) :].copy() if ws > 1 else np.zeros(0, dtype=bool)
        return votes.astype(np.int64), sizes

    def top_features(
        self, features: NDArray[np.float64], k: int = TOP_FEATURES
    ) -> list[list[tuple[str, float]]]:
        """Return, per row, the ``k`` features with the largest squared reconstruction error (largest first).

        Parameters
        ----------
        features : ndarray of shape (n_rows, n_features), float64
            Raw feature rows (e.g. the alerting rows of a batch).

        Returns
        -------
        list of list of (str, float)
            Per row: ``(feature name, squared error of the scaled value)``.
        """
        import torch

        det = self.detector
        if features.shape[0] == 0:
            return []
        scaled = det.scaler_.transform(features)
        with torch.no_grad():
            t = torch.from_numpy(np.ascontiguousarray(scaled, dtype=np.float32))
            err = ((det.module_(t) - t) ** 2).double().numpy()
        names = det.feature_names_in_ or tuple(feature_names(self.extractor.config.lambdas))
        top = np.argsort(-err, axis=1, kind="stable")[:, :k]
        return [[(str(names[j]), float(err[i, j])) for j in row] for i, row in enumerate(top.tolist())]
