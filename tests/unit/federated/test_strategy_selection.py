"""Every aggregator is selectable by ``federated.strategy`` in experiments (TOML/--set) and in deployment
(Flower run config), with its parameters as schema fields; unknown values are refused."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from flwr.common.config import flatten_dict, parse_config_args

from fediot.config import STRATEGIES, FLConfig, fl_config_from_run_config, to_run_config
from fediot.errors import ConfigError
from fediot.experiments.anomaly import AnomalyConfig
from fediot.experiments.config import apply_overrides, load_config
from fediot.federated.settings import fit_config, strategy_for
from fediot.federated.statistics import STATISTICS_RULES
from fediot.federated.strategy import STRATEGY_NAMES, Bulyan, FedAdam, MultiKrum, NormBoundedAvg

ROOT = Path(__file__).resolve().parents[3]


def _pyproject_run_config() -> dict[str, bool | float | int | str]:
    """The run config ``flwr run .`` starts from: [tool.flwr.app.config], flattened by Flower."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        return flatten_dict(tomllib.load(f)["tool"]["flwr"]["app"]["config"])


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


@pytest.mark.parametrize("rule", STATISTICS_RULES)
@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_and_statistics_rule_is_selected_by_an_operators_run_config(
    name: str, rule: str
) -> None:
    # Prepare: `flwr run . --run-config '...'` as typed, parsed by Flower, over the pyproject defaults
    overrides = parse_config_args([f'federated.strategy="{name}" federated.statistics="{rule}"'])
    # Execute: what the ServerApp does with the run config (fediot.flower.server_app, run_fl)
    cfg = fl_config_from_run_config({**_pyproject_run_config(), **overrides})
    # Assert
    assert strategy_for(cfg).name == name
    assert cfg.federated.statistics == rule


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_is_selected_in_the_main_job_by_set(name: str) -> None:
    # Prepare: `fediot run --set federated.strategy=NAME` on the main job's configuration
    raw = apply_overrides(load_config("fl-vs-centralized"), [f"federated.strategy={name}"])
    main = AnomalyConfig.from_dict(raw)
    variant = next(v for v in main.variants if v.kind == "federated")
    # Execute
    strategy = strategy_for(main.variant_config(variant))
    # Assert
    assert strategy.name == name


def test_the_readmes_recommended_robust_setting_parses_in_deployment_and_in_experiments() -> None:
    # Prepare: the setting the README recommends (the robustness experiment's best at 20% hostile)
    run_config = parse_config_args(
        ['federated.strategy="multi-krum" federated.num-malicious=4 federated.statistics="trimmed" '
         "federated.statistics-trim=0.32"]
    )  # fmt: skip
    sets = [
        "federated.strategy=multi-krum", "federated.num_malicious=4",
        "federated.statistics=trimmed", "federated.statistics_trim=0.32",
    ]  # fmt: skip
    main = AnomalyConfig.from_dict(apply_overrides(load_config("fl-vs-centralized"), sets))
    variant = next(v for v in main.variants if v.kind == "federated")
    # Execute
    deployed = fl_config_from_run_config({**_pyproject_run_config(), **run_config})
    experiment = main.variant_config(variant)
    # Assert: the same federated section both ways, and the engine's strategy is Multi-Krum with f = 4
    assert deployed.federated == experiment.federated
    strategy = strategy_for(deployed)
    assert isinstance(strategy, MultiKrum)
    assert (strategy.num_malicious, strategy.num_to_select) == (4, 0)
    assert (deployed.federated.statistics, deployed.federated.statistics_trim) == ("trimmed", 0.32)


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
