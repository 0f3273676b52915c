"""The compact console table printed after a run (the CLI renders it with Rich)."""

from __future__ import annotations

from typing import Any

from fediot.report.tables import fmt_pm, get_path

__all__ = ["summary_rows"]


def summary_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Return ``(headers, rows)`` summarising ``results`` for the console."""
    runs, std = results["runs"], results.get("runs_std") or {}
    keys: tuple[str, ...]
    if results["experiment"] == "kdd-gateways":
        headers = [
            "model",
            "gw1 acc",
            "gw2 acc",
            "pooled acc",
            "pooled macro-F1",
            "corrected F1",
            "corrected FPR",
        ]
        rows = []
        for model in ("edge1", "edge2", "full", "fl"):
            row = [model]
            for keys in (
                ("gateway1", "accuracy"),
                ("gateway2", "accuracy"),
                ("pooled", "accuracy"),
                ("pooled", "macro_f1"),
                ("corrected_binary", "f1"),
                ("corrected_binary", "fpr"),
            ):
                row.append(fmt_pm(get_path(runs, model, *keys), get_path(std, model, *keys), 3))
            rows.append(row)
        return headers, rows
    if runs and all(isinstance(e, dict) and "clean" in e for e in runs.values()):  # robustness
        from fediot.report.robustness import robustness_summary_rows

        return robustness_summary_rows(results)
    if results["experiment"] == "privacy" and isinstance(runs.get("cells"), dict):  # one row per grid cell
        runs, std = runs["cells"], (std.get("cells") or {}) if isinstance(std, dict) else {}
    headers = ["variant", "macro TPR", "macro FPR", "macro F1", "macro bal. acc.", "window TPR", "window FPR"]
    rows = []
    for variant in runs:
        row = [variant]
        for keys in (
            ("macro", "tpr"),
            ("macro", "fpr"),
            ("macro", "f1"),
            ("macro", "balanced_accuracy"),
            ("window", "macro", "tpr"),
            ("window", "macro", "fpr"),
        ):
            row.append(fmt_pm(get_path(runs, variant, *keys), get_path(std, variant, *keys), 4))
        rows.append(row)
    return headers, rows
