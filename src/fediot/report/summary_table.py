"""The compact console table printed after a run (the CLI renders it with Rich)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fediot.report.tables import fmt_pm, get_path

__all__ = ["summary_rows"]

_KDD_COLUMNS: dict[str, tuple[str, ...]] = {
    "gw1 acc": ("gateway1", "accuracy"),
    "gw2 acc": ("gateway2", "accuracy"),
    "pooled acc": ("pooled", "accuracy"),
    "pooled macro-F1": ("pooled", "macro_f1"),
    "corrected F1": ("corrected_binary", "f1"),
    "corrected FPR": ("corrected_binary", "fpr"),
}
_ANOMALY_COLUMNS: dict[str, tuple[str, ...]] = {
    "macro TPR": ("macro", "tpr"),
    "macro FPR": ("macro", "fpr"),
    "macro F1": ("macro", "f1"),
    "macro bal. acc.": ("macro", "balanced_accuracy"),
    "window TPR": ("window", "macro", "tpr"),
    "window FPR": ("window", "macro", "fpr"),
}


def _table(
    first: str,
    names: Iterable[str],
    columns: dict[str, tuple[str, ...]],
    runs: dict[str, Any],
    std: dict[str, Any],
    digits: int,
) -> tuple[list[str], list[list[str]]]:
    """One row per name: ``mean ± std`` of each column's result path."""
    rows = [
        [name, *(fmt_pm(get_path(runs, name, *k), get_path(std, name, *k), digits) for k in columns.values())]
        for name in names
    ]
    return [first, *columns], rows


def summary_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Return ``(headers, rows)`` summarising ``results`` for the console."""
    runs, std = results["runs"], results.get("runs_std") or {}
    if results["experiment"] == "kdd-gateways":
        return _table("model", ("edge1", "edge2", "full", "fl"), _KDD_COLUMNS, runs, std, 3)
    if runs and all(isinstance(e, dict) and "clean" in e for e in runs.values()):  # robustness
        from fediot.report.robustness import robustness_summary_rows

        return robustness_summary_rows(results)
    if results["experiment"] == "privacy" and isinstance(runs.get("cells"), dict):  # one row per grid cell
        runs, std = runs["cells"], (std.get("cells") or {}) if isinstance(std, dict) else {}
    return _table("variant", runs, _ANOMALY_COLUMNS, runs, std, 4)
