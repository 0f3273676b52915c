"""End to end: ``fediot run robustness`` on a small grid (the CI size): results.json, report and plot.

Grid: 2 aggregators x (clean + 20% hostile x 3 attacks), 2 rounds. Measured (seed 0, 2 rounds): a client
inflating its statistics x 1e6 under the plain ``sum`` rule lifts the threshold from 0.53 to 1.95e4 and
the honest clients' macro TPR to 0.000; under ``median`` statistics it moves the threshold 0.22 -> 0.19
and TPR by -0.003.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fediot.errors import ConfigError
from fediot.experiments.runner import load_experiment, run_experiment

pytestmark = pytest.mark.slow

QUICK = [
    "federated.rounds=2",
    "grid.fractions=[0.0, 0.2]",
    'grid.attacks=["stats-inflate", "sign-flip", "data"]',
    'aggregators=[{name="plain", strategy="fedavgm", statistics="sum"},'
    ' {name="median", strategy="median", statistics="median"}]',
]


def test_quick_robustness_grid(tmp_path: Path) -> None:
    # Execute
    run_experiment("robustness", out=tmp_path, seed=0, overrides=QUICK)
    # Assert: the grid, and which clients were hostile
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    runs = results["runs"]
    assert list(runs) == ["plain", "median"]
    hostile = results["malicious"]["0"]["0.2"]
    assert len(hostile) == 5  # round(0.2 * 26)
    for entry in runs.values():
        assert set(entry) == {"clean", "stats-inflate", "sign-flip", "data"}
        for attack in ("stats-inflate", "sign-flip", "data"):
            run = entry[attack]["0.2"]
            assert run["malicious"] == hostile
            assert "failed" not in run
            assert not set(run["clients"]) & set(hostile)  # the headline is over the honest clients
            assert len(run["clients"]) == 21
            assert 0.0 <= run["window"]["macro"]["fpr"] <= 1.0
    # Assert: statistics poisoning breaks the plain rule and not the robust one
    plain, median = runs["plain"], runs["median"]
    assert plain["stats-inflate"]["0.2"]["threshold"] > 100 * plain["clean"]["threshold"]
    assert plain["stats-inflate"]["0.2"]["macro"]["tpr"] < 0.1
    assert median["stats-inflate"]["0.2"]["threshold"] < 3 * median["clean"]["threshold"]
    robust = median["stats-inflate"]["0.2"]
    assert abs(robust["macro"]["tpr"] - robust["clean_macro"]["tpr"]) < 0.05
    # Assert: the report
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "## Goal at 20% hostile" in report
    assert "## Attack `stats-inflate` (instance level)" in report
    assert "## Attack `data` (window level)" in report
    assert "](robustness.png)" in report
    assert (tmp_path / "robustness.png").is_file()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ('grid.attacks=["flood"]', "grid.attacks: unknown attack 'flood'"),
        ("grid.fractions=[0.6]", r"grid.fractions must be in \[0, 0.5\)"),
        ('attack.kind="scale"', "attack.kind is set per run by grid.attacks"),
        ("attack.scael=3.0", "unknown key 'attack.scael'"),
        ('aggregators=[{name="x", strategy="krumm"}]', "aggregators\\[0\\].strategy: expected one of"),
        ('aggregators=[{name="x", clip_norm=-1.0}]', "aggregator 'x': federated.clip_norm must be > 0"),
    ],
)
def test_bad_robustness_settings_are_refused_before_any_work(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_experiment("robustness", [override])
