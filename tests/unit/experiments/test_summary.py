import math

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
    assert math.isclose(std["m"]["tpr"], 0.25)
    assert mean["m"]["fpr"] == 0.2
    assert std["m"]["fpr"] == 0.0
    assert mean["name"] == "a"
    assert std["name"] is None
