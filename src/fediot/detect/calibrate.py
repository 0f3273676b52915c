"""Per-device calibration: a device's own threshold from its benign traffic, by sufficient statistics.

:func:`calibrate_device` scores the packets of one device (source MAC) in benign captures and keeps only
the statistics the detector's threshold rule needs: count, sum and sum of squares of the scores for
``mean_std`` (merged batch by batch, Chan's update), or fixed-bin counts for ``quantile``. No feature row
or score is kept, so memory does not grow with the traffic.

:func:`calibrate_scores` is the same fit on scores the caller already has (e.g. a client's benign opt
rows scored by the detector). Both summarise with :func:`fediot.detect.threshold.error_summary` and
finalise with :func:`fediot.detect.threshold.threshold_from_summaries`: the functions a federation's
clients and server use, so an experiment's per-client local threshold (``detect.local_thresholds``: the
rule on that client's own opt-row summary) is this calibration on the client's opt rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fediot.data.scaling import SufficientStats
from fediot.detect.detector import AnomalyDetector
from fediot.detect.online import OnlineDetector, parse_mac
from fediot.detect.threshold import ErrorSummary, error_summary, threshold_from_summaries
from fediot.errors import DataError
from fediot.features.pcap import PacketTable

__all__ = ["Calibration", "calibrate_device", "calibrate_scores"]


@dataclass(frozen=True, slots=True)
class Calibration:
    """The outcome of :func:`calibrate_device`.

    Attributes
    ----------
    device : str
        Canonical MAC.
    threshold : float
        The device's new threshold.
    previous : float
        Its threshold before (calibrated or global).
    global_threshold : float
    packets : int
        The device's packets scored (others in the captures feed the features only).
    mean, std : float
        Mean and sample std of its scores.
    fpr_global, fpr_calibrated : float
        Share of its (benign) packets above the global and the new threshold (in-sample: the same
        traffic the threshold was fitted on).
    """

    device: str
    threshold: float
    previous: float
    global_threshold: float
    packets: int
    mean: float
    std: float
    fpr_global: float
    fpr_calibrated: float


def calibrate_device(
    detector: AnomalyDetector,
    device: str,
    traffic: Callable[[], Iterable[PacketTable]],
    *,
    evaluate: bool = True,
) -> Calibration:
    """Fit ``device``'s threshold with the detector's rule on its benign packets; store it in the detector.

    Parameters
    ----------
    detector : AnomalyDetector
        Updated in place: ``device_thresholds_[device]`` is set.
    device : str
        The device's MAC (any case, ``:`` or ``-``).
    traffic : callable returning an iterable of PacketTable
        Benign traffic as one stream (all packets feed the feature state; the device's are scored); called
        once to fit, and once more to count the new threshold's FPR when ``evaluate``.
    evaluate : bool
        Replay the traffic to report ``fpr_calibrated`` exactly (NaN otherwise).

    Raises
    ------
    DataError
        If the MAC is malformed or the device sent fewer than 2 packets.
    """
    mac = parse_mac(device)
    mac_value = np.uint64(int(mac.replace(":", ""), 16))

    def device_scores() -> Iterator[NDArray[np.float64]]:
        online = OnlineDetector(detector, window=1)  # scores only: no threshold or vote is involved
        for batch in traffic():
            yield online.process(batch).scores[batch.src_mac == mac_value]

    return _calibrate(detector, mac, device_scores, evaluate=evaluate, unit="packet(s) in the captures")


def calibrate_scores(
    detector: AnomalyDetector,
    device: str,
    scores: Callable[[], Iterable[ArrayLike]],
    *,
    evaluate: bool = True,
) -> Calibration:
    """Fit ``device``'s threshold with the detector's rule on its benign ``scores``; store it.

    As :func:`calibrate_device`, on anomaly scores the caller computed (``detector.anomaly_score`` of
    the device's benign rows), given as batches of shape (n,); ``scores`` is called once to fit and once
    more when ``evaluate``. ``device`` is a MAC address, or any other key (e.g. a client id) used as is.

    Raises
    ------
    DataError
        If there are fewer than 2 scores, or a score is NaN or infinite (or negative, for ``quantile``).
    """
    try:
        key = parse_mac(device)
    except DataError:
        key = device
    return _calibrate(detector, key, scores, evaluate=evaluate, unit="benign score(s)")


def _calibrate(
    detector: AnomalyDetector,
    key: str,
    scores: Callable[[], Iterable[ArrayLike]],
    *,
    evaluate: bool,
    unit: str,
) -> Calibration:
    rule = detector.threshold_rule_
    global_thr = detector.threshold_
    stats = SufficientStats.empty(1)  # for the reported mean and std (== the summary for mean_std)
    summary: ErrorSummary | None = None
    above_global = 0
    for batch in scores():
        s = np.asarray(batch, dtype=np.float64).reshape(-1)
        if s.size == 0:
            continue
        part = error_summary(s, rule)
        summary = part if summary is None else summary.merge(part)  # type: ignore[arg-type]
        stats = stats + SufficientStats.from_array(s[:, None])
        above_global += int(np.count_nonzero(s > global_thr))
    if summary is None or stats.count < 2:
        raise DataError(f"device {key} sent {stats.count} {unit}; need >= 2 to calibrate")
    threshold = threshold_from_summaries([summary], rule)
    previous = detector.threshold_for(key)
    detector.device_thresholds_[key] = float(threshold)
    count = int(stats.count)
    above_new = 0
    if evaluate:
        for batch in scores():
            s = np.asarray(batch, dtype=np.float64).reshape(-1)
            above_new += int(np.count_nonzero(s > threshold))
    fpr_cal = above_new / count if evaluate else float("nan")
    return Calibration(
        device=key, threshold=float(threshold), previous=float(previous), global_threshold=float(global_thr),
        packets=count, mean=float(stats.mean[0]), std=float(np.sqrt(stats.var(ddof=1)[0])),
        fpr_global=above_global / count, fpr_calibrated=fpr_cal,
    )  # fmt: skip
