"""Mean and sample standard deviation (ddof=1) over repeated runs, leaf by leaf, keeping the structure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["mean_std"]


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def mean_std(runs: Sequence[Any]) -> tuple[Any, Any]:
    """Return ``(mean, std)`` trees of equally shaped result trees; std is the sample std (ddof=1).

    Each numeric leaf's mean and sample standard deviation ``sqrt(sum((v - mean)**2) / (n - 1))`` are
    taken over the runs where it is defined: NaN and None values are left out, so ``n`` may be smaller
    than the number of runs. A leaf defined in no run has NaN mean and std; one defined in a single run
    has that value as mean and NaN std (one value has no sample spread). Non-numeric leaves are taken
    from the first run; their std is None.

    Examples
    --------
    >>> mean_std([{"a": 1.0, "b": [1, 4]}, {"a": 2.0, "b": [2, 4]}, {"a": 3.0, "b": [3, 4]}])
    ({'a': 2.0, 'b': [2.0, 4.0]}, {'a': 1.0, 'b': [1.0, 0.0]})
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
        if len(values) == 1:
            return m, float("nan")
        s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
        return m, s
    return first, None
