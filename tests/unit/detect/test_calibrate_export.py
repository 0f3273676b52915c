from __future__ import annotations

import copy
import csv
from pathlib import Path

import numpy as np
import pytest

from fediot.data.scaling import MinMaxScaler, SufficientStats, signed_log1p
from fediot.detect.alerts import LineWriter, ScoreWriter, format_ip
from fediot.detect.calibrate import calibrate_device
from fediot.detect.detector import AnomalyDetector
from fediot.detect.export import onnx_model
from fediot.detect.online import OnlineDetector, format_mac
from fediot.detect.pipeline import CaptureFiles
from fediot.detect.threshold import ThresholdRule, threshold_from_errors, threshold_quantile
from fediot.errors import DataError
from fediot.features import extract_features, read_pcap

from .conftest import AMP_PCAP


def test_calibration_equals_the_rule_on_the_device_scores(
    detector: AnomalyDetector, unseen_pcap: Path
) -> None:
    # Prepare: the reference is the rule applied to every score of the device's own packets
    packets, _ = read_pcap(unseen_pcap)
    rows, _ = extract_features([unseen_pcap], order="given")
    scores = detector.anomaly_score(rows)
    counts = np.unique(packets.src_mac, return_counts=True)
    mac = int(counts[0][np.argmax(counts[1])])
    own = scores[packets.src_mac == mac]
    det = copy.deepcopy(detector)
    # Execute
    result = calibrate_device(
        det, format_mac(mac).upper(), lambda: CaptureFiles([unseen_pcap]).batches(lambda: False)
    )
    # Assert
    expected = threshold_from_errors(own, k=1.0)
    assert result.threshold == pytest.approx(expected, rel=1e-12)
    assert det.device_thresholds_ == {format_mac(mac): result.threshold}
    assert result.packets == own.size
    assert result.fpr_global == pytest.approx(np.mean(own > detector.threshold_))
    assert result.fpr_calibrated == pytest.approx(np.mean(own > result.threshold))
    assert det.threshold_for(format_mac(mac)) == result.threshold
    # quantile rule: the federated histogram quantile, never below the exact one, within one bin
    det_q = copy.deepcopy(detector)
    det_q.threshold_rule_ = ThresholdRule(kind="quantile", q=0.95)
    res_q = calibrate_device(
        det_q, format_mac(mac), lambda: CaptureFiles([unseen_pcap]).batches(lambda: False)
    )
    exact = threshold_quantile(own, 0.95)
    assert exact <= res_q.threshold <= exact * 10 ** (1 / 100) + 1e-15


def test_calibration_needs_the_device_in_the_traffic(detector: AnomalyDetector) -> None:
    det = copy.deepcopy(detector)
    with pytest.raises(DataError, match="sent 0 packet"):
        calibrate_device(det, "02:00:00:00:00:99", lambda: CaptureFiles([AMP_PCAP]).batches(lambda: False))
    with pytest.raises(DataError, match="not a MAC address"):
        calibrate_device(det, "nope", lambda: iter(()))


def test_calibrated_threshold_survives_save_and_load(detector: AnomalyDetector, tmp_path: Path) -> None:
    det = copy.deepcopy(detector)
    det.device_thresholds_["aa:bb:cc:dd:ee:ff"] = 0.125
    loaded = AnomalyDetector.load(det.save(tmp_path / "m.npz"))
    assert loaded.threshold_for("aa:bb:cc:dd:ee:ff") == 0.125
    online = OnlineDetector(loaded)
    assert online.threshold_of(0xAABBCCDDEEFF) == 0.125
    assert online.threshold_of(1) == loaded.threshold_


def _log_detector(detector: AnomalyDetector, rows: np.ndarray) -> AnomalyDetector:
    stats = SufficientStats.from_array(signed_log1p(rows))
    scaler = MinMaxScaler.from_stats(stats, log=True)
    return AnomalyDetector.from_parts(
        detector.module_, scaler, 0.5, feature_names=detector.feature_names_in_, window=3
    )


@pytest.mark.parametrize("log", [False, True])
def test_onnx_scores_equal_pytorch_to_1e_5(detector: AnomalyDetector, unseen_pcap: Path, log: bool) -> None:
    import onnxruntime as ort

    # Prepare: real feature rows of an unseen capture and of a flood (far outside the training range)
    a, _ = extract_features([unseen_pcap], order="given")
    b, _ = extract_features([AMP_PCAP], order="given")
    rows = np.vstack([a, b[:3000]])
    det = _log_detector(detector, a) if log else detector
    # Execute
    model = onnx_model(det)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(["score"], {"features": rows})
    # Assert
    expected = det.anomaly_score(rows)
    assert got.dtype == np.float64
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert np.abs(got - expected).max() <= 1e-5
    meta = {p.key: p.value for p in model.metadata_props}
    assert float(meta["threshold"]) == det.threshold_
    assert any(n.op_type == "Log" for n in model.graph.node) == log


def test_line_writer_is_atomic_and_live_appends(tmp_path: Path) -> None:
    target = tmp_path / "alerts.jsonl"
    target.write_text("old\n")
    w = LineWriter(target, atomic=True)
    w.write([{"a": 1}])
    assert target.read_text() == "old\n"
    w.close()
    assert target.read_text() == '{"a":1}\n'
    w2 = LineWriter(target, atomic=True)
    w2.write([{"a": 2}])
    w2.discard()
    assert target.read_text() == '{"a":1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["alerts.jsonl"]
    live = LineWriter(target, atomic=False)
    live.write([{"b": 2}])
    assert target.read_text() == '{"a":1}\n{"b":2}\n'  # line-buffered: on disk before close
    live.close()


def test_score_writer_csv_round_trips_every_packet(detector: AnomalyDetector, tmp_path: Path) -> None:
    packets, _ = read_pcap(AMP_PCAP)
    online = OnlineDetector(detector)
    batches = [online.process(packets.take(np.arange(i, min(i + 700, 2000)))) for i in range(0, 2000, 700)]
    path = tmp_path / "scores.csv"
    w = ScoreWriter(path, atomic=True)
    for b in batches:
        w.write(b)
    w.close()
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2000
    scores = np.concatenate([b.scores for b in batches])
    np.testing.assert_array_equal(np.array([float(r["score"]) for r in rows]), scores)
    assert rows[0]["src_mac"] == format_mac(int(packets.src_mac[0]))
    assert [r["src_ip"] for r in rows[:50]] == [
        format_ip(int(v), int(hi), int(lo))
        for v, hi, lo in zip(
            packets.ip_version[:50], packets.src_ip[:50, 0], packets.src_ip[:50, 1], strict=True
        )
    ]
    assert {r["window"] for r in rows} <= {"0", "1"}
    np.testing.assert_array_equal(np.array([float(r["time"]) for r in rows]), packets.timestamp[:2000])


def test_score_writer_parquet_or_a_clear_error(detector: AnomalyDetector, tmp_path: Path) -> None:
    import importlib.util

    from fediot.errors import ConfigError

    packets, _ = read_pcap(AMP_PCAP)
    batch = OnlineDetector(detector).process(packets.take(np.arange(100)))
    path = tmp_path / "scores.parquet"
    if importlib.util.find_spec("pyarrow") is None:
        with pytest.raises(ConfigError, match=r"pip install 'fediot\[parquet\]'"):
            ScoreWriter(path, atomic=True)
        return
    import pyarrow.parquet as pq

    w = ScoreWriter(path, atomic=True)
    w.write(batch)
    w.close()
    table = pq.read_table(path)
    np.testing.assert_array_equal(table.column("score").to_numpy(), batch.scores)
