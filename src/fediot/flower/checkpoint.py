"""Atomic server checkpoints and history: the engine's whole state plus the configuration it ran under.

A checkpoint (``.npz``, never pickle) holds an :class:`fediot.federated.engine.EngineState` — global
weights, strategy state, federated scaler, threshold statistics, last round, client-selection RNG state,
round history — and the full flattened configuration. Resume refuses a checkpoint whose configuration
differs from the current one in any key that changes results (see :data:`RESUMABLE_KEYS`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fediot.errors import ConfigError, DataError
from fediot.federated.engine import EngineState, RoundRecord
from fediot.fileio import atomic_write
from fediot.report.io import to_jsonable, write_json

__all__ = [
    "RESUMABLE_KEYS",
    "check_resumable",
    "config_mismatch",
    "load_checkpoint",
    "save_checkpoint",
    "write_history",
]

_FORMAT = "fediot-checkpoint/2"

RESUMABLE_KEYS = ("federated.rounds", "federated.tolerate_failures")
"""Configuration keys a resumed run may change (besides every ``server.*`` key: paths and timeouts).

``federated.rounds`` may grow: 2 rounds, then a resume to 4, equal 4 rounds straight."""


def _encode_arrays(prefix: str, value: Any, arrays: dict[str, NDArray[Any]]) -> Any:
    """Move every ndarray inside ``value`` into ``arrays`` (``prefix/...`` keys); return a JSON spec."""
    if isinstance(value, np.ndarray):
        arrays[prefix] = value
        return {"__array__": prefix}
    if isinstance(value, Mapping):
        return {str(k): _encode_arrays(f"{prefix}/{k}", v, arrays) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode_arrays(f"{prefix}/{i}", v, arrays) for i, v in enumerate(value)]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot checkpoint {prefix!r} of type {type(value).__name__}")


def _decode_arrays(spec: Any, npz: Any) -> Any:
    if isinstance(spec, dict):
        if set(spec) == {"__array__"}:
            return np.array(npz[spec["__array__"]])
        return {k: _decode_arrays(v, npz) for k, v in spec.items()}
    if isinstance(spec, list):
        return [_decode_arrays(v, npz) for v in spec]
    return spec


def save_checkpoint(path: str | Path, state: EngineState, config: Mapping[str, Any]) -> Path:
    """Write ``state`` and the flattened ``config`` to ``path`` (``.npz``) atomically.

    A crash leaves either the previous checkpoint or the new one, never a partial file.
    """
    arrays: dict[str, NDArray[Any]] = {f"weights/{i}": w for i, w in enumerate(state.weights)}
    meta = {
        "format": _FORMAT,
        "server_round": state.server_round,
        "num_weights": len(state.weights),
        "strategy": state.strategy,
        "strategy_state": _encode_arrays("strategy", state.strategy_state, arrays),
        "rng_state": to_jsonable(state.rng_state),
        "scaler": _encode_arrays("scaler", state.scaler, arrays),
        "history": [r.to_dict() for r in state.history],
        "threshold_summaries": _encode_arrays("summaries", state.threshold_summaries, arrays),
        "threshold": state.threshold,
        "config": to_jsonable(dict(config)),
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]

    return atomic_write(Path(path), write)


def load_checkpoint(path: str | Path) -> tuple[EngineState, dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint` (no pickle is ever loaded).

    Returns
    -------
    (EngineState, dict)
        The state and the flattened configuration it was written under.

    Raises
    ------
    DataError
        If the file is missing, not a fediot checkpoint of this format, or damaged.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no checkpoint to resume from (the file does not exist)")
    try:
        with np.load(p, allow_pickle=False) as npz:
            meta = json.loads(bytes(npz["meta"]).decode())
            if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
                found = meta.get("format") if isinstance(meta, dict) else None
                raise DataError(f"{p}: not a {_FORMAT} file (format {found!r})")
            weights = [np.array(npz[f"weights/{i}"], dtype=np.float32) for i in range(meta["num_weights"])]
            state = EngineState(
                server_round=int(meta["server_round"]),
                weights=weights,
                strategy=str(meta["strategy"]),
                strategy_state=_decode_arrays(meta["strategy_state"], npz),
                rng_state=meta["rng_state"],
                scaler=_decode_arrays(meta["scaler"], npz),
                history=tuple(RoundRecord.from_dict(r) for r in meta["history"]),
                threshold_summaries=_decode_arrays(meta["threshold_summaries"], npz),
                threshold=None if meta["threshold"] is None else float(meta["threshold"]),
            )
            config = dict(meta["config"])
    except DataError:
        raise
    except Exception as exc:  # zip, JSON, key and value errors of a damaged or foreign file
        raise DataError(f"{p}: damaged or unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    for i, w in enumerate(state.weights):
        if not np.isfinite(w).all():
            raise DataError(f"{p}: checkpoint weights tensor {i} holds non-finite values")
    return state, config


def config_mismatch(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """Return the first key (sorted) whose value differs between two flattened configurations, or None.

    ``server.*`` keys and :data:`RESUMABLE_KEYS` may differ.

    Examples
    --------
    >>> config_mismatch({"seed": 0, "federated.rounds": 2}, {"seed": 0, "federated.rounds": 4}) is None
    True
    >>> config_mismatch({"seed": 0}, {"seed": 1})
    'seed'
    """
    keys = sorted(set(saved) | set(current))
    for key in keys:
        if key.startswith("server.") or key in RESUMABLE_KEYS:
            continue
        if to_jsonable(saved.get(key)) != to_jsonable(current.get(key)):
            return key
    return None


def check_resumable(saved: Mapping[str, Any], current: Mapping[str, Any], path: str | Path) -> None:
    """Raise :class:`ConfigError` naming the key if the checkpoint at ``path`` ran another configuration."""
    key = config_mismatch(saved, current)
    if key is not None:
        raise ConfigError(
            f"{path}: the checkpoint was written with {key}={saved.get(key)!r}, the configuration says "
            f"{current.get(key)!r}; resume only with the same configuration"
        )


def write_history(path: str | Path, rounds: Sequence[RoundRecord], *, finished: bool) -> Path:
    """Write the round records as JSON to ``path`` atomically: ``{"finished": bool, "rounds": [...]}``.

    A resumed run passes the whole history (the rounds before the stop too), so nothing is lost.
    """
    return write_json(Path(path), {"finished": finished, "rounds": [r.to_dict() for r in rounds]})
