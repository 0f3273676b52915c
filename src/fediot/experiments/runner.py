"""Run a named experiment for one or more seeds and write ``results.json`` + ``report.md`` (+ plots)."""

from __future__ import annotations

import logging
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fediot import __version__
from fediot.config import check_keys, flatten_config, parse_section
from fediot.errors import ConfigError
from fediot.experiments.config import apply_overrides, load_config
from fediot.experiments.progress import NullProgress, Progress
from fediot.experiments.summary import mean_std
from fediot.fileio import check_output_dir, publish_outputs
from fediot.report.io import write_json, write_text

__all__ = ["ExperimentOutput", "load_experiment", "run_experiment"]

log = logging.getLogger(__name__)

OWNED_OUTPUTS = ("results.json", "report.md", "*.png", "detector.npz")
"""What an experiment writes into ``--out`` (older copies are replaced together; other files are kept)."""

Render = Callable[[dict[str, Any], Path | None], str]
Runner = Callable[[dict[str, Any], list[int], Progress], tuple[dict[str, Any], Render]]


@dataclass(frozen=True, slots=True)
class ExperimentOutput:
    """Where an experiment wrote its outputs, and the results dict itself."""

    results: dict[str, Any]
    results_path: Path
    report_path: Path


def _kdd_gateways(
    cfg: dict[str, Any], seeds: list[int], progress: Progress
) -> tuple[dict[str, Any], Render]:
    from fediot.experiments.kdd_gateways import KddGatewaysConfig, majority_baselines, run_kdd_gateways
    from fediot.report.kdd import kdd_gateways_markdown

    config = KddGatewaysConfig.from_dict(cfg)
    per_seed = []
    meta: dict[str, Any] = {}
    for seed in seeds:
        runs, meta = run_kdd_gateways(config, seed=seed, progress=progress)
        per_seed.append(runs)
    results: dict[str, Any] = {
        "dataset": f"kdd99 kddcup.data_10_percent[:{config.nrows}] + corrected",
        "protocol": (
            "seed paper (Chandran et al.): contiguous halves -> 2 gateways, 60/40 split, MLP 33-8-8-20"
        ),
        "config": asdict(config),
        **meta,
        "majority_baseline": majority_baselines(config, seeds[0]),
    }
    return _finish(results, per_seed), kdd_gateways_markdown


def _anomaly(
    cfg: dict[str, Any], seeds: list[int], progress: Progress
) -> tuple[dict[str, Any], Render]:
    from fediot.experiments.anomaly import run_variant
    from fediot.experiments.datasets import load_anomaly_dataset
    from fediot.report.anomaly import anomaly_markdown

    config, data = _anomaly_config(cfg)
    per_seed = []
    datasets = []
    detectors: dict[str, Any] = {}
    for seed in seeds:
        progress.task(f"data: {data.source} (seed {seed})", 1)
        ds = load_anomaly_dataset(data, seed)
        progress.advance(info=f"{len(ds.clients)} clients")
        datasets.append(ds)
        cache: dict[str, Any] = {}
        per_seed.append(
            {
                spec.name: run_variant(ds, spec, config, seed=seed, progress=progress, cache=cache)
                for spec in config.variants
            }
        )
        if not detectors:  # the first seed's first federated variant: what `fediot detect` takes
            federated = [v.name for v in config.variants if v.kind == "federated"]
            if federated:
                detectors["detector.npz"] = cache["detectors"][federated[0]]
    ds = datasets[0]
    results: dict[str, Any] = {
        "dataset": ds.name,
        "protocol": ds.protocol,
        "data": flatten_config(data),
        "config": config.to_results(),
        "num_features": len(ds.feature_names),
        "clients": {
            cid: {
                "train_rows": int(c.x_train.shape[0]),
                "opt_rows": int(c.x_opt.shape[0]),
                "test_rows": {n: int(t.x.shape[0]) for n, t in c.tests.items()},
                "test_attack_rows": {n: int(t.y.sum()) for n, t in c.tests.items()},
            }
            for cid, c in ds.clients.items()
        },
        "test_sets": list(ds.test_names),
    }
    return {**_finish(results, per_seed), "_detectors": detectors}, anomaly_markdown


def _privacy(cfg: dict[str, Any], seeds: list[int], progress: Progress) -> tuple[dict[str, Any], Render]:
    from fediot.experiments.datasets import load_anomaly_dataset
    from fediot.experiments.privacy import run_privacy_grid
    from fediot.report.privacy import privacy_markdown

    config, data = _privacy_config(cfg)
    per_seed: list[dict[str, Any]] = []
    detectors: dict[str, Any] = {}
    ds = None
    for seed in seeds:
        ds = load_anomaly_dataset(data, seed)
        grid = run_privacy_grid(ds, config, seed=seed, progress=progress)
        cells = grid.pop("_detectors")
        if not detectors and cells:  # the last cell (largest budget run): what `fediot detect` takes
            detectors["detector.npz"] = list(cells.values())[-1]
        per_seed.append(grid)
    assert ds is not None
    results = {
        "dataset": ds.name,
        "protocol": ds.protocol,
        "data": flatten_config(data),
        "config": config.to_results(),
        "num_clients": len(ds.clients),
    }
    return {**_finish(results, per_seed), "_detectors": detectors}, privacy_markdown


def _privacy_config(cfg: dict[str, Any]) -> tuple[Any, Any]:
    from fediot.experiments.datasets import DataConfig
    from fediot.experiments.privacy import check_config

    return check_config(cfg), parse_section(DataConfig, cfg.get("data", {}), "data")


def _anomaly_config(cfg: dict[str, Any]) -> tuple[Any, Any]:
    from fediot.experiments.anomaly import AnomalyConfig
    from fediot.experiments.datasets import DataConfig

    check_keys(cfg, ("name", "kind", "description", "data", "federated", "train", "detect", "variants"))
    return AnomalyConfig.from_dict(cfg), parse_section(DataConfig, cfg.get("data", {}), "data")


def _robustness(
    cfg: dict[str, Any], seeds: list[int], progress: Progress
) -> tuple[dict[str, Any], Render]:
    from fediot.experiments.datasets import load_anomaly_dataset
    from fediot.experiments.robustness import run_robustness
    from fediot.report.robustness import robustness_markdown

    config, data = _robustness_config(cfg)
    per_seed = []
    malicious = {}
    ds = None
    for seed in seeds:
        progress.task(f"data: {data.source} (seed {seed})", 1)
        ds = load_anomaly_dataset(data, seed)
        progress.advance(info=f"{len(ds.clients)} clients")
        out = run_robustness(ds, config, seed=seed, progress=progress)
        malicious[str(seed)] = out["malicious"]
        per_seed.append(out["runs"])
    assert ds is not None
    results: dict[str, Any] = {
        "dataset": ds.name,
        "protocol": ds.protocol,
        "data": flatten_config(data),
        "config": config.to_results(),
        "num_clients": len(ds.clients),
        "malicious": malicious,
        "test_sets": list(ds.test_names),
    }
    return _finish(results, per_seed), robustness_markdown


def _robustness_config(cfg: dict[str, Any]) -> Any:
    from fediot.experiments.datasets import DataConfig
    from fediot.experiments.robustness import RobustnessConfig

    sections = ("data", "federated", "train", "detect", "grid", "attack", "aggregators")
    check_keys(cfg, ("name", "kind", "description", *sections))
    return RobustnessConfig.from_dict(cfg), parse_section(DataConfig, cfg.get("data", {}), "data")


def _kdd_config(cfg: dict[str, Any]) -> Any:
    from fediot.experiments.kdd_gateways import KddGatewaysConfig

    return KddGatewaysConfig.from_dict(cfg)


def _finish(results: dict[str, Any], per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    # One seed: the run itself (integers stay integers); several: the leaf-wise mean and std.
    mean, std = (per_seed[0], None) if len(per_seed) == 1 else mean_std(per_seed)
    results["runs"] = mean
    results["runs_std"] = std if len(per_seed) > 1 else None
    results["per_seed"] = per_seed if len(per_seed) > 1 else None
    return results


EXPERIMENTS: dict[str, Runner] = {
    "kdd-gateways": _kdd_gateways,
    "anomaly": _anomaly,
    "privacy": _privacy,
    "robustness": _robustness,
}
VALIDATORS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "kdd-gateways": _kdd_config,
    "anomaly": _anomaly_config,
    "privacy": _privacy_config,
    "robustness": _robustness_config,
}


def load_experiment(name: str, overrides: list[str] | None = None) -> tuple[str, dict[str, Any]]:
    """Load experiment ``name`` with ``overrides`` and check it against its schema; return (kind, config).

    Raises
    ------
    ConfigError
        For an unknown experiment, an unknown key (naming the closest valid one), a wrong type or a value
        out of range — before any work is done.
    """
    cfg = apply_overrides(load_config(name), overrides or [])
    kind = str(cfg.get("kind", cfg.get("name", name)))
    if kind not in EXPERIMENTS:
        known = ", ".join(EXPERIMENTS)
        raise ConfigError(f"config {name!r}: unknown experiment kind {kind!r}; known: {known}")
    VALIDATORS[kind](cfg)
    return kind, cfg


def run_experiment(
    name: str,
    *,
    out: Path,
    seed: int = 0,
    repeats: int = 1,
    overrides: list[str] | None = None,
    progress: Progress | None = None,
) -> ExperimentOutput:
    """Run experiment ``name`` (a shipped config name or a TOML path) and write its outputs under ``out``.

    Parameters
    ----------
    name : str
        ``kdd-gateways``, ... or a path to a TOML config whose ``name`` is one of those.
    out : Path
        Output folder (created); ``results.json`` and ``report.md`` are replaced atomically.
    seed : int
        First seed; repeat ``k`` uses ``seed + k``.
    repeats : int
        Number of seeds; numbers in ``runs`` are then means and ``runs_std`` the sample std (ddof=1).
    overrides : list of str, optional
        ``section.key=value`` config overrides.
    """
    if repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {repeats}")
    out = check_output_dir(out)
    kind, cfg = load_experiment(name, overrides)
    runner = EXPERIMENTS[kind]
    seeds = [seed + k for k in range(repeats)]
    t0 = time.perf_counter()
    body, render = runner(cfg, seeds, progress or NullProgress())
    detectors: dict[str, Any] = body.pop("_detectors", {})
    results: dict[str, Any] = {
        "experiment": str(cfg.get("name", name)),
        "description": cfg.get("description", ""),
        "seed": seed,
        "seeds": seeds,
        "repeats": repeats,
        "fediot_version": __version__,
        "python": platform.python_version(),
        **body,
        "wall_seconds_total": time.perf_counter() - t0,
    }
    # Outputs as a unit: everything is written into a staging folder, then published together.
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        for file_name, detector in detectors.items():
            detector.save(staging / file_name)
        write_text(staging / "report.md", render(results, staging))
        write_json(staging / "results.json", results)
        publish_outputs(staging, out, owned=OWNED_OUTPUTS, last="results.json")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    results_path, report_path = out / "results.json", out / "report.md"
    log.info("wrote %s and %s", results_path, report_path)
    return ExperimentOutput(results, results_path, report_path)
