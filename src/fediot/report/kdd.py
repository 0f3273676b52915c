"""The report of the ``kdd-gateways`` experiment: our figures beside the seed paper's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fediot.report.tables import fmt, fmt_pm, get_path, markdown_table, seeds_note

__all__ = ["SEED_PAPER_ACCURACY", "kdd_gateways_markdown", "kdd_gateways_rows"]

SEED_PAPER_ACCURACY = {"edge1": 0.56, "edge2": 0.77, "full": 0.96, "fl": 0.96}
"""Accuracies reported by the seed paper (Table III); it reports no macro-F1 and no per-split figures."""


def kdd_gateways_rows(results: dict[str, Any]) -> list[list[str]]:
    """Rows of the headline table: model, paper accuracy, ours on each split (accuracy / macro-F1)."""
    runs, std = results["runs"], results.get("runs_std") or {}
    rows = []
    for model in ("edge1", "edge2", "full", "fl"):
        row = [model, fmt(SEED_PAPER_ACCURACY[model], 2)]
        for split in ("gateway1", "gateway2", "pooled"):
            for metric in ("accuracy", "macro_f1"):
                row.append(
                    fmt_pm(get_path(runs, model, split, metric), get_path(std, model, split, metric), 3)
                )
        rows.append(row)
    return rows


def kdd_gateways_markdown(results: dict[str, Any], out: Path | None = None) -> str:
    """Return ``report.md`` for a ``kdd-gateways`` results dict (``out`` is unused: no plots)."""
    del out
    runs, std = results["runs"], results.get("runs_std") or {}
    cfg = results["config"]
    seeds = results["seeds"]
    parts = [
        "# kdd-gateways: the seed paper's experiment, reproduced and reported honestly",
        "",
        f"Protocol: first {cfg['nrows']:,} rows of KDD Cup 99 `kddcup.data_10_percent`; the 34 continuous "
        "features minus the constant `num_outbound_cmds` (33); labels present, label-encoded; contiguous "
        f"halves -> gateway 1 / gateway 2; each split "
        f"{1 - cfg['test_fraction']:.0%}/{cfg['test_fraction']:.0%} "
        f"train/test (seeded shuffle); min-max scaling fitted on the training rows the model may see; "
        f"MLP {len(results['feature_names'])}-{'-'.join(map(str, cfg['hidden']))}-"
        f"{len(results['label_names'])}, "
        f"{cfg['optimizer'].upper()} lr {cfg['lr']}, batch {cfg['batch_size']}, {cfg['epochs']} epochs. "
        f"`fl` = {cfg['strategy']} over the 2 gateways, {cfg['rounds']} rounds x {cfg['local_epochs']} local "
        "epoch(s).",
        "",
        seeds_note(seeds),
        "",
        "## Accuracy and macro-F1 per test split",
        "",
        "The paper reports one accuracy per model and no macro-F1. Accuracy is dominated by the majority "
        "classes (normal, smurf, neptune); macro-F1 weighs the 20 classes equally.",
        "",
        markdown_table(
            [
                "model",
                "paper acc.",
                "gw1 acc.",
                "gw1 macro-F1",
                "gw2 acc.",
                "gw2 macro-F1",
                "pooled acc.",
                "pooled macro-F1",
            ],
            kdd_gateways_rows(results),
        ),
        "",
    ]
    majority = results.get("majority_baseline")
    if majority:
        parts += [
            "Majority baselines (what predicting one class gives): "
            + ", ".join(f"{k} {fmt(v, 3)}" for k, v in majority.items()),
            "",
        ]
    if get_path(runs, "fl", "corrected_binary") is not None:
        rows = []
        for model in ("edge1", "edge2", "full", "fl"):
            b = runs[model]["corrected_binary"]
            s = get_path(std, model, "corrected_binary") or {}
            cats = b.get("tpr_by_category", {})
            rows.append(
                [model]
                + [
                    fmt_pm(b.get(m), s.get(m), 3)
                    for m in ("accuracy", "tpr", "fpr", "f1", "balanced_accuracy")
                ]
                + [fmt(cats.get(c), 3) for c in ("dos", "probe", "r2l", "u2r")]
                + [fmt(b.get("tpr_unseen_attack_types"), 3)]
            )
        parts += [
            "## Binary normal-vs-attack on the standard labelled test set (`corrected`, 311,029 rows)",
            "",
            "Any predicted attack class counts as 'attack'. `corrected` holds attack types never seen in "
            "training (TPR on those rows in the last column).",
            "",
            markdown_table(
                [
                    "model",
                    "accuracy",
                    "TPR",
                    "FPR",
                    "F1",
                    "bal. acc.",
                    "TPR dos",
                    "TPR probe",
                    "TPR r2l",
                    "TPR u2r",
                    "TPR unseen types",
                ],
                rows,
            ),
            "",
        ]
    pooled = get_path(runs, "fl", "pooled", "per_class")
    if isinstance(pooled, dict):
        rows = []
        for label, m in pooled.items():
            rows.append(
                [label, str(m.get("support", "-"))]
                + [
                    fmt(get_path(runs, model, "pooled", "per_class", label, "recall"), 3)
                    for model in ("edge1", "edge2", "full", "fl")
                ]
            )
        parts += [
            "## Per-class recall on the pooled test split",
            "",
            markdown_table(["class", "support", "edge1", "edge2", "full", "fl"], rows),
            "",
        ]
    wall = ", ".join(
        f"{m} {fmt(get_path(runs, m, 'wall_seconds'), 1)} s" for m in ("edge1", "edge2", "full", "fl")
    )
    parts += [f"Wall time per model (training + evaluation): {wall}.", ""]
    return "\n".join(parts)
