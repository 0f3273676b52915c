"""Plain Markdown tables and number formatting shared by every report."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["STD_NOTE", "fmt", "fmt_pm", "get_path", "markdown_table", "seeds_note"]

STD_NOTE = "sample std (ddof=1)"
"""What ``±`` means in every report: the sample standard deviation over seeds."""


def get_path(tree: Any, *keys: str) -> Any:
    """Return ``tree[k1][k2]...``, or None where a key is missing (results of older runs, absent variants).

    Examples
    --------
    >>> get_path({"a": {"b": 1}}, "a", "b"), get_path({"a": {}}, "a", "b")
    (1, None)
    """
    for k in keys:
        if not isinstance(tree, dict) or k not in tree:
            return None
        tree = tree[k]
    return tree


def fmt(value: Any, digits: int = 4) -> str:
    """Format a number for a table (``-`` for missing/NaN).

    Examples
    --------
    >>> fmt(0.123456), fmt(None), fmt(float("nan")), fmt(12)
    ('0.1235', '-', '-', '12')
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def seeds_note(seeds: Sequence[int]) -> str:
    """Say which seeds a report's numbers come from and, for several, what ``±`` means.

    Examples
    --------
    >>> seeds_note([0])
    'Seed: 0.'
    >>> seeds_note([0, 1, 2])
    'Seeds: 0, 1, 2; numbers are mean ± sample std (ddof=1) over 3 seeds.'
    """
    if len(seeds) == 1:
        return f"Seed: {seeds[0]}."
    return f"Seeds: {', '.join(map(str, seeds))}; numbers are mean ± {STD_NOTE} over {len(seeds)} seeds."


def fmt_pm(mean: Any, std: Any, digits: int = 4) -> str:
    """Format ``mean ± std`` (just the mean when std is missing); std is the sample std over seeds.

    Examples
    --------
    >>> fmt_pm(0.5, 0.01), fmt_pm(0.5, None)
    ('0.5000 ± 0.0100', '0.5000')
    """
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return fmt(mean, digits)
    return f"{fmt(mean, digits)} ± {fmt(std, digits)}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return a GitHub-flavoured Markdown table.

    Examples
    --------
    >>> print(markdown_table(["a", "b"], [["1", "2"]]))
    | a | b |
    |---|---|
    | 1 | 2 |
    """
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
