"""End to end: ``fediot run`` on the shipped NSL-KDD data (the seed README's FRN/MRN and MRN/MNN tables).

The runs use a reduced budget (5 rounds of 1 local epoch) so that the shipped configs' ``retrain_every = 5``
still retrains once, in round 5. Errors go through the real entry point (``fediot.cli:main``, the console
script), which is what prints the one-line ``error: ...`` message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fediot.cli import app

runner = CliRunner()

BUDGET = ["--set=federated.rounds=5", "--set=federated.local_epochs=1"]


def _run(out: Path, experiment: str, seed: int, budget: list[str] = BUDGET) -> dict[str, Any]:
    result = runner.invoke(
        app,
        ["-q", "run", experiment, "--data", "nsl-kdd", "--seed", str(seed), "--out", str(out), *budget],
        env={"COLUMNS": "160"},
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"results: {out / 'results.json'}" in result.output
    results: dict[str, Any] = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return results


def _without_timings(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _without_timings(v) for k, v in tree.items() if k != "wall_seconds"}
    if isinstance(tree, list):
        return [_without_timings(v) for v in tree]
    return tree


@pytest.mark.slow
def test_strategies_runs_frn_and_mrn_with_retraining(tmp_path: Path) -> None:
    # Execute
    results = _run(tmp_path, "strategies", 0)
    # Assert
    runs = results["runs"]
    assert results["experiment"] == "strategies"
    assert results["dataset"].startswith("nsl-kdd")
    assert list(runs) == ["FRN", "MRN"]
    assert results["config"]["rounds"] == 5
    assert results["config"]["local_epochs"] == 1
    for variant in ("FRN", "MRN"):
        run = runs[variant]
        assert len(run["round_train_loss"]) == 5
        assert run["retrained_rounds"] == [5]
        assert run["bytes_sent"] > 0
        # Measured seed 0 (5 rounds x 1 local epoch): macro balanced accuracy FRN 0.830, MRN 0.811.
        assert run["macro"]["balanced_accuracy"] >= 0.70, variant
    # FedAvg and FedAvgM (server momentum 0.5) give different models from the same start.
    assert runs["FRN"]["round_train_loss"] != runs["MRN"]["round_train_loss"]


@pytest.mark.slow
def test_retraining_runs_mrn_and_mnn(tmp_path: Path) -> None:
    # Execute
    results = _run(tmp_path, "retraining", 0)
    # Assert
    runs = results["runs"]
    assert list(runs) == ["MRN", "MNN"]
    assert runs["MRN"]["retrained_rounds"] == [5]
    assert runs["MNN"]["retrained_rounds"] == []
    # Same seed, same strategy: identical until the retraining round, then they part.
    # Measured seed 0: rounds 1-4 equal, round 5 loss MRN 0.0188 vs MNN 0.0223.
    assert runs["MRN"]["round_train_loss"][:4] == runs["MNN"]["round_train_loss"][:4]
    assert runs["MRN"]["round_train_loss"][4] != runs["MNN"]["round_train_loss"][4]
    # Measured seed 0: macro balanced accuracy MRN 0.811, MNN 0.795.
    assert runs["MRN"]["macro"]["balanced_accuracy"] >= 0.70
    assert runs["MNN"]["macro"]["balanced_accuracy"] >= 0.70


# A smaller budget for the three determinism runs: one FedAvgM variant retraining every round, 2 rounds.
SMALL = [
    f"--set={item}"
    for item in (
        "federated.rounds=2",
        "federated.local_epochs=1",
        'variants=[{name = "MRN", strategy = "fedavgm", retrain_every = 1}]',
        "detect.local_thresholds=false",
    )
]


@pytest.mark.slow
def test_same_seed_gives_identical_runs_and_another_seed_differs(tmp_path: Path) -> None:
    # Execute
    first = _run(tmp_path / "first", "strategies", 0, SMALL)
    again = _run(tmp_path / "again", "strategies", 0, SMALL)
    other = _run(tmp_path / "other", "strategies", 1, SMALL)
    # Assert
    assert list(first["runs"]) == ["MRN"]
    assert first["runs"]["MRN"]["retrained_rounds"] == [1, 2]
    assert _without_timings(again["runs"]) == _without_timings(first["runs"])
    assert again["clients"] == first["clients"]
    assert other["seed"] == 1
    assert other["clients"] != first["clients"]  # the Dirichlet partition depends on the seed
    assert other["runs"]["MRN"]["round_train_loss"] != first["runs"]["MRN"]["round_train_loss"]
    assert other["runs"]["MRN"]["macro"] != first["runs"]["MRN"]["macro"]


def _fediot(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run the console script's entry point in a fresh interpreter (stdout, stderr not a terminal)."""
    env = {**os.environ, "COLUMNS": "80"}
    return subprocess.run(
        [sys.executable, "-c", "from fediot.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "no-such-experiment"], "unknown experiment 'no-such-experiment'; available: "),
        (["run", "strategies", "--set", "federated.rounds"], "must look like section.key=value"),
        (
            ["run", "strategies", "--data", "nsl-kdd", "--set", "federated.rounds=abc"],
            "federated.rounds: expected an integer",
        ),
    ],
    ids=["unknown-experiment", "set-without-value", "set-not-an-int"],
)
def test_config_errors_exit_2_with_an_error_message_and_no_traceback(
    args: list[str], message: str, tmp_path: Path
) -> None:
    # Execute
    proc = _fediot(*args, "--out", str(tmp_path / "out"), tmp_path=tmp_path)
    # Assert
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    text = " ".join(proc.stderr.split())
    assert text.startswith("error: ")
    assert text.count("error:") == 1
    assert message in text
    assert not (tmp_path / "out").exists()


def test_a_long_error_is_one_line(tmp_path: Path) -> None:
    # Execute
    proc = _fediot("run", "no-such-experiment", "--out", str(tmp_path / "out"), tmp_path=tmp_path)
    # Assert
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: unknown experiment")
