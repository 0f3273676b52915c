from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from fediot.detect.alerts import ALERT_SCHEMA_VERSION, alert_records, format_ip
from fediot.detect.detector import AnomalyDetector
from fediot.detect.online import OnlineDetector, format_mac, parse_mac
from fediot.detect.window import window_vote
from fediot.errors import DataError
from fediot.features import extract_features, read_pcap

from .conftest import AMP_PCAP


def _chunks(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    cuts = np.sort(rng.choice(np.arange(1, n), size=min(40, n - 1), replace=False))
    edges = [0, *cuts.tolist(), n]
    return [np.arange(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


@pytest.mark.parametrize("path_kind", ["unseen", "amp"])
def test_chunked_scores_equal_batch_scores_bit_for_bit(
    detector: AnomalyDetector, unseen_pcap: Path, path_kind: str
) -> None:
    # Prepare: an unseen capture, batch-extracted features scored by the training-side detector
    path = unseen_pcap if path_kind == "unseen" else AMP_PCAP
    packets, _ = read_pcap(path)
    packets = packets.take(np.arange(min(len(packets), 4000)))
    rows, _ = extract_features(packets, order="given")
    expected = detector.anomaly_score(rows)
    online = OnlineDetector(detector)
    # Execute: feed it in random chunks (single-packet chunks included)
    parts = _chunks(len(packets), np.random.default_rng(7))
    results = [online.process(packets.take(idx)) for idx in parts]
    # Assert
    scores = np.concatenate([r.scores for r in results])
    np.testing.assert_array_equal(scores, expected)
    assert any(len(idx) < 5 for idx in parts)
    assert online.num_packets == len(packets)


def test_window_vote_per_device_equals_window_vote_on_each_device_sequence(
    detector: AnomalyDetector, unseen_pcap: Path
) -> None:
    # Prepare: a mix of two devices' traffic, and a threshold low enough that votes vary
    a, _ = read_pcap(unseen_pcap)
    b, _ = read_pcap(AMP_PCAP)
    packets = type(a).concat([a.take(np.arange(min(len(a), 1500))), b.take(np.arange(1500))])
    packets = packets.take(packets.time_order())
    det = copy.deepcopy(detector)
    rows, _ = extract_features(packets, order="given")
    scores = det.anomaly_score(rows)
    det.threshold_ = float(np.median(scores))
    mac_b = format_mac(int(b.src_mac[0]))
    det.device_thresholds_ = {mac_b: float(np.quantile(scores, 0.3))}
    online = OnlineDetector(det, window=7)
    # Execute
    results = [online.process(packets.take(idx)) for idx in _chunks(len(packets), np.random.default_rng(3))]
    # Assert: thresholds per device, instance flags, and the vote == window_vote over each device's packets
    thr = np.concatenate([r.thresholds for r in results])
    verdicts = np.concatenate([r.verdicts for r in results])
    flags = np.concatenate([r.flags for r in results])
    macs = packets.src_mac
    assert np.all(thr[macs == b.src_mac[0]] == det.device_thresholds_[mac_b])
    assert np.all(thr[macs != b.src_mac[0]] == det.threshold_)
    np.testing.assert_array_equal(flags, scores > thr)
    for mac in np.unique(macs):
        own = macs == mac
        np.testing.assert_array_equal(verdicts[own], window_vote(flags[own], 7))
    assert 0 < verdicts.sum() < verdicts.size
    assert sum(online.alerts_by_device.values()) == int(verdicts.sum())


def test_alert_records_follow_the_schema(detector: AnomalyDetector) -> None:
    # Prepare: every packet anomalous (threshold below every score)
    packets, _ = read_pcap(AMP_PCAP)
    packets = packets.take(np.arange(300))
    det = copy.deepcopy(detector)
    det.threshold_ = -1.0
    online = OnlineDetector(det, window=3)
    batch = online.process(packets)
    # Execute
    records = alert_records(batch, online)
    some = alert_records(batch, online, min_score=float(np.median(batch.scores)))
    # Assert
    assert len(records) == 300
    first = records[0]
    assert set(first) == {
        "event_type", "schema", "time", "timestamp", "packet", "device", "peer", "protocol", "src_port",
        "dst_port", "score", "threshold", "votes", "window", "top_features",
    }  # fmt: skip
    assert first["event_type"] == "alert"
    assert first["schema"] == ALERT_SCHEMA_VERSION
    assert first["device"]["mac"] == format_mac(int(packets.src_mac[0]))
    assert first["protocol"] == "udp"
    assert first["dst_port"] == int(packets.dst_port[0])
    assert first["time"].endswith("Z")
    assert first["votes"] == 1
    assert first["window"] == 1
    assert records[5]["window"] == 3
    assert records[5]["votes"] == 3
    tops = first["top_features"]
    assert len(tops) == 3
    assert tops[0]["error"] >= tops[1]["error"] >= tops[2]["error"]
    assert all(r["score"] >= float(np.median(batch.scores)) for r in some)
    assert 0 < len(some) < 300
    assert [r["packet"] for r in records] == list(range(300))


def test_top_features_are_the_largest_squared_errors(detector: AnomalyDetector) -> None:
    import torch

    packets, _ = read_pcap(AMP_PCAP)
    rows, _ = extract_features(packets.take(np.arange(50)), order="given")
    online = OnlineDetector(detector)
    tops = online.top_features(rows)
    x = torch.from_numpy(detector.scaler_.transform(rows))
    err = ((detector.module_(x) - x) ** 2).detach().double().numpy()
    for i, top in enumerate(tops):
        assert [name for name, _ in top] == [detector.feature_names_in_[j] for j in np.argsort(-err[i])[:3]]
    # the mean of all squared errors is the score
    np.testing.assert_allclose(err.mean(axis=1), detector.anomaly_score(rows), rtol=1e-6)


def test_model_of_another_feature_set_or_width_is_refused(detector: AnomalyDetector) -> None:
    other = copy.deepcopy(detector)
    other.feature_set_ = "kdd"
    with pytest.raises(DataError, match="feature set 'kdd'"):
        OnlineDetector(other)
    rng = np.random.default_rng(0)
    narrow = AnomalyDetector().fit(rng.normal(size=(50, 33)))
    with pytest.raises(DataError, match="takes 33 features per row; the packet extractor produces 115"):
        OnlineDetector(narrow)


def test_rows_scaled_before_the_detector_are_refused_not_all_flagged(
    detector: AnomalyDetector, unseen_pcap: Path
) -> None:
    # Prepare: raw rows of an unseen device, as `fediot extract` writes them, and the same rows already
    # passed through the detector's own scaler (the issue-#12 mistake: 100% alerts, no warning)
    rows, _ = extract_features([unseen_pcap])
    scaled = detector.scaler_.transform(rows)
    # Execute / Assert: raw rows score; scaled ones are refused with the column and what was expected
    assert np.isfinite(detector.anomaly_score(rows)).all()
    expected = r"looks already scaled: below 15 in every row, while every training row had >= 60"
    with pytest.raises(DataError, match=expected) as err:
        detector.anomaly_score(scaled)
    assert detector.feature_names_in_ is not None
    assert err.value.column in detector.feature_names_in_


def test_mac_and_ip_formatting() -> None:
    assert parse_mac("AA-BB-CC-00-11-22") == "aa:bb:cc:00:11:22"
    assert format_mac(int("aabbcc001122", 16)) == "aa:bb:cc:00:11:22"
    with pytest.raises(DataError, match="not a MAC address"):
        parse_mac("aa:bb:cc")
    assert format_ip(6, 0x20010DB8 << 32, 1) == "2001:db8::1"
