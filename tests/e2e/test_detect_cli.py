"""`fediot train` then `fediot detect` as a user runs them (subprocesses), on the shipped captures."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fediot.data.paths import shipped_file
from fediot.detect.detector import AnomalyDetector
from fediot.features import extract_features

pytestmark = pytest.mark.slow

FEDIOT = str(Path(sys.executable).parent / "fediot")
AMP = shipped_file("ddos_pcaps/amp.UDP.bacnet.IOT.37810.pcap.gz")
SYN = shipped_file("ddos_pcaps/pkt.TCP.synflood.spoofed.pcap.gz")


def _fediot(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FEDIOT, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`fediot train --out model` on the default experiment, shortened to 1 round of 1 local epoch."""
    cwd = tmp_path_factory.mktemp("train")
    done = _fediot(
        "train", "--out", "model", "--set", "federated.rounds=1", "--set", "federated.local_epochs=1", cwd=cwd
    )
    assert done.returncode == 0, done.stderr
    assert "FL: threshold" in done.stdout
    assert "macro TPR" in done.stdout
    return cwd / "model"


def test_train_then_detect_scores_every_packet_exactly_as_the_batch_detector(
    trained: Path, tmp_path: Path
) -> None:
    # Execute: the README's commands
    done = _fediot("detect", str(trained), str(AMP), "--out", "alerts.jsonl", "--scores", "scores.csv",
                   "--stats", "stats.json", cwd=tmp_path)  # fmt: skip
    # Assert: summary, and per packet the training-side detector's scores on batch-extracted features
    assert done.returncode == 0, done.stderr
    assert "9,617 packets from 1 devices" in done.stdout
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["packets"] == 9617
    assert stats["stopped_by"] == "end of input"
    with (tmp_path / "scores.csv").open() as f:
        rows = list(csv.DictReader(f))
    got = np.array([float(r["score"]) for r in rows])
    det = AnomalyDetector.load(trained)
    torch.set_num_threads(1)
    features, _ = extract_features([AMP], order="given")
    np.testing.assert_array_equal(got, det.anomaly_score(features))
    thresholds = {float(r["threshold"]) for r in rows}
    assert thresholds == {det.threshold_for(rows[0]["src_mac"])}
    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert len(lines) == sum(int(r["window"]) for r in rows) == stats["alerts"]
    for line in lines[:50]:
        alert = json.loads(line)
        assert alert["score"] == got[alert["packet"]]
        assert len(alert["top_features"]) == 3


def test_calibrate_export_and_refusals(trained: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.write_bytes(trained.read_bytes())
    # calibrate the SYN capture's main sender
    det = AnomalyDetector.load(trained)
    from fediot.features import read_pcap

    packets, _ = read_pcap(SYN)
    macs, counts = np.unique(packets.src_mac, return_counts=True)
    mac = int(macs[np.argmax(counts)])
    text = ":".join(f"{mac:012x}"[i : i + 2] for i in range(0, 12, 2))
    done = _fediot("calibrate", str(model), str(SYN), "--device", text, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    calibrated = AnomalyDetector.load(model)
    assert set(calibrated.device_thresholds_) >= {text}
    assert calibrated.threshold_for(text) != det.threshold_
    onnx = _fediot("export", str(model), "--onnx", "m.onnx", cwd=tmp_path)
    assert onnx.returncode == 0, onnx.stderr
    assert (tmp_path / "m.onnx").stat().st_size > 10_000
    # refusals: no input, two inputs, not a detector
    none = _fediot("detect", str(model), cwd=tmp_path)
    assert none.returncode == 2
    assert "exactly one input" in none.stderr
    (tmp_path / "bad.npz").write_bytes(b"not a model")
    bad = _fediot("detect", str(tmp_path / "bad.npz"), str(AMP), cwd=tmp_path)
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr
    assert "bad.npz" in bad.stderr


def test_follow_a_growing_capture_and_stop_on_sigterm(trained: Path, tmp_path: Path) -> None:
    # Prepare: a plain pcap written in pieces while detect follows it
    import gzip

    data = gzip.decompress(AMP.read_bytes())
    growing = tmp_path / "growing.pcap"
    growing.write_bytes(data[:24])

    def write() -> None:
        for i in range(24, len(data), 50_000):
            with growing.open("ab") as f:
                f.write(data[i : i + 50_000])
            time.sleep(0.05)

    proc = subprocess.Popen(
        [FEDIOT, "detect", str(trained), "--follow", str(growing), "--out", "live.jsonl", "--stats", "s.json",
         "--scores", "scores.csv"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        writer = threading.Thread(target=write)
        writer.start()
        writer.join()
        deadline = time.monotonic() + 180
        while _scored(tmp_path / "scores.csv") < 9617:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM" in out
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["packets"] == 9617
    offline = _fediot("detect", str(trained), str(AMP), "--out", "offline.jsonl", cwd=tmp_path)
    assert offline.returncode == 0
    assert (tmp_path / "live.jsonl").read_text() == (tmp_path / "offline.jsonl").read_text()


def _scored(scores: Path) -> int:
    """Packets scored so far: rows of the line-buffered live --scores file."""
    return max(0, len(scores.read_text().splitlines()) - 1) if scores.exists() else 0
