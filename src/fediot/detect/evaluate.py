"""Per-client evaluation of anomaly scores as confusion counts, summarised macro (over clients) and pooled."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fediot.data.anomaly import TestSet
from fediot.detect.metrics import BinaryCounts
from fediot.detect.window import window_vote

__all__ = ["ClientEvaluation", "evaluate_scores", "summarize_evaluations"]

METRICS = ("tpr", "fpr", "precision", "f1", "balanced_accuracy", "accuracy")


@dataclass(frozen=True, slots=True)
class ClientEvaluation:
    """Confusion counts of one client's test set, instance level and (``window > 1``) window level."""

    counts: BinaryCounts
    by_attack: dict[str, BinaryCounts]
    window_counts: BinaryCounts | None = None
    window_by_attack: dict[str, BinaryCounts] | None = None


def _by_type(
    y: NDArray[np.int8], flags: NDArray[np.bool_], types: NDArray[np.str_]
) -> dict[str, BinaryCounts]:
    return {
        str(t): BinaryCounts.from_predictions(y[types == t], flags[types == t])
        for t in np.unique(types).tolist()
    }


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
    by_attack = _by_type(test.y, flags, test.attack_type)
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
        _by_type(test.y, voted, test.attack_type),
    )


def _metrics(c: BinaryCounts) -> dict[str, float]:
    return {m: float(getattr(c, m)) for m in METRICS}


def _macro(per_client: list[dict[str, float]]) -> dict[str, float]:
    out = {}
    for m in METRICS:
        values = [d[m] for d in per_client if not math.isnan(d[m])]
        out[m] = float(np.mean(values)) if values else float("nan")
    return out


def _client_entry(c: BinaryCounts) -> dict[str, Any]:
    return {**_metrics(c), "tp": c.tp, "fp": c.fp, "tn": c.tn, "fn": c.fn}


def _summary(
    counts: Mapping[str, BinaryCounts], by_attack: Mapping[str, dict[str, BinaryCounts]]
) -> dict[str, Any]:
    pooled = sum(counts.values(), BinaryCounts(0, 0, 0, 0))
    attack_types = sorted({t for d in by_attack.values() for t in d})
    pooled_attack = {}
    for t in attack_types:
        total = sum((d[t] for d in by_attack.values() if t in d), BinaryCounts(0, 0, 0, 0))
        rate = total.fpr if t == "benign" else total.tpr
        pooled_attack[t] = {
            "rows": total.tp + total.fp + total.tn + total.fn,
            ("fpr" if t == "benign" else "tpr"): float(rate),
        }
    return {
        "macro": _macro([_metrics(c) for c in counts.values()]),
        "pooled": {**_metrics(pooled), "tp": pooled.tp, "fp": pooled.fp, "tn": pooled.tn, "fn": pooled.fn},
        "clients": {cid: _client_entry(c) for cid, c in counts.items()},
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
