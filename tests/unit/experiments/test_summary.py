import math

import numpy as np
import pytest

from fediot.experiments.summary import mean_std


def test_mean_std_keeps_structure_and_skips_nan() -> None:
    # Prepare
    runs = [
        {"m": {"tpr": 1.0, "fpr": float("nan")}, "name": "a"},
        {"m": {"tpr": 0.5, "fpr": 0.2}, "name": "a"},
    ]
    # Execute
    mean, std = mean_std(runs)
    # Assert
    assert mean["m"]["tpr"] == 0.75
    assert math.isclose(std["m"]["tpr"], math.sqrt(0.125))  # sample std of (1.0, 0.5)
    assert mean["m"]["fpr"] == 0.2
    assert math.isnan(std["m"]["fpr"])  # defined in one run only: no sample spread
    assert mean["name"] == "a"
    assert std["name"] is None


@pytest.mark.parametrize("num_runs", [2, 3, 5])
def test_mean_std_is_the_sample_std_over_runs(num_runs: int) -> None:
    # Prepare: random metric values, one list leaf with a NaN in the first run
    rng = np.random.default_rng(num_runs)
    values = rng.uniform(0.0, 1.0, size=(num_runs, 3))
    runs = [
        {"f1": float(v[0]), "by_seed": [float(v[1]), float("nan") if i == 0 else float(v[2])]}
        for i, v in enumerate(values)
    ]
    # Execute
    mean, std = mean_std(runs)
    # Assert
    assert mean["f1"] == pytest.approx(float(np.mean(values[:, 0])), abs=1e-12)
    assert std["f1"] == pytest.approx(float(np.std(values[:, 0], ddof=1)), abs=1e-12)
    assert std["by_seed"][0] == pytest.approx(float(np.std(values[:, 1], ddof=1)), abs=1e-12)
    defined = values[1:, 2]
    assert mean["by_seed"][1] == pytest.approx(float(np.mean(defined)), abs=1e-12)
    if defined.size > 1:
        assert std["by_seed"][1] == pytest.approx(float(np.std(defined, ddof=1)), abs=1e-12)
    else:
        assert math.isnan(std["by_seed"][1])
