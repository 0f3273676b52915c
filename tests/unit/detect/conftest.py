"""Fixtures of the online-detection tests: a detector fitted on real benign captures, and unseen traffic."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import torch

from fediot.data.paths import shipped_file
from fediot.detect.detector import AnomalyDetector
from fediot.features import extract_features
from fediot.features.columns import feature_names
from fediot.models import TrainConfig

TRAIN_DEVICE = "HueBridge"
UNSEEN_DEVICE = "D-LinkSiren"
AMP_PCAP = shipped_file("ddos_pcaps/amp.UDP.bacnet.IOT.37810.pcap.gz")


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    """Score with one intra-op thread, as ``fediot detect`` does (bit-reproducible float32 sums)."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sentinel_captures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The IoT Sentinel captures of two devices, extracted once: ``<dir>/<Device>/*.pcap``."""
    target = tmp_path_factory.mktemp("sentinel_detect")
    with tarfile.open(shipped_file("iot_sentinel/captures_IoT-Sentinel.tar.gz"), "r:gz") as tar:
        members = [
            m for m in tar.getmembers() if f"/{TRAIN_DEVICE}/" in m.name or f"/{UNSEEN_DEVICE}/" in m.name
        ]
        tar.extractall(target, members=members, filter="data")
    return target / "captures_IoT-Sentinel"


@pytest.fixture(scope="session")
def benign_pcaps(sentinel_captures: Path) -> list[Path]:
    """The training device's benign captures."""
    return sorted((sentinel_captures / TRAIN_DEVICE).glob("*.pcap"))[:6]


@pytest.fixture(scope="session")
def unseen_pcap(sentinel_captures: Path) -> Path:
    """A capture of a device the detector never saw."""
    return sorted((sentinel_captures / UNSEEN_DEVICE).glob("*.pcap"))[0]


@pytest.fixture(scope="session")
def detector(benign_pcaps: list[Path]) -> AnomalyDetector:
    """A detector fitted (seed 0, 10 epochs) on the benign rows of one device; window 5."""
    rows, _ = extract_features(benign_pcaps, order="given")
    det = AnomalyDetector(train_config=TrainConfig(epochs=10, batch_size=64, lr=1e-3, optimizer="adam"))
    det.fit(rows, feature_names=feature_names())
    det.window_ = 5
    return det


@pytest.fixture(scope="session")
def model_file(detector: AnomalyDetector, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The detector saved as an artefact."""
    return detector.save(tmp_path_factory.mktemp("model") / "detector.npz")
