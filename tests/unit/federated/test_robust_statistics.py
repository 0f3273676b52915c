"""Robust statistics: lying clients cannot move the federated threshold or scaler past the stated bound.

The bound (``fediot.federated.statistics`` module docstring): with ``median`` and fewer than half of the
clients hostile, or ``trimmed`` and at most ``int(trim * K)`` hostile, every combined statistic stays in
the honest clients' range, so the ``mean-std`` threshold stays in ``honest_threshold_bounds``. The plain
``sum`` rule is shown to move by orders of magnitude under the same lie.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fediot.config import FLConfig
from fediot.data.nbaiot import read_nbaiot_csv
from fediot.data.scaling import SufficientStats, make_scaler, scaler_inputs
from fediot.detect.threshold import (
    ErrorHistogram,
    ErrorSummary,
    ThresholdRule,
    error_summary,
    threshold_from_summaries,
)
from fediot.errors import ConfigError
from fediot.federated.attacks import StatisticsPoisoningClient
from fediot.federated.client import Client
from fediot.federated.engine import run_fl
from fediot.federated.settings import init_seed
from fediot.federated.statistics import decode_summary, honest_threshold_bounds, merge_summaries
from fediot.models.autoencoder import Autoencoder, AutoencoderConfig
from fediot.models.train import reconstruction_errors
from fediot.models.weights import get_weights, init_module
from fediot.sim.runtime import InProcessTransport
from gateway_clients import sample_gateways

SAMPLES = Path(__file__).resolve().parents[3] / "data" / "nbaiot" / "samples"
MEAN_STD = ThresholdRule(kind="mean_std", k=1.0)
QUANTILE = ThresholdRule(kind="quantile", q=0.95)


def _real_errors(num_clients: int) -> list[np.ndarray]:
    """Errors of the 299 real N-BaIoT benign rows under a fresh autoencoder, split by client."""
    x = read_nbaiot_csv(SAMPLES / "benign_traffic.csv.gz")
    scaler = make_scaler("log-minmax", SufficientStats.from_array(scaler_inputs("log-minmax", x)))
    module = init_module(Autoencoder(AutoencoderConfig(115)), 0)
    errors = reconstruction_errors(module, scaler.transform(x))
    return np.array_split(errors, num_clients)


def _honest(rule: ThresholdRule, num_clients: int = 9) -> dict[str, ErrorSummary]:
    return {f"c{i}": error_summary(e, rule) for i, e in enumerate(_real_errors(num_clients))}


def _liar_mean(mean: float, count: int = 33) -> SufficientStats:
    """A client reporting an error mean of ``mean`` (and a plausible spread)."""
    return SufficientStats(
        count, np.array([mean]), np.array([count * 1e-4]), np.array([mean]), np.array([mean])
    )


def test_one_client_reporting_an_error_mean_of_1e6_moves_the_plain_threshold_but_not_the_robust_ones() -> (
    None
):
    # Prepare: 9 honest clients with real errors, one reporting mean 1e6
    honest = _honest(MEAN_STD)
    lo, hi = honest_threshold_bounds(list(honest.values()), MEAN_STD)
    clean = threshold_from_summaries([merge_summaries(honest)], MEAN_STD)
    poisoned = {**honest, "z-liar": _liar_mean(1e6)}
    # Execute
    plain = threshold_from_summaries([merge_summaries(poisoned, "sum")], MEAN_STD)
    median = threshold_from_summaries([merge_summaries(poisoned, "median")], MEAN_STD)
    trimmed = threshold_from_summaries([merge_summaries(poisoned, "trimmed", 0.2)], MEAN_STD)
    # Assert: the plain rule moves by orders of magnitude; the robust ones stay within the stated bound
    assert lo <= clean <= hi or clean > hi  # the exact pool includes the spread between clients
    assert plain > 1e4 * clean
    assert lo <= median <= hi
    assert lo <= trimmed <= hi
    assert hi < 10 * clean  # and the bound itself is tight enough to matter


@pytest.mark.parametrize(
    ("rule", "trim", "liars"), [("median", 0.2, 4), ("trimmed", 0.2, 2), ("trimmed", 0.4, 4)]
)
@pytest.mark.parametrize("value", [1e6, 0.0, -1e6])
def test_up_to_the_breakdown_point_liars_stay_inside_the_bound(
    rule: str, trim: float, liars: int, value: float
) -> None:
    # Prepare: K = 9 + liars clients; median: liars < K / 2; trimmed: liars <= int(trim * K)
    honest = _honest(MEAN_STD)
    k = len(honest) + liars
    assert (rule == "median" and liars < k / 2) or liars <= int(trim * k)
    lo, hi = honest_threshold_bounds(list(honest.values()), MEAN_STD)
    poisoned: dict[str, ErrorSummary] = {**honest}
    for j in range(liars):
        poisoned[f"liar{j}"] = _liar_mean(value, count=10**9)  # a huge count weighs nothing here
    # Execute
    threshold = threshold_from_summaries([merge_summaries(poisoned, rule, trim)], MEAN_STD)
    # Assert
    assert lo <= threshold <= hi


def test_past_the_breakdown_point_the_trimmed_rule_can_move() -> None:
    # Prepare: 3 liars but trimmed 0.2 of 12 clients cuts only 2 per tail
    honest = _honest(MEAN_STD)
    poisoned: dict[str, ErrorSummary] = {**honest, **{f"liar{j}": _liar_mean(1e6) for j in range(3)}}
    _, hi = honest_threshold_bounds(list(honest.values()), MEAN_STD)
    # Execute
    threshold = threshold_from_summaries([merge_summaries(poisoned, "trimmed", 0.2)], MEAN_STD)
    # Assert: the bound's condition matters (this is why it is stated)
    assert threshold > hi


def test_robust_quantile_threshold_stays_within_one_bin_of_the_honest_ones() -> None:
    # Prepare: histograms; one liar reporting its errors times 1e6, one reporting zeros
    honest = _honest(QUANTILE)
    lo, hi = honest_threshold_bounds(list(honest.values()), QUANTILE)
    errs = _real_errors(9)[0]
    poisoned = {
        **honest,
        "liar-a": error_summary(errs * 1e6, QUANTILE),
        "liar-b": error_summary(np.zeros(40), QUANTILE),
    }
    # Execute
    plain = threshold_from_summaries([merge_summaries(poisoned)], QUANTILE)
    robust = {
        r: threshold_from_summaries([merge_summaries(poisoned, r, 0.2)], QUANTILE)
        for r in ("median", "trimmed")
    }
    # Assert
    assert plain > 100 * hi
    for value in robust.values():
        assert lo <= value <= hi
    merged = merge_summaries(poisoned, "median")
    assert isinstance(merged, ErrorHistogram)
    assert merged.count == sum(h.count for h in poisoned.values())


def test_a_client_inflating_its_feature_max_stretches_the_plain_scaler_only() -> None:
    # Prepare: per-feature statistics of 6 real clients, one reporting max x 1e9
    x = read_nbaiot_csv(SAMPLES / "benign_traffic.csv.gz")
    parts = np.array_split(x, 6)
    honest = {
        f"c{i}": SufficientStats.from_array(scaler_inputs("log-minmax", p)) for i, p in enumerate(parts)
    }
    s = honest["c0"]
    liar = SufficientStats(s.count, s.mean, s.m2, s.min, np.abs(s.max) * 1e9 + 1e9)
    poisoned = {**honest, "c0": liar}
    honest_max = np.max([h.max for h in honest.values()], axis=0)
    honest_min_of_max = np.min([h.max for h in honest.values()], axis=0)
    # Execute
    plain = merge_summaries(poisoned)
    median = merge_summaries(poisoned, "median")
    # Assert
    assert isinstance(plain, SufficientStats)
    assert isinstance(median, SufficientStats)
    assert np.all(plain.max >= 1e9)
    assert np.all(median.max <= honest_max)
    assert np.all(median.max >= honest_min_of_max)
    assert np.all(median.min <= median.max)


def test_an_unknown_rule_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown statistics rule 'mean'"):
        merge_summaries(_honest(MEAN_STD), "mean")
    with pytest.raises(
        ConfigError, match=r"federated.statistics: expected one of 'sum', 'trimmed', 'median'"
    ):
        FLConfig.from_dict({"federated": {"statistics": "mean"}})


def _clients(cfg: FLConfig, n: int = 6) -> dict[str, Client]:
    # interleaved rows: clients alike (the bound is then tight enough to matter)
    return sample_gateways(cfg, n, interleaved=True)


def _run(statistics: str, liar: bool) -> tuple[float, dict[str, Any]]:
    cfg = FLConfig.from_dict(
        {
            "seed": 3,
            "federated": {"rounds": 1, "fraction_fit": 1.0, "local_epochs": 1, "statistics": statistics},
            "train": {"batch_size": 32, "scaler": "log-minmax"},
        }
    )
    clients = _clients(cfg)
    if liar:
        clients["gw5"] = StatisticsPoisoningClient(clients["gw5"], 1e6)
    initial = get_weights(init_module(Autoencoder(AutoencoderConfig(115)), init_seed(cfg.seed)))
    result = run_fl(InProcessTransport(clients), cfg, initial)
    assert result.threshold is not None
    assert result.state.threshold_summaries is not None
    return result.threshold, result.state.threshold_summaries


def test_a_statistics_poisoning_client_through_the_engine() -> None:
    # Execute: the same federation, clean and with gw5 inflating its scaler and error statistics x 1e6
    clean, _ = _run("sum", liar=False)
    plain, _ = _run("sum", liar=True)
    robust, summaries = _run("trimmed", liar=True)
    median, median_summaries = _run("median", liar=True)
    # Assert: the plain threshold moves by orders of magnitude; the robust ones stay within the bound
    # computed from the honest clients' own reports in that very run
    assert plain > 1e3 * clean
    lo, hi = honest_threshold_bounds(
        [decode_summary(d) for c, d in summaries.items() if c != "gw5"], MEAN_STD
    )
    assert lo <= robust <= hi
    assert hi < 10 * clean
    lo, hi = honest_threshold_bounds(
        [decode_summary(d) for c, d in median_summaries.items() if c != "gw5"], MEAN_STD
    )
    assert lo <= median <= hi
