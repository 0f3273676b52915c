"""The detector artefact: no pickle, validated on save and load, tampering and truncation refused."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fediot.data.nbaiot import read_nbaiot_csv
from fediot.data.paths import shipped_file
from fediot.detect.artefact import load_artefact
from fediot.detect.detector import AnomalyDetector
from fediot.errors import DataError
from fediot.models.train import TrainConfig


@pytest.fixture(scope="module")
def detector() -> AnomalyDetector:
    x = read_nbaiot_csv(shipped_file("nbaiot/samples/benign_traffic.csv.gz"))
    det = AnomalyDetector(train_config=TrainConfig(epochs=2, batch_size=32, lr=1e-3, optimizer="adam"))
    det.fit(x[:200], x[200:])
    det.device_thresholds_ = {"aa:bb:cc:dd:ee:ff": det.threshold_ * 2}
    det.window_ = 10
    return det


def _rewrite(src: Path, dst: Path, change: dict[str, object]) -> None:
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: np.array(npz[k]) for k in npz.files}
    for key, value in change.items():
        arrays[key] = value  # type: ignore[assignment]
    np.savez(dst, **arrays)  # type: ignore[arg-type]


def test_round_trip_keeps_every_field(detector: AnomalyDetector, tmp_path: Path) -> None:
    path = detector.save(tmp_path / "det.npz")
    loaded = AnomalyDetector.load(path)
    assert loaded.device_thresholds_ == detector.device_thresholds_
    assert loaded.threshold_for("aa:bb:cc:dd:ee:ff") == detector.threshold_ * 2
    assert loaded.threshold_for("11:22:33:44:55:66") == detector.threshold_
    assert loaded.window_ == 10
    assert loaded.feature_set_ == "nbaiot"
    assert loaded.training_["epochs"] == 2
    rows = read_nbaiot_csv(shipped_file("nbaiot/samples/scan.csv.gz"))
    np.testing.assert_array_equal(loaded.anomaly_score(rows), detector.anomaly_score(rows))


def test_an_altered_weight_is_refused_as_tampered(detector: AnomalyDetector, tmp_path: Path) -> None:
    path = detector.save(tmp_path / "det.npz")
    with np.load(path, allow_pickle=False) as npz:
        name = next(k for k in npz.files if k.startswith("weights/"))
        altered = np.array(npz[name])
    altered.flat[0] += 1.0
    _rewrite(path, tmp_path / "bad.npz", {name: altered})
    with pytest.raises(DataError, match="sha256 mismatch"):
        AnomalyDetector.load(tmp_path / "bad.npz")


def test_a_truncated_file_is_refused(detector: AnomalyDetector, tmp_path: Path) -> None:
    data = detector.save(tmp_path / "det.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="not a readable detector artefact"):
        AnomalyDetector.load(tmp_path / "cut.npz")


def test_a_pickled_object_is_never_loaded(tmp_path: Path) -> None:
    # an .npz whose member is a pickled object array: np.load(allow_pickle=False) must refuse it
    path = tmp_path / "evil.npz"
    with zipfile.ZipFile(path, "w") as zf, zf.open("meta.npy", "w") as f:
        np.lib.format.write_array(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="not a readable detector artefact"):
        AnomalyDetector.load(path)
    (tmp_path / "raw.pkl").write_bytes(pickle.dumps({"format": "fediot-detector"}))
    with pytest.raises(DataError):
        AnomalyDetector.load(tmp_path / "raw.pkl")


def test_non_finite_detectors_can_be_neither_saved_nor_loaded(
    detector: AnomalyDetector, tmp_path: Path
) -> None:
    # Prepare: a copy with one NaN weight
    path = detector.save(tmp_path / "det.npz")
    broken = AnomalyDetector.load(path)
    with np.errstate(invalid="ignore"):
        next(iter(broken.module_.parameters())).data[0, 0] = float("nan")
    # Execute / Assert: refused on save, nothing written
    with pytest.raises(DataError, match="non-finite"):
        broken.save(tmp_path / "nan.npz")
    assert not (tmp_path / "nan.npz").exists()
    # and a file whose scaler was edited to NaN (checksums recomputed, as a careful forger would) is refused
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: np.array(npz[k]) for k in npz.files}
    meta = json.loads(bytes(arrays["meta"]).decode())
    key = next(k for k in arrays if k.startswith("scaler/"))
    arrays[key][0] = np.nan
    import hashlib

    meta["arrays"][key]["sha256"] = hashlib.sha256(arrays[key].tobytes()).hexdigest()
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "nan-scaler.npz", **arrays)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="non-finite"):
        load_artefact(tmp_path / "nan-scaler.npz")


def test_a_wrong_shaped_scaler_is_refused(detector: AnomalyDetector, tmp_path: Path) -> None:
    path = detector.save(tmp_path / "det.npz")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: np.array(npz[k]) for k in npz.files}
    meta = json.loads(bytes(arrays["meta"]).decode())
    meta["num_features"] = 114
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "shape.npz", **arrays)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="expected"):
        AnomalyDetector.load(tmp_path / "shape.npz")
