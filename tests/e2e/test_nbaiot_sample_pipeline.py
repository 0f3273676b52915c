"""End to end: the whole anomaly pipeline on an N-BaIoT folder built from the 4 real shipped sample files.

Layout (UCI, written to ``tmp_path``; every sample file has 299 data rows, split into disjoint halves so that
no row belongs to two devices)::

    DeviceA/benign_traffic.csv.gz          benign_traffic rows   0-148 (149 rows -> thirds 49/50/50)
    DeviceA/gafgyt_attacks/scan.csv.gz     scan rows             0-148
    DeviceA/gafgyt_attacks/udp.csv.gz      doorbell_udp rows     0-148
    DeviceA/mirai_attacks/udp.csv.gz       thermostat_udp rows   0-148
    DeviceB/...                            the same files, rows 149-298 (150 rows -> thirds 50/50/50)

So each device trains on ~50 benign rows, fits its threshold on the next ~50 and is tested on its last
~50 benign rows plus 447-450 attack rows of three types.
"""

from __future__ import annotations

import copy
import gzip
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fediot.data.paths import shipped_file
from fediot.detect.calibrate import calibrate_scores
from fediot.detect.detector import AnomalyDetector
from fediot.detect.evaluate import evaluate_scores, summarize_evaluations
from fediot.experiments.datasets import DataConfig, load_anomaly_dataset
from fediot.experiments.runner import run_experiment

ATTACKS = {
    "gafgyt_attacks/scan.csv.gz": "scan",
    "gafgyt_attacks/udp.csv.gz": "doorbell_udp",
    "mirai_attacks/udp.csv.gz": "thermostat_udp",
}
DEVICES = {"DeviceA": slice(0, 149), "DeviceB": slice(149, 299)}
VARIANTS = ("FL", "centralized", "local", "local-cross")
RATES = ("tpr", "fpr", "f1", "balanced_accuracy")


def _sample(name: str) -> tuple[str, list[str]]:
    with gzip.open(shipped_file(f"nbaiot/samples/{name}.csv.gz"), "rt", encoding="utf-8") as fh:
        header, *rows = fh.read().splitlines()
    return header, rows


def _write_gz(path: Path, header: str, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress("".join(f"{line}\n" for line in [header, *rows]).encode()))


def _build_uci_layout(root: Path) -> Path:
    files = {"benign_traffic.csv.gz": "benign_traffic", **ATTACKS}
    for rel, sample in files.items():
        header, rows = _sample(sample)
        assert len(rows) == 299
        for device, part in DEVICES.items():
            _write_gz(root / device / rel, header, rows[part])
    return root


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Run fl-vs-centralized once on the sample layout (shared by the tests of this module)."""
    base = tmp_path_factory.mktemp("nbaiot_e2e")
    source = _build_uci_layout(base / "nbaiot")
    out = base / "out"
    run_experiment(
        "fl-vs-centralized",
        out=out,
        seed=0,
        overrides=[
            f"data.source={str(source)!r}",
            "federated.rounds=5",
            "federated.fraction_fit=1.0",
        ],
    )
    return out, json.loads((out / "results.json").read_text(encoding="utf-8"))


def test_results_have_every_variant_with_macro_pooled_and_per_client_metrics(
    sample_run: tuple[Path, dict[str, Any]],
) -> None:
    # Prepare
    _, results = sample_run
    runs = results["runs"]
    # Assert
    assert results["experiment"] == "fl-vs-centralized"
    assert results["dataset"].startswith("nbaiot:")
    assert sorted(results["clients"]) == sorted(DEVICES)
    assert results["clients"]["DeviceA"]["train_rows"] == 49
    assert results["clients"]["DeviceB"]["test_rows"] == {"test": 50 + 3 * 150}
    assert results["clients"]["DeviceB"]["test_attack_rows"] == {"test": 3 * 150}
    assert tuple(runs) == VARIANTS
    for variant in VARIANTS:
        run = runs[variant]
        for scope in ("macro", "pooled"):
            for rate in RATES:
                assert 0.0 <= run[scope][rate] <= 1.0, (variant, scope, rate)
        assert run["wall_seconds"] > 0
        expected_clients = (
            {"DeviceA->DeviceB", "DeviceB->DeviceA"} if variant == "local-cross" else set(DEVICES)
        )
        assert set(run["clients"]) == expected_clients
        for client in run["clients"].values():
            assert {"tpr", "fpr", "f1", "tp", "fp", "tn", "fn"} <= set(client)
            # Each client's test set: its last benign third (50 rows) + its 3 x 149 or 3 x 150 attack rows.
            assert client["tp"] + client["fn"] in (447, 450)
            assert client["fp"] + client["tn"] == 50
        pooled = run["pooled"]
        assert pooled["tp"] + pooled["fn"] == sum(c["tp"] + c["fn"] for c in run["clients"].values())
    fl = runs["FL"]
    assert len(fl["round_train_loss"]) == 5
    assert all(loss > 0 for loss in fl["round_train_loss"])
    assert [sorted(c) for c in fl["round_clients"]] == [sorted(DEVICES)] * 5  # fraction_fit = 1.0
    assert fl["bytes_sent"] > 0
    assert fl["bytes_received"] > 0
    assert fl["retrained_rounds"] == []
    assert set(fl["by_attack"]) >= {"gafgyt.scan", "gafgyt.udp", "mirai.udp"}
    assert fl["window"]["size"] == 10


def test_fl_detects_the_attack_samples(sample_run: tuple[Path, dict[str, Any]]) -> None:
    # Prepare
    _, results = sample_run
    fl = results["runs"]["FL"]
    # Assert
    # Measured (5 rounds, fraction 1.0), seeds 0 / 1 / 2: pooled TPR 1.0 / 1.0 / 1.0, pooled balanced
    # accuracy 0.96 / 0.915 / 0.915 (FPR 0.08 / 0.17 / 0.17: 8-17 of 100 benign rows), every attack type
    # TPR 1.0; window level (10-row vote) seed 0: TPR 1.0, FPR 0.0.
    assert fl["pooled"]["tpr"] >= 0.95
    assert fl["pooled"]["balanced_accuracy"] >= 0.85
    assert fl["macro"]["balanced_accuracy"] >= 0.85
    assert fl["pooled"]["fpr"] <= 0.30
    for attack in ("gafgyt.scan", "gafgyt.udp", "mirai.udp"):
        assert fl["by_attack"][attack]["tpr"] >= 0.90, attack
    assert fl["window"]["pooled"]["balanced_accuracy"] >= 0.90


@pytest.mark.xfail(
    strict=True,
    reason="known limitation: a local model's min-max scaler fitted on ~50 rows gives features that barely "
    "vary there a tiny span; its opt rows then scale to ~1e4 and DeviceB's local threshold is ~1e10 "
    "(exactly constant and rounding-noise spans are already handled; a robust scaler is future work)",
)
def test_local_thresholds_are_on_the_scale_of_the_reconstruction_errors(
    sample_run: tuple[Path, dict[str, Any]],
) -> None:
    # Prepare
    _, results = sample_run
    local = results["runs"]["local"]
    # Assert
    # Measured seed 0: DeviceA 0.088 (its own attacks: TPR 441/447), DeviceB 5.7e20 (TPR 0/450);
    # the federated threshold (FL) is 0.049.
    assert max(local["thresholds"].values()) < 10.0
    assert all(c["tpr"] >= 0.5 for c in local["clients"].values())


def test_report_links_the_plots_that_exist(sample_run: tuple[Path, dict[str, Any]]) -> None:
    # Prepare
    out, _ = sample_run
    report = (out / "report.md").read_text(encoding="utf-8")
    # Execute
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    # Assert
    assert report.startswith("# fl-vs-centralized")
    for variant in VARIANTS:
        assert f"| {variant} " in report
    assert "## Window level" in report
    assert set(links) == {"loss.png", "clients.png", "scores.png"}
    for link in links:
        png = out / link
        assert png.is_file()
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_repeats_report_the_sample_std_over_seeds(tmp_path: Path) -> None:
    # Prepare: the sample layout, FL only, 2 rounds, 3 seeds
    source = _build_uci_layout(tmp_path / "nbaiot")
    out = tmp_path / "out"
    # Execute
    run_experiment(
        "fl-vs-centralized",
        out=out,
        seed=0,
        repeats=3,
        overrides=[
            f"data.source={str(source)!r}",
            "federated.rounds=2",
            "federated.fraction_fit=1.0",
            'variants=[{name = "FL", strategy = "fedavgm", retrain_every = 0}]',
            "detect.local_thresholds=false",
        ],
    )
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    report = (out / "report.md").read_text(encoding="utf-8")
    # Assert: runs_std is numpy's ddof=1 std of the per-seed values, and the report says so
    assert results["seeds"] == [0, 1, 2]
    per_seed = [run["FL"] for run in results["per_seed"]]
    for scope, metric in (("macro", "fpr"), ("pooled", "balanced_accuracy"), ("pooled", "tp")):
        values = np.array([run[scope][metric] for run in per_seed], dtype=np.float64)
        assert results["runs"]["FL"][scope][metric] == pytest.approx(values.mean(), abs=1e-12)
        assert results["runs_std"]["FL"][scope][metric] == pytest.approx(values.std(ddof=1), abs=1e-12)
    losses = np.array([run["round_train_loss"] for run in per_seed])
    assert np.ptp(losses[:, -1]) > 0  # the seeds differ, so the std is not trivially 0
    assert "Seeds: 0, 1, 2; numbers are mean ± sample std (ddof=1) over 3 seeds." in report
    assert " ± " in report


def _calibrated_evaluation(out: Path, source: Path, window: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Each client's threshold by :func:`calibrate_scores` on its own opt rows (the saved FL detector's
    scores), and the test-set summary under those thresholds."""
    detector = AnomalyDetector.load(out / "detector.npz")
    ds = load_anomaly_dataset(DataConfig(source=str(source)), seed=0)
    thresholds: dict[str, float] = {}
    evals = {}
    for cid, split in ds.clients.items():
        det = copy.deepcopy(detector)
        cal = calibrate_scores(det, cid, lambda x=split.x_opt: [detector.anomaly_score(x)])
        assert det.device_thresholds_ == {cid: cal.threshold}
        assert cal.packets == split.x_opt.shape[0]
        thresholds[cid] = cal.threshold
        test = split.tests["test"]
        evals[cid] = evaluate_scores(detector.anomaly_score(test.x), cal.threshold, test, window=window)
    return thresholds, summarize_evaluations(evals, window=window)


def _assert_published(published: dict[str, Any], summary: dict[str, Any]) -> None:
    for scope in ("macro", "pooled"):
        for key in ("tpr", "fpr", "balanced_accuracy"):
            assert published[scope][key] == pytest.approx(summary[scope][key], abs=1e-12), (scope, key)
            assert published["window"][scope][key] == pytest.approx(
                summary["window"][scope][key], abs=1e-12
            ), ("window", scope, key)


def test_local_thresholds_are_the_calibration_of_each_clients_opt_rows(
    sample_run: tuple[Path, dict[str, Any]],
) -> None:
    # Prepare: the experiment's per-client local thresholds (detect.local_thresholds = true, mean_std)
    out, results = sample_run
    fl = results["runs"]["FL"]
    local = AnomalyDetector.load(out / "detector.npz").training_["local_thresholds"]
    # Execute: `fediot calibrate`'s fit (calibrate_scores) on each client's benign opt rows
    thresholds, summary = _calibrated_evaluation(out, out.parent / "nbaiot", fl["window"]["size"])
    # Assert: the same thresholds, and the published local-threshold rates are theirs
    assert set(thresholds) == set(local) == set(DEVICES)
    for cid, thr in thresholds.items():
        assert thr == pytest.approx(local[cid], rel=1e-12), cid
    _assert_published(fl["local_threshold"], summary)
    report = (out / "report.md").read_text(encoding="utf-8")
    for row in ("FL, federated", "FL, federated, window", "FL, local", "FL, local, window"):
        assert f"| {row} |" in report, row


@pytest.mark.slow
def test_local_quantile_thresholds_are_the_calibration_of_each_clients_opt_rows(tmp_path: Path) -> None:
    # Prepare: FL only, 2 rounds, the quantile rule (federated histograms; calibrate's histogram)
    source = _build_uci_layout(tmp_path / "nbaiot")
    out = tmp_path / "out"
    run_experiment(
        "fl-vs-centralized",
        out=out,
        seed=0,
        overrides=[
            f"data.source={str(source)!r}",
            "federated.rounds=2",
            "federated.fraction_fit=1.0",
            'detect.threshold="quantile"',
            "detect.threshold_q=0.9",
            'variants=[{name = "FL", strategy = "fedavgm", retrain_every = 0}]',
        ],
    )
    fl = json.loads((out / "results.json").read_text(encoding="utf-8"))["runs"]["FL"]
    local = AnomalyDetector.load(out / "detector.npz").training_["local_thresholds"]
    # Execute
    thresholds, summary = _calibrated_evaluation(out, source, fl["window"]["size"])
    # Assert: histogram quantiles add exactly, so the thresholds are equal
    assert thresholds == local
    _assert_published(fl["local_threshold"], summary)
