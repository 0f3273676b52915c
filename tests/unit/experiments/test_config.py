import pytest

from fediot.errors import ConfigError
from fediot.experiments.config import apply_overrides, available_configs, load_config


def test_shipped_configs_load_and_name_themselves() -> None:
    # Prepare
    names = available_configs()
    # Execute
    configs = {n: load_config(n) for n in names}
    # Assert
    assert {"kdd-gateways", "strategies", "retraining", "fl-vs-centralized"} <= set(names)
    assert all(cfg["name"] == n for n, cfg in configs.items())


def test_overrides_parse_toml_values_and_reject_malformed() -> None:
    # Prepare
    cfg = {"federated": {"rounds": 20}}
    # Execute
    out = apply_overrides(cfg, ["federated.rounds=3", "data.source=nsl-kdd", "train.hidden=[4, 4]"])
    # Assert
    assert out == {"federated": {"rounds": 3}, "data": {"source": "nsl-kdd"}, "train": {"hidden": [4, 4]}}
    assert cfg == {"federated": {"rounds": 20}}
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        apply_overrides(cfg, ["rounds"])


def test_unknown_experiment_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError, match="kdd-gateways"):
        load_config("no-such-experiment")
