"""Atomic JSON and text writers for results and reports (see :func:`fediot.fileio.atomic_write`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from fediot.fileio import atomic_write

__all__ = ["atomic_write", "to_jsonable", "write_json", "write_text"]


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and non-finite floats to JSON-safe values (NaN -> None).

    Examples
    --------
    >>> import numpy as np
    >>> to_jsonable({"a": np.float32(0.5), "b": [np.int64(2), float("nan")], "c": np.arange(2)})
    {'a': 0.5, 'b': [2, None], 'c': [0, 1]}
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj


def write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (NaN/inf become null)."""
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=False, allow_nan=False) + "\n"

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    return atomic_write(path, write)


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` atomically (UTF-8)."""

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    return atomic_write(path, write)
