"""End to end: the default main job (``fediot run`` = fl-vs-centralized on the gateway dataset).

The gateway dataset is built from the shipped captures into an isolated cache (``$FEDIOT_CACHE_DIR`` in
``tmp_path``), so the test also covers the first-use build; the federated budget is reduced to 4 rounds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fediot.cli import DEFAULT_EXPERIMENT
from fediot.detect.detector import AnomalyDetector
from fediot.experiments.runner import run_experiment

VARIANTS = ("FL", "centralized", "local", "local-cross")

pytestmark = pytest.mark.slow


def test_default_job_on_the_gateway_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    monkeypatch.setenv("FEDIOT_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    # Execute
    run_experiment(DEFAULT_EXPERIMENT, out=out, seed=0, overrides=["federated.rounds=4"])
    # Assert
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    runs = results["runs"]
    assert DEFAULT_EXPERIMENT == "fl-vs-centralized"
    assert results["dataset"] == "gateway"
    assert (tmp_path / "cache" / "gateway-v1-f2-seed0" / "manifest.json").is_file()
    assert tuple(runs) == VARIANTS
    num_clients = len(results["clients"])
    assert num_clients == 26  # IoT Sentinel devices with >= 500 packets
    for variant in VARIANTS:
        run = runs[variant]
        assert run["window_applied"] is True
        for scope in ("macro", "pooled"):
            assert 0.0 <= run["window"][scope]["balanced_accuracy"] <= 1.0
        assert {"benign", "ddos.syn_flood", "ddos.udp_flood"} <= set(run["by_attack"])
        assert {"benign", "ddos.syn_flood", "ddos.udp_flood"} <= set(run["window"]["by_attack"])
    fl = runs["FL"]
    assert len(fl["round_train_loss"]) == 4
    assert all(len(c) == num_clients // 2 for c in fl["round_clients"])  # fraction_fit = 0.5
    # Measured seed 0 (4 rounds): FL UDP-flood TPR 0.968 (window level 0.965), benign FPR 0.153 (window
    # level 0.120); the spoofed SYN flood is not detected (TPR 0.0: its packets do not carry the device's
    # address, so they do not touch the device's damped statistics).
    assert fl["by_attack"]["ddos.udp_flood"]["tpr"] >= 0.90
    assert fl["window"]["by_attack"]["ddos.udp_flood"]["tpr"] >= 0.90
    assert fl["pooled"]["fpr"] <= 0.30
    assert fl["window"]["pooled"]["fpr"] <= 0.25
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Window level" in report
    assert "ddos.udp_flood" in report
    for png in ("loss.png", "clients.png", "scores.png"):
        assert f"]({png})" in report
        assert (out / png).is_file()
    # the FL detector is saved beside the results: what `fediot detect` takes
    detector = AnomalyDetector.load(out / "detector.npz")
    assert detector.threshold_ == fl["threshold"]
    assert detector.training_["variant"] == "FL"
    assert detector.training_["federated"]["rounds"] == 4
    assert detector.window_ == 10
    assert detector.dataset_["clients"] == num_clients
    assert not list(out.glob(".staging-*"))
