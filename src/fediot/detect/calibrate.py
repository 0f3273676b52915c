"""Per-device calibration: a device's own threshold from its benign traffic, by sufficient statistics.

:func:`calibrate_device` scores the packets of one device (source MAC) in benign captures and keeps only
the statistics the detector's threshold rule needs: count, sum and sum of squares of the scores for
``mean_std`` (merged batch by batch, Chan's update), or fixed-bin counts for ``quantile``. No feature row
or score is kept, so memory does not grow with the traffic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from fediot.data.scaling import SufficientStats
from fediot.detect.detector import AnomalyDetector
from fediot.detect.online import OnlineDetector, parse_mac
from fediot.detect.threshold import ErrorHistogram, threshold_from_stats
from fediot.errors import DataError
from fediot.features.pcap import PacketTable

__all__ = ["Calibration", "calibrate_device"]


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
    mac_value = int(mac.replace(":", ""), 16)
    online = OnlineDetector(detector, window=1)
    rule = detector.threshold_rule_
    stats = SufficientStats.empty(1)
    hist: ErrorHistogram | None = None
    above_global = 0
    global_thr = detector.threshold_
    for batch in traffic():
        verdicts = online.process(batch)
        own = batch.src_mac == np.uint64(mac_value)
        scores = verdicts.scores[own]
        if scores.size == 0:
            continue
        stats = stats + SufficientStats.from_array(scores[:, None])
        above_global += int(np.count_nonzero(scores > global_thr))
        if rule.kind == "quantile":
            h = ErrorHistogram.from_errors(
                scores, bins_per_decade=rule.bins_per_decade, lo_exp=rule.lo_exp, hi_exp=rule.hi_exp
            )
            hist = h if hist is None else hist + h
    if stats.count < 2:
        raise DataError(f"device {mac} sent {stats.count} packet(s) in the captures; need >= 2 to calibrate")
    if rule.kind == "quantile":
        assert hist is not None
        threshold = hist.quantile(rule.q)
    else:
        threshold = threshold_from_stats(stats, k=rule.k)
    previous = detector.threshold_for(mac)
    detector.device_thresholds_[mac] = float(threshold)
    count = int(stats.count)
    above_new = 0
    if evaluate:
        replay = OnlineDetector(detector, window=1)
        for batch in traffic():
            verdicts = replay.process(batch)
            own = batch.src_mac == np.uint64(mac_value)
            above_new += int(np.count_nonzero(verdicts.scores[own] > threshold))
    fpr_cal = above_new / count if evaluate else float("nan")
    return Calibration(
        device=mac, threshold=float(threshold), previous=float(previous), global_threshold=float(global_thr),
        packets=count, mean=float(stats.mean[0]), std=float(np.sqrt(stats.var(ddof=1)[0])),
        fpr_global=above_global / count, fpr_calibrated=fpr_cal,
    )  # fmt: skip
