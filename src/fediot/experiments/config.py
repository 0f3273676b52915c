"""Experiment configurations: TOML files shipped in ``experiments/configs/``, with dotted overrides."""

from __future__ import annotations

import copy
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from fediot.config import set_dotted
from fediot.errors import ConfigError

__all__ = ["apply_overrides", "available_configs", "load_config"]


def available_configs() -> list[str]:
    """Return the names of the shipped experiment configs."""
    root = resources.files("fediot.experiments") / "configs"
    return sorted(p.name.removesuffix(".toml") for p in root.iterdir() if p.name.endswith(".toml"))


def load_config(name_or_path: str) -> dict[str, Any]:
    """Load a shipped config by name (``kdd-gateways``) or any TOML file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        text = path.read_text(encoding="utf-8")
        source = str(path)
    else:
        res = resources.files("fediot.experiments") / "configs" / f"{name_or_path}.toml"
        if not res.is_file():
            raise ConfigError(
                f"unknown experiment {name_or_path!r}; available: {', '.join(available_configs())}"
            )
        text = res.read_text(encoding="utf-8")
        source = name_or_path
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None


def _parse_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``config`` with ``section.key=value`` overrides applied (values parsed as TOML).

    Examples
    --------
    >>> apply_overrides({"train": {"lr": 0.01}}, ["train.lr=0.1", "train.optimizer=adam"])
    {'train': {'lr': 0.1, 'optimizer': 'adam'}}
    """
    out = copy.deepcopy(config)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        dotted, raw = item.split("=", 1)
        set_dotted(out, dotted, _parse_value(raw.strip()))
    return out
