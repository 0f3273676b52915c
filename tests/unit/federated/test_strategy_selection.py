"""Every aggregator is selectable by ``federated.strategy`` in experiments (TOML/--set) and in deployment
(Flower run config), with its parameters as schema fields; unknown values are refused."""

from __future__ import annotations

import pytest

from fediot.config import STRATEGIES, FLConfig, fl_config_from_run_config, to_run_config
from fediot.errors import ConfigError
from fediot.federated.settings import fit_config, strategy_for
from fediot.federated.strategy import STRATEGY_NAMES, Bulyan, FedAdam, MultiKrum, NormBoundedAvg


def test_the_schema_and_the_strategy_factory_know_the_same_names() -> None:
    assert set(STRATEGIES) == set(STRATEGY_NAMES)


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_is_built_from_the_flower_run_config(name: str) -> None:
    # Prepare: what `flwr run --run-config 'federated.strategy="..."'` hands the ServerApp
    run_config = to_run_config(FLConfig())
    run_config["federated.strategy"] = name
    # Execute
    strategy = strategy_for(fl_config_from_run_config(run_config))
    # Assert
    assert strategy.name == name


def test_strategy_parameters_come_from_kebab_case_run_config_keys() -> None:
    # Prepare
    base = to_run_config(FLConfig())
    cases = [
        ({"federated.strategy": "bulyan", "federated.num-malicious": 2}, Bulyan, "num_malicious", 2),
        ({"federated.strategy": "multi-krum", "federated.krum-select": 5}, MultiKrum, "num_to_select", 5),
        (
            {"federated.strategy": "norm-bounded", "federated.clip-norm": 0.25},
            NormBoundedAvg,
            "clip_norm",
            0.25,
        ),
        ({"federated.strategy": "fedadam", "federated.server-optimizer-lr": 0.3}, FedAdam, "eta", 0.3),
    ]
    for overrides, cls, attr, value in cases:
        # Execute
        strategy = strategy_for(fl_config_from_run_config({**base, **overrides}))
        # Assert
        assert isinstance(strategy, cls)
        assert getattr(strategy, attr) == value


def test_fedprox_sends_its_mu_and_other_strategies_do_not() -> None:
    fedprox = FLConfig.from_dict({"federated": {"strategy": "fedprox", "proximal_mu": 0.2}})
    assert fit_config(fedprox)(1)["proximal-mu"] == 0.2
    assert "proximal-mu" not in fit_config(FLConfig())(1)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"strategy": "krumm"}, "federated.strategy: expected one of 'fedavg'"),
        ({"trimmed_fraction": 0.5}, r"federated.trimmed_fraction must be in \[0, 0.5\)"),
        ({"num_malicious": -1}, "federated.num_malicious must be >= 0"),
        ({"clip_norm": 0.0}, "federated.clip_norm must be > 0"),
        ({"server_beta_2": 1.0}, r"federated.server_beta_2 must be in \[0, 1\)"),
        ({"statistics": "mean"}, "federated.statistics: expected one of 'sum', 'trimmed', 'median'"),
        ({"krum_f": 1}, "unknown key 'federated.krum_f'"),
    ],
)
def test_unknown_or_out_of_range_values_are_refused_naming_the_key(
    section: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        FLConfig.from_dict({"federated": section})
