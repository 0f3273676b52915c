"""End to end: the ``privacy`` experiment on a small grid (CI size: NSL-KDD clients, 2 rounds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fediot.detect.detector import AnomalyDetector
from fediot.errors import ConfigError
from fediot.experiments.runner import load_experiment, run_experiment

pytestmark = pytest.mark.slow

SMALL = [
    'data.source="nsl-kdd"',
    "federated.rounds=2",
    "federated.local_epochs=1",
    "grid.epsilons=3,inf",
    "grid.clippings=fixed,adaptive",
]


def test_small_privacy_grid_reports_epsilon_within_budget_and_rates(tmp_path: Path) -> None:
    # Execute
    out = run_experiment("privacy", out=tmp_path / "out", seed=0, overrides=SMALL)
    # Assert
    results = json.loads(out.results_path.read_text())
    cells = results["runs"]["cells"]
    assert list(cells) == ["no DP", "eps=3 fixed", "eps=3 adaptive"]
    assert "privacy" not in cells["no DP"]
    for name in ("eps=3 fixed", "eps=3 adaptive"):
        spent = cells[name]["privacy"]
        assert 2.5 < spent["epsilon"] <= 3.0
        assert spent["delta"] == 1e-3
        assert spent["releases"] == 2
        assert cells[name]["noise_multiplier"] > 0
    for cell in cells.values():
        for key in ("tpr", "fpr"):
            assert 0.0 <= cell["macro"][key] <= 1.0
        assert "window" not in cell  # NSL-KDD rows are not time-ordered: no window vote
    # the noise really changed the model: the DP cells' thresholds differ from the reference
    assert cells["eps=3 fixed"]["threshold"] != cells["no DP"]["threshold"]
    report = out.report_path.read_text()
    assert "| eps=3 fixed |" in report
    assert (tmp_path / "out" / "privacy_tradeoff.png").stat().st_size > 1000
    detector = AnomalyDetector.load(tmp_path / "out" / "detector.npz")
    assert detector.training_["privacy_spent"]["epsilon"] == pytest.approx(
        cells["eps=3 adaptive"]["privacy"]["epsilon"]
    )
    assert "local_thresholds" not in detector.training_
    assert np.isfinite(detector.threshold_)


def test_privacy_experiment_rejects_unknown_clipping_before_work() -> None:
    with pytest.raises(ConfigError, match=r"grid\.clippings"):
        load_experiment("privacy", ["grid.clippings=fixed,median"])
