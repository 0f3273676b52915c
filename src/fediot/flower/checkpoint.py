"""Atomic server checkpoints: global weights, strategy state, last round and the selection RNG state."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fediot.federated.types import Weights

__all__ = ["Checkpoint", "load_checkpoint", "save_checkpoint"]

_FORMAT = "fediot-checkpoint/1"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The server state after a finished round.

    Attributes
    ----------
    server_round : int
        The last finished round (the next run starts at ``server_round + 1``).
    weights : Weights
        Global weights after that round.
    strategy_state : dict
        ``Strategy.state_dict()``: values are None, JSON scalars, ndarrays or lists of ndarrays.
    rng_state : dict
        ``np.random.Generator.bit_generator.state`` of the client-selection generator.
    strategy : str
        The strategy's name (checked on resume).
    """

    server_round: int
    weights: Weights
    strategy_state: dict[str, Any]
    rng_state: dict[str, Any]
    strategy: str


def _encode_state(state: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for key, value in state.items():
        if value is None or isinstance(value, bool | int | float | str):
            spec[key] = {"kind": "scalar", "value": value}
        elif isinstance(value, np.ndarray):
            arrays[f"state/{key}"] = value
            spec[key] = {"kind": "array"}
        elif isinstance(value, list | tuple) and all(isinstance(v, np.ndarray) for v in value):
            for i, v in enumerate(value):
                arrays[f"state/{key}/{i}"] = v
            spec[key] = {"kind": "arrays", "len": len(value)}
        else:
            raise TypeError(f"cannot checkpoint strategy state {key!r} of type {type(value).__name__}")
    return spec


def _decode_state(spec: dict[str, Any], npz: Any) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for key, entry in spec.items():
        if entry["kind"] == "scalar":
            state[key] = entry["value"]
        elif entry["kind"] == "array":
            state[key] = np.array(npz[f"state/{key}"])
        else:
            state[key] = [np.array(npz[f"state/{key}/{i}"]) for i in range(entry["len"])]
    return state


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` (``.npz``) atomically: a temp file in the same folder, then replace.

    A crash leaves either the previous checkpoint or the new one, never a partial file.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, NDArray[Any]] = {f"weights/{i}": w for i, w in enumerate(checkpoint.weights)}
    meta = {
        "format": _FORMAT,
        "server_round": checkpoint.server_round,
        "num_weights": len(checkpoint.weights),
        "strategy": checkpoint.strategy,
        "strategy_state": _encode_state(checkpoint.strategy_state, arrays),
        "rng_state": checkpoint.rng_state,
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (no pickle is ever loaded).

    Raises
    ------
    ValueError
        If the file is not a fediot checkpoint.
    """
    with np.load(Path(path), allow_pickle=False) as npz:
        meta = json.loads(bytes(npz["meta"]).decode())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{path}: not a {_FORMAT} file")
        weights = [np.array(npz[f"weights/{i}"], dtype=np.float32) for i in range(meta["num_weights"])]
        state = _decode_state(meta["strategy_state"], npz)
    return Checkpoint(
        server_round=int(meta["server_round"]),
        weights=weights,
        strategy_state=state,
        rng_state=meta["rng_state"],
        strategy=str(meta["strategy"]),
    )
