"""The robustness experiment: hostile gateways x aggregators x attacks -> detection of the honest ones.

For every aggregator (a weights rule and a statistics rule, ``[[aggregators]]``) the federation runs once
clean, then for every malicious fraction in ``grid.fractions`` and every attack in ``grid.attacks`` with
``round(fraction * n)`` clients (drawn by the seed, the same set for every aggregator and attack) replaced
by hostile ones (:mod:`fediot.federated.attacks`). Each run is the engine's own federation (federated
scaler, rounds, federated threshold); the honest clients then score their own test rows with the global
model and threshold. Headline numbers are macro TPR/FPR over the **honest** clients (instance and window
level): what the attack does to its victims. Each attacked run also records the clean run's macro over
the same honest clients, so the difference is the attack's effect alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from fediot.config import (
    FederatedConfig,
    FLConfig,
    StrategyName,
    check_table_names,
    flatten_config,
    parse_section,
    parse_tables,
)
from fediot.data.anomaly import AnomalyDataset
from fediot.errors import ConfigError, FediotError
from fediot.experiments.anomaly import (
    AnomalyConfig,
    VariantSpec,
    _evaluate_clients,
    _headline,
    _new_model,
    _window,
    autoencoder_clients,
)
from fediot.experiments.progress import NullProgress, Progress
from fediot.federated.attacks import ATTACKS, AttackConfig, make_attacker, select_malicious
from fediot.federated.client import Client
from fediot.federated.engine import run_fl
from fediot.federated.settings import init_seed
from fediot.models.train import reconstruction_errors
from fediot.models.weights import get_weights, init_module, set_weights
from fediot.sim.batched import BatchedAutoencoderExecutor
from fediot.sim.runtime import InProcessTransport

__all__ = ["AggregatorSpec", "GridSpec", "RobustnessConfig", "run_robustness"]

_SECTIONS = ("federated", "train", "detect")


@dataclass(frozen=True, slots=True)
class AggregatorSpec:
    """One compared server configuration (a ``[[aggregators]]`` table): weights rule + statistics rule.

    Every field but ``name`` overrides the ``[federated]`` field of the same name when set.
    """

    name: str
    strategy: StrategyName | None = None
    statistics: Literal["sum", "trimmed", "median"] | None = None
    statistics_trim: float | None = None
    trimmed_fraction: float | None = None
    num_malicious: int | None = None
    krum_select: int | None = None
    clip_norm: float | None = None
    server_momentum: float | None = None

    def federated(self, base: FederatedConfig) -> FederatedConfig:
        """Return ``base`` with this aggregator's overrides (validated by the schema)."""
        overrides = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}
        try:
            return replace(base, **{k: v for k, v in overrides.items() if v is not None})
        except ConfigError as exc:
            raise ConfigError(f"aggregator {self.name!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class GridSpec:
    """``[grid]``: malicious fractions and attacks (the clean run, fraction 0, always runs)."""

    fractions: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3)
    attacks: tuple[str, ...] = tuple(a for a in ATTACKS if a != "none")

    def __post_init__(self) -> None:
        for f in self.fractions:
            if not 0.0 <= f < 0.5:
                raise ConfigError(f"grid.fractions must be in [0, 0.5), got {f}")
        for a in self.attacks:
            if a not in ATTACKS or a == "none":
                known = ", ".join(x for x in ATTACKS if x != "none")
                raise ConfigError(f"grid.attacks: unknown attack {a!r}; expected some of: {known}")
        if not self.attacks:
            raise ConfigError("grid.attacks must name at least one attack")

    @property
    def attacked_fractions(self) -> tuple[float, ...]:
        """The fractions above 0, in order."""
        return tuple(f for f in self.fractions if f > 0)


@dataclass(frozen=True, slots=True)
class RobustnessConfig:
    """The robustness experiment: grid, aggregators, attack parameters and the ``FLConfig`` sections."""

    aggregators: tuple[AggregatorSpec, ...]
    grid: GridSpec = field(default_factory=GridSpec)
    attack: AttackConfig = field(default_factory=AttackConfig)
    fl: FLConfig = field(default_factory=FLConfig)

    def __post_init__(self) -> None:
        check_table_names([a.name for a in self.aggregators], "aggregators", "the robustness experiment")
        for spec in self.aggregators:
            spec.federated(self.fl.federated)

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any], *, seed: int = 0) -> RobustnessConfig:
        """Build from the nested TOML dict; unknown keys, wrong types and bad values raise ConfigError."""
        aggregators = parse_tables(AggregatorSpec, cfg, "aggregators")
        attack = parse_section(AttackConfig, cfg.get("attack", {}), "attack")
        if attack.kind != "none":
            raise ConfigError("attack.kind is set per run by grid.attacks; leave it out of [attack]")
        return cls(
            aggregators=aggregators,
            grid=parse_section(GridSpec, cfg.get("grid", {}), "grid"),
            attack=attack,
            fl=FLConfig.from_dict({"seed": seed, **{k: cfg[k] for k in _SECTIONS if k in cfg}}),
        )

    def to_results(self) -> dict[str, Any]:
        """Return the configuration as results record it."""
        return {
            **{s: flatten_config(getattr(self.fl, s)) for s in _SECTIONS},
            "grid": flatten_config(self.grid),
            "attack": flatten_config(self.attack),
            "aggregators": [
                {k: v for k, v in flatten_config(a).items() if v is not None} for a in self.aggregators
            ],
        }


def _clients(
    ds: AnomalyDataset, cfg: AnomalyConfig, factory: Callable[[], Any], seed: int
) -> dict[str, Client]:
    return autoencoder_clients(ds, factory, cfg.train_config(cfg.federated.local_epochs), cfg.federated, seed)


def _attack_rows(ds: AnomalyDataset, malicious: list[str]) -> dict[str, NDArray[np.float32]]:
    """Each hostile client's own attack rows of the primary test set (what a compromised gateway relays)."""
    out = {}
    for cid in malicious:
        test = ds.clients[cid].tests[ds.primary_test]
        out[cid] = test.x[test.y == 1]
    return out


def _macro_of(clients: Mapping[str, Any], ids: list[str]) -> dict[str, float]:
    """Unweighted mean TPR/FPR over ``ids`` of per-client metrics (NaN-skipping, as the macro is)."""
    out = {}
    for m in ("tpr", "fpr", "balanced_accuracy"):
        values = [float(clients[c][m]) for c in ids if c in clients and not math.isnan(float(clients[c][m]))]
        out[m] = float(np.mean(values)) if values else float("nan")
    return out


def _one_run(
    ds: AnomalyDataset,
    cfg: AnomalyConfig,
    attack: AttackConfig,
    malicious: list[str],
    factory: Callable[[], Any],
    seed: int,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    fl = cfg.fl
    honest_ids = [cid for cid in ds.clients if cid not in malicious]
    clients = make_attacker(
        _clients(ds, cfg, factory, seed),
        malicious,
        attack,
        seed=seed,
        attack_rows=_attack_rows(ds, malicious),
    )
    executor = BatchedAutoencoderExecutor() if fl.federated.executor == "batched" else None
    out: dict[str, Any] = {"attack": attack.kind, "malicious": list(malicious)}
    try:
        result = run_fl(
            InProcessTransport(clients, executor),
            fl,
            get_weights(init_module(factory(), init_seed(seed))),
            min_fit_clients=min(fl.federated.min_fit_clients, len(clients)),
        )
    except FediotError as exc:  # e.g. every reply rejected, or a rule that cannot aggregate: the run failed
        out["failed"] = str(exc)
        out["wall_seconds"] = time.perf_counter() - t0
        return out
    assert result.scaler is not None  # run_fl always fits a scaler and a threshold
    assert result.threshold is not None
    scaler, threshold = result.scaler, result.threshold
    module = factory()
    set_weights(module, result.weights)
    cache: dict[tuple[str, int], NDArray[np.float64]] = {}

    def score(cid: str, x: NDArray[np.float32]) -> NDArray[np.float64]:
        key = (cid, id(x))
        if key not in cache:
            cache[key] = reconstruction_errors(module, scaler.transform(x)) if x.shape[0] else np.zeros(0)
        return cache[key]

    honest = replace(ds, clients={cid: ds.clients[cid] for cid in honest_ids})
    head = _headline(
        _evaluate_clients(honest, score, lambda cid: threshold, _window(ds, cfg)), ds.primary_test
    )
    out.update(head)
    out["threshold"] = threshold
    out["round_failures"] = [r.failures for r in result.rounds]
    out["round_rejected"] = [r.rejected for r in result.rounds]
    out["wall_seconds"] = time.perf_counter() - t0
    return out


def run_robustness(
    ds: AnomalyDataset, config: RobustnessConfig, *, seed: int, progress: Progress | None = None
) -> dict[str, Any]:
    """Run the whole grid for one seed.

    Returns
    -------
    dict
        ``malicious``: fraction (str) -> the hostile client ids; ``runs``: aggregator -> ``clean`` (the
        fraction-0 run) and ``attack -> fraction (str) -> run`` where each run holds the honest clients'
        ``macro``/``pooled``/``window``/``by_attack``/``clients``, the ``threshold``, the ``malicious`` ids,
        and ``clean_macro`` (and ``clean_window_macro``): the clean run's macro over the same honest
        clients. A run the attack broke holds ``failed`` (the reason) instead of metrics.
    """
    progress = progress or NullProgress()
    ids = list(ds.clients)
    malicious = {f: select_malicious(ids, f, seed) for f in config.grid.attacked_fractions}
    runs: dict[str, Any] = {}
    cells = len(config.grid.attacked_fractions) * len(config.grid.attacks)
    for spec in config.aggregators:
        fl = replace(config.fl, seed=seed, federated=spec.federated(config.fl.federated))
        cfg = AnomalyConfig(variants=(VariantSpec(spec.name),), fl=fl)
        factory = _new_model(ds, cfg)
        progress.task(f"{spec.name}: clean + {cells} attacked runs", 1 + cells)
        clean = _one_run(ds, cfg, replace(config.attack, kind="none"), [], factory, seed)
        progress.advance(info="clean")
        entry: dict[str, Any] = {"clean": clean}
        for kind in config.grid.attacks:
            attack = replace(config.attack, kind=kind)  # type: ignore[arg-type]  # checked by GridSpec
            per_fraction: dict[str, Any] = {}
            for f in config.grid.attacked_fractions:
                run = _one_run(ds, cfg, attack, malicious[f], factory, seed)
                run["fraction"] = f
                honest = [c for c in ids if c not in malicious[f]]
                if "clients" in clean:
                    run["clean_macro"] = _macro_of(clean["clients"], honest)
                if "window" in clean:
                    run["clean_window_macro"] = _macro_of(clean["window"]["clients"], honest)
                per_fraction[f"{f:g}"] = run
                progress.advance(info=f"{kind} {f:.0%}")
            entry[kind] = per_fraction
        runs[spec.name] = entry
    return {"malicious": {f"{f:g}": m for f, m in malicious.items()}, "runs": runs}
