"""Mean and standard deviation over repeated runs, leaf by leaf, keeping the results' structure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["mean_std"]


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def mean_std(runs: Sequence[Any]) -> tuple[Any, Any]:
    """Return ``(mean, std)`` trees of equally shaped result trees (population std, NaN-aware).

    Non-numeric leaves are taken from the first run; their std is None.

    Examples
    --------
    >>> mean_std([{"a": 1.0, "b": [1, 3]}, {"a": 3.0, "b": [3, 5]}])
    ({'a': 2.0, 'b': [2.0, 4.0]}, {'a': 1.0, 'b': [1.0, 1.0]})
    """
    first = runs[0]
    if isinstance(first, dict):
        keys = [k for k in first if all(isinstance(r, dict) and k in r for r in runs)]
        pairs = {k: mean_std([r[k] for r in runs]) for k in keys}
        return {k: p[0] for k, p in pairs.items()}, {k: p[1] for k, p in pairs.items()}
    if isinstance(first, list) and all(isinstance(r, list) and len(r) == len(first) for r in runs):
        pairs_l = [mean_std([r[i] for r in runs]) for i in range(len(first))]
        return [p[0] for p in pairs_l], [p[1] for p in pairs_l]
    if all(_is_number(r) or r is None for r in runs):
        values = [float(r) for r in runs if r is not None and not math.isnan(float(r))]
        if not values:
            return float("nan"), float("nan")
        m = sum(values) / len(values)
        s = math.sqrt(sum((v - m) ** 2 for v in values) / len(values))
        return m, s
    return first, None
