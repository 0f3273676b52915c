"""The ``privacy`` experiment: what client-level differential privacy costs in detection.

A grid of privacy budgets ``epsilon`` (``inf`` = no DP) x clipping rules (fixed, adaptive): each cell is one
federated run of the anomaly experiment's FL variant (same dataset, sections and evaluation helpers,
:func:`fediot.experiments.anomaly.run_variant`) with ``[privacy]`` set to that cell — central DP-FedAvg(M),
the noise multiplier calibrated so the whole run (rounds, and the private statistics when
``privacy.statistics``) spends at most ``epsilon`` at ``privacy.delta``. Results: macro TPR/FPR per instance
and per window, the epsilon actually spent, the noise multiplier.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from fediot.config import FLConfig, PrivacyConfig, check_keys, flatten_config, parse_section
from fediot.data.anomaly import AnomalyDataset
from fediot.errors import ConfigError
from fediot.experiments.anomaly import AnomalyConfig, VariantSpec, run_variant
from fediot.experiments.progress import NullProgress, Progress

__all__ = ["GridConfig", "PrivacyExperimentConfig", "cell_name", "run_privacy_grid"]

_SECTIONS = ("federated", "train", "detect", "privacy")


@dataclass(frozen=True, slots=True)
class GridConfig:
    """``[grid]``: the budgets and clipping rules compared.

    Parameters
    ----------
    epsilons : tuple of float
        Budgets (> 0); ``inf`` runs once without DP (the reference).
    clippings : tuple of str
        ``fixed`` and/or ``adaptive``.
    """

    epsilons: tuple[float, ...] = (1.0, 3.0, 8.0, math.inf)
    clippings: tuple[str, ...] = ("fixed", "adaptive")

    def __post_init__(self) -> None:
        if not self.epsilons or not all(e > 0 for e in self.epsilons):
            raise ConfigError(f"grid.epsilons must be a non-empty list of numbers > 0, got {self.epsilons}")
        if not self.clippings or not set(self.clippings) <= {"fixed", "adaptive"}:
            raise ConfigError(
                f"grid.clippings must be a non-empty list of 'fixed'/'adaptive', got {self.clippings}"
            )


@dataclass(frozen=True, slots=True)
class PrivacyExperimentConfig:
    """The experiment: the shared FL sections (``[privacy]`` is the base of every DP cell) and the grid."""

    fl: FLConfig = field(default_factory=FLConfig)
    grid: GridConfig = field(default_factory=GridConfig)

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any], *, seed: int = 0) -> PrivacyExperimentConfig:
        """Build from the nested TOML dict (the FL sections, ``privacy`` and ``grid``); strict."""
        fl = FLConfig.from_dict({"seed": seed, **{k: cfg[k] for k in _SECTIONS if k in cfg}})
        grid = parse_section(GridConfig, cfg.get("grid", {}), "grid")
        return cls(fl=fl, grid=grid)

    def cells(self) -> list[tuple[str, FLConfig]]:
        """Return ``(name, FLConfig)`` per grid cell, the no-DP reference first."""
        out: list[tuple[str, FLConfig]] = []
        base = self.fl.privacy
        if any(math.isinf(e) for e in self.grid.epsilons):
            out.append((cell_name(math.inf, None), replace(self.fl, privacy=PrivacyConfig())))
        for eps in sorted(e for e in self.grid.epsilons if not math.isinf(e)):
            for clip in self.grid.clippings:
                privacy = replace(
                    base,
                    mechanism="central",
                    clipping=clip,  # type: ignore[arg-type]  # checked by GridConfig
                    epsilon=eps,
                    noise_multiplier=None,
                )
                out.append((cell_name(eps, clip), replace(self.fl, privacy=privacy)))
        return out

    def to_results(self) -> dict[str, Any]:
        """Return the configuration as results record it (dotted section keys)."""
        flat = flatten_config(self.fl)
        flat["grid.epsilons"] = ["inf" if math.isinf(e) else e for e in self.grid.epsilons]
        flat["grid.clippings"] = list(self.grid.clippings)
        return flat


def cell_name(epsilon: float, clipping: Literal["fixed", "adaptive"] | str | None) -> str:
    """Return a grid cell's label.

    Examples
    --------
    >>> cell_name(3.0, "fixed"), cell_name(float("inf"), None)
    ('eps=3 fixed', 'no DP')
    """
    if math.isinf(epsilon):
        return "no DP"
    return f"eps={epsilon:g} {clipping}"


def run_privacy_grid(
    ds: AnomalyDataset, cfg: PrivacyExperimentConfig, *, seed: int, progress: Progress | None = None
) -> dict[str, Any]:
    """Run every grid cell on ``ds`` for ``seed``; return ``{"cells": {cell: results}}`` and the detectors."""
    progress = progress or NullProgress()
    out: dict[str, Any] = {}
    detectors: dict[str, Any] = {}
    for name, fl in cfg.cells():
        spec = VariantSpec(name=name, kind="federated")
        acfg = AnomalyConfig(variants=(spec,), fl=replace(fl, seed=seed))
        cache: dict[str, Any] = {}
        res = run_variant(ds, spec, acfg, seed=seed, progress=progress, cache=cache)
        res.pop("scores_sample", None)
        p = fl.privacy
        res["privacy_config"] = {
            "mechanism": p.mechanism, "clipping": p.clipping if p.enabled else None,
            "epsilon_budget": None if not p.enabled else p.epsilon, "delta": p.delta if p.enabled else None,
            "statistics": p.statistics if p.enabled else False,
        }  # fmt: skip
        if "privacy" in res:
            events = res["privacy"]["events"]
            res["noise_multiplier"] = events[-1]["noise_multiplier"] if events else None
        out[name] = res
        detectors[name] = cache["detectors"][name]
    return {"cells": out, "_detectors": detectors}


def check_config(cfg: Mapping[str, Any]) -> PrivacyExperimentConfig:
    """Validate a ``privacy`` experiment config (unknown keys and bad values raise ConfigError)."""
    check_keys(cfg, ("name", "kind", "description", "data", *_SECTIONS, "grid"))
    return PrivacyExperimentConfig.from_dict(cfg)
