"""The one configuration schema: strict parsing, Flower run-config mapping, and one source of defaults."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from flwr.common.config import flatten_dict, parse_config_args

from fediot.config import (
    FLConfig,
    TrainingConfig,
    fl_config_from_run_config,
    flatten_config,
    parse_section,
    to_run_config,
)
from fediot.errors import ConfigError
from fediot.experiments.anomaly import AnomalyConfig
from fediot.experiments.config import apply_overrides, load_config
from fediot.experiments.runner import run_experiment

ROOT = Path(__file__).resolve().parents[2]


def _flower_app_config() -> dict[str, object]:
    """The run config Flower builds from this repository's pyproject.toml (``flwr run .``)."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)
    return flatten_dict(project["tool"]["flwr"]["app"]["config"])


def test_flower_app_defaults_equal_the_main_jobs_fl_configuration() -> None:
    # Prepare: the main job (`fediot run` = fl-vs-centralized) and its federated variant
    main = AnomalyConfig.from_dict(load_config("fl-vs-centralized"))
    fl_variant = next(v for v in main.variants if v.kind == "federated")
    expected = main.variant_config(fl_variant)
    # Execute
    deployed = fl_config_from_run_config(_flower_app_config())
    # Assert: every field an experiment uses is the same in deployment
    assert deployed.federated == expected.federated
    assert deployed.train == expected.train
    assert deployed.detect == expected.detect
    assert deployed.seed == 0
    assert deployed == FLConfig()  # and both are the schema's defaults


def test_a_changed_main_job_value_would_be_caught() -> None:
    main = AnomalyConfig.from_dict(apply_overrides(load_config("fl-vs-centralized"), ["train.lr=0.01"]))
    deployed = fl_config_from_run_config(_flower_app_config())
    assert deployed.train != main.fl.train


def test_run_config_round_trips_through_flowers_own_parser() -> None:
    cfg = FLConfig.from_dict({"seed": 3, "federated": {"rounds": 7}, "train": {"ratios": [0.5, 0.25]}})
    rc = to_run_config(cfg)
    assert fl_config_from_run_config(rc) == cfg
    # what an operator types after --run-config, parsed by Flower itself
    overrides = parse_config_args(['federated.rounds=2 federated.strategy="fedavg" server.resume=false'])
    merged = fl_config_from_run_config({**rc, **overrides})
    assert (merged.federated.rounds, merged.federated.strategy, merged.server.resume) == (2, "fedavg", False)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["federated.roundz=5"], "unknown key 'federated.roundz' (did you mean 'federated.rounds'?)"),
        (["train.optimizer=sgdd"], "train.optimizer: expected one of 'adam', 'sgd', got 'sgdd'"),
        (["federated.rounds=abc"], "federated.rounds: expected an integer, got 'abc'"),
        (["federated.rounds=2.5"], "federated.rounds: expected an integer, got 2.5"),
        (['detect.local_thresholds="false"'], "detect.local_thresholds: expected true or false, got 'false'"),
        (["federated.fraction_fit=1.5"], "federated.fraction_fit must be in (0, 1], got 1.5"),
        (['detect.threshold="median"'], "detect.threshold: expected one of 'mean-std', 'quantile'"),
        (["trian.lr=0.1"], "unknown key 'trian'"),
        (["variants=3"], "variants must be an array of tables"),
    ],
)
def test_bad_experiment_values_name_the_key_before_any_work(
    overrides: list[str], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as info:
        run_experiment("fl-vs-centralized", out=tmp_path / "out", overrides=overrides)
    assert message in str(info.value)
    assert not (tmp_path / "out").exists()


def test_bad_run_config_values_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"server.resume: expected true or false, got 'false'"):
        fl_config_from_run_config({"server.resume": "false"})
    with pytest.raises(ConfigError, match=r"unknown key 'federated.num_server_rounds'"):
        fl_config_from_run_config({"federated.num-server-rounds": 3})
    with pytest.raises(ConfigError, match=r"server.resume needs server.checkpoint_path"):
        fl_config_from_run_config({"server.resume": True})


def test_kebab_and_snake_keys_read_the_same_field() -> None:
    a = parse_section(TrainingConfig, {"batch-size": 32}, "train")
    b = parse_section(TrainingConfig, {"batch_size": 32}, "train")
    assert a == b
    assert a.batch_size == 32


def test_flatten_names_every_field_once() -> None:
    flat = flatten_config(FLConfig())
    assert "federated.fraction_fit" in flat
    assert "detect.threshold" in flat
    assert len(flat) == len(set(flat))
