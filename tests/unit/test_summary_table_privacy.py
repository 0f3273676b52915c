"""The console summary of the privacy experiment: one row per grid cell, not one row named "cells"."""

from __future__ import annotations

from fediot.report.summary_table import summary_rows


def _cell(tpr: float, fpr: float) -> dict[str, object]:
    return {"macro": {"tpr": tpr, "fpr": fpr, "f1": 0.5, "balanced_accuracy": 0.6},
            "window": {"macro": {"tpr": tpr / 2, "fpr": fpr / 2}}}


def test_privacy_summary_has_one_row_per_cell() -> None:
    results = {"experiment": "privacy", "seeds": [0], "runs_std": None,
               "runs": {"cells": {"no DP": _cell(0.46, 0.11), "eps=8 adaptive": _cell(0.57, 0.16)}}}
    headers, rows = summary_rows(results)
    assert headers[0] == "variant"
    assert [r[0] for r in rows] == ["no DP", "eps=8 adaptive"]
    assert rows[1][1:3] == ["0.5700", "0.1600"]
    assert rows[0][-1] == "0.0550"
