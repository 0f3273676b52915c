"""Per-client evaluation of anomaly scores as confusion counts, summarised macro (over clients) and pooled.

Every number is computed by :mod:`fediot.detect.metrics`: counts by :class:`BinaryCounts` and
:func:`counts_by_group`, macro means by :func:`macro_metrics`, pooled counts by :func:`pool_counts`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fediot.data.anomaly import TestSet
from fediot.detect.metrics import BinaryCounts, counts_by_group, macro_metrics, pool_counts
from fediot.detect.window import window_vote

__all__ = ["ClientEvaluation", "evaluate_scores", "summarize_evaluations"]

METRICS = ("tpr", "fpr", "precision", "f1", "balanced_accuracy", "accuracy")
"""The metrics written per client, macro and pooled (a subset of ``BINARY_METRICS``, in its order)."""


@dataclass(frozen=True, slots=True)
class ClientEvaluation:
    """Confusion counts of one client's test set, instance level and (``window > 1``) window level."""

    counts: BinaryCounts
    by_attack: dict[str, BinaryCounts]
    window_counts: BinaryCounts | None = None
    window_by_attack: dict[str, BinaryCounts] | None = None


def evaluate_scores(
    scores: NDArray[np.float64], threshold: float, test: TestSet, *, window: int = 1
) -> ClientEvaluation:
    """Flag rows whose anomaly score exceeds ``threshold`` and count hits against ``test``'s labels.

    Parameters
    ----------
    scores : ndarray of shape (n_samples,)
        Anomaly scores of ``test.x`` (higher = more anomalous).
    threshold : float
        A row is flagged when ``score > threshold``.
    test : TestSet
    window : int
        If > 1, also count after a majority vote over ``window`` consecutive rows within each segment.
    """
    if scores.shape[0] != test.y.shape[0]:
        raise ValueError(f"{scores.shape[0]} scores for {test.y.shape[0]} test rows")
    flags = scores > threshold
    counts = BinaryCounts.from_predictions(test.y, flags)
    by_attack = counts_by_group(test.y, flags, test.attack_type)
    if window <= 1:
        return ClientEvaluation(counts, by_attack)
    voted = np.zeros_like(flags)
    for seg in np.unique(test.segment):
        mask = test.segment == seg
        voted[mask] = window_vote(flags[mask], window)
    return ClientEvaluation(
        counts,
        by_attack,
        BinaryCounts.from_predictions(test.y, voted),
        counts_by_group(test.y, voted, test.attack_type),
    )


def _with_counts(c: BinaryCounts) -> dict[str, Any]:
    metrics = c.metrics()
    return {**{m: metrics[m] for m in METRICS}, "tp": c.tp, "fp": c.fp, "tn": c.tn, "fn": c.fn}


def _summary(
    counts: Mapping[str, BinaryCounts], by_attack: Mapping[str, dict[str, BinaryCounts]]
) -> dict[str, Any]:
    macro = macro_metrics(counts.values())
    pooled_attack: dict[str, dict[str, float | int]] = {}
    for t in sorted({t for d in by_attack.values() for t in d}):
        total = pool_counts(d[t] for d in by_attack.values() if t in d)
        rate = total.fpr if t == "benign" else total.tpr
        pooled_attack[t] = {"rows": total.total, ("fpr" if t == "benign" else "tpr"): float(rate)}
    return {
        "macro": {m: macro[m] for m in METRICS},
        "pooled": _with_counts(pool_counts(counts.values())),
        "clients": {cid: _with_counts(c) for cid, c in counts.items()},
        "by_attack": pooled_attack,
    }


def summarize_evaluations(evals: Mapping[str, ClientEvaluation], *, window: int = 1) -> dict[str, Any]:
    """Summarise client evaluations: macro (unweighted mean over clients), pooled (summed counts), clients.

    Macro means skip clients where a metric is undefined (e.g. FPR with no benign test rows). ``by_attack``
    gives the pooled TPR per attack type (FPR for ``benign``). With ``window > 1`` the same under ``window``.
    """
    out = _summary({k: e.counts for k, e in evals.items()}, {k: e.by_attack for k, e in evals.items()})
    if window > 1:
        wc = {k: e.window_counts for k, e in evals.items() if e.window_counts is not None}
        wb = {k: e.window_by_attack for k, e in evals.items() if e.window_by_attack is not None}
        out["window"] = {"size": window, **_summary(wc, wb)}
    return out
