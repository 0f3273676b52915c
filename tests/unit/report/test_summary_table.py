"""The console summary: headers and ``mean ± std`` cells from a results dict."""

from __future__ import annotations

from fediot.report.summary_table import summary_rows


def test_anomaly_summary_rows_follow_the_runs_and_their_std() -> None:
    metrics = {"macro": {"tpr": 0.5, "fpr": 0.01, "f1": 0.6, "balanced_accuracy": 0.7}}
    metrics["window"] = {"macro": {"tpr": 0.9, "fpr": 0.0}}  # type: ignore[dict-item]
    results = {"experiment": "fl-vs-centralized", "runs": {"fl": metrics, "local": metrics}}
    headers, rows = summary_rows(results)
    assert headers == [
        "variant", "macro TPR", "macro FPR", "macro F1", "macro bal. acc.", "window TPR", "window FPR"
    ]  # fmt: skip
    assert [r[0] for r in rows] == ["fl", "local"]
    assert rows[0][1] == "0.5000"
    assert rows[0][5] == "0.9000"
    results["runs_std"] = {"fl": {"macro": {"tpr": 0.25}}}
    _, rows = summary_rows(results)
    assert rows[0][1] != "0.5000"
    assert "0.2500" in rows[0][1]


def test_kdd_summary_rows_have_one_row_per_model() -> None:
    entry = {
        "gateway1": {"accuracy": 0.9},
        "gateway2": {"accuracy": 0.8},
        "pooled": {"accuracy": 0.85, "macro_f1": 0.5},
        "corrected_binary": {"f1": 0.7, "fpr": 0.1},
    }
    runs = {m: entry for m in ("edge1", "edge2", "full", "fl")}
    headers, rows = summary_rows({"experiment": "kdd-gateways", "runs": runs})
    assert headers[0] == "model"
    assert len(headers) == 7
    assert [r[0] for r in rows] == ["edge1", "edge2", "full", "fl"]
    assert rows[3][1:] == ["0.900", "0.800", "0.850", "0.500", "0.700", "0.100"]
