"""Detection and classification metrics as sufficient statistics (counts), finalised once.

Counts from several clients (or batches) are summed, never their metrics averaged, so a pooled metric is
exact. A metric whose denominator is 0 is NaN (e.g. the FPR of a client with no benign rows); NaN is not
valid JSON, so :meth:`BinaryCounts.as_dict` with ``nan_as_none=True`` writes it as ``None`` (JSON ``null``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "BINARY_METRICS",
    "BinaryCounts",
    "classification_report",
    "confusion_matrix",
    "counts_by_group",
    "macro_metrics",
    "pool_counts",
]

BINARY_METRICS = ("tpr", "fpr", "tnr", "precision", "f1", "balanced_accuracy", "accuracy")
"""Names of the metrics :meth:`BinaryCounts.metrics` finalises."""


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else float("nan")


@dataclass(frozen=True, slots=True)
class BinaryCounts:
    """Confusion counts of a binary detector (positive = attack = 1); add counts to merge clients.

    Metrics are finalised from the counts; a metric whose denominator is 0 is NaN (e.g. FPR of a client
    with no benign rows). Balanced accuracy is NaN unless both classes are present.

    Examples
    --------
    >>> c = BinaryCounts.from_predictions([1, 1, 0, 0], [1, 0, 1, 0])
    >>> c.tp, c.fn, c.fp, c.tn, c.tpr, c.fpr
    (1, 1, 1, 1, 0.5, 0.5)
    >>> (c + c).tp
    2
    """

    tp: int
    fp: int
    tn: int
    fn: int

    def __post_init__(self) -> None:
        if min(self.tp, self.fp, self.tn, self.fn) < 0:
            raise ValueError(f"counts must be >= 0, got {self}")

    @classmethod
    def zero(cls) -> BinaryCounts:
        """Return empty counts (the identity of ``+``)."""
        return cls(0, 0, 0, 0)

    @classmethod
    def from_predictions(cls, y_true: ArrayLike, y_pred: ArrayLike) -> BinaryCounts:
        """Count hits of ``y_pred`` against ``y_true``, both of shape (n_samples,); truthy = attack."""
        t = np.asarray(y_true).astype(bool)
        p = np.asarray(y_pred).astype(bool)
        if t.shape != p.shape:
            raise ValueError(f"y_true {t.shape} and y_pred {p.shape} differ in shape")
        return cls(
            tp=int(np.sum(t & p)), fp=int(np.sum(~t & p)), tn=int(np.sum(~t & ~p)), fn=int(np.sum(t & ~p))
        )

    def __add__(self, other: BinaryCounts) -> BinaryCounts:
        return BinaryCounts(self.tp + other.tp, self.fp + other.fp, self.tn + other.tn, self.fn + other.fn)

    @property
    def total(self) -> int:
        """All rows counted."""
        return self.tp + self.fp + self.tn + self.fn

    @property
    def tpr(self) -> float:
        """Recall on attacks (detection rate), ``tp / (tp + fn)``."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def fpr(self) -> float:
        """Share of benign rows flagged, ``fp / (fp + tn)``."""
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def tnr(self) -> float:
        """Specificity, ``tn / (tn + fp)``."""
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def precision(self) -> float:
        """``tp / (tp + fp)``."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def f1(self) -> float:
        """``2 tp / (2 tp + fp + fn)`` (NaN only when there are no attacks and no alerts)."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def balanced_accuracy(self) -> float:
        """Mean of TPR and TNR (NaN unless both classes are present)."""
        return (self.tpr + self.tnr) / 2

    @property
    def accuracy(self) -> float:
        """``(tp + tn) / total``."""
        return _ratio(self.tp + self.tn, self.total)

    def metrics(self) -> dict[str, float]:
        """Return every metric of :data:`BINARY_METRICS` (NaN where undefined)."""
        return {m: float(getattr(self, m)) for m in BINARY_METRICS}

    def as_dict(self, *, nan_as_none: bool = False) -> dict[str, float | int | None]:
        """Return the counts and the finalised metrics; ``nan_as_none=True`` gives JSON-ready ``None``."""
        out: dict[str, float | int | None] = {"tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn}
        for name, value in self.metrics().items():
            out[name] = None if nan_as_none and math.isnan(value) else value
        return out


def pool_counts(counts: Iterable[BinaryCounts]) -> BinaryCounts:
    """Sum counts (of clients, batches, windows): finalise the result for the pooled metric."""
    return sum(counts, BinaryCounts.zero())


def macro_metrics(counts: Iterable[BinaryCounts]) -> dict[str, float]:
    """Unweighted mean over clients of each client's metrics, skipping clients where it is NaN.

    A metric undefined for every client is NaN. Contrast :func:`pool_counts` (sum, then finalise).

    Examples
    --------
    >>> a, b = BinaryCounts(tp=9, fp=0, tn=0, fn=1), BinaryCounts(tp=1, fp=1, tn=1, fn=1)
    >>> macro_metrics([a, b])["tpr"], macro_metrics([a, b])["fpr"]
    (0.7, 0.5)
    """
    per_client = [c.metrics() for c in counts]
    out = {}
    for m in BINARY_METRICS:
        values = [d[m] for d in per_client if not math.isnan(d[m])]
        out[m] = float(np.mean(values)) if values else float("nan")
    return out


def counts_by_group(y_true: ArrayLike, y_pred: ArrayLike, groups: ArrayLike) -> dict[str, BinaryCounts]:
    """Return one :class:`BinaryCounts` per distinct value of ``groups`` (e.g. the attack type of each row).

    The TPR of an attack type is ``counts_by_group(...)[attack].tpr``; the benign group's FPR is its
    ``fpr``. Counts of the same group from several clients add up to the pooled counts.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        Truth and prediction, truthy = attack.
    groups : array-like of shape (n_samples,)
        Group label of each row (converted to ``str`` for the keys).

    Examples
    --------
    >>> g = counts_by_group([1, 1, 1, 0], [1, 0, 1, 0], ["scan", "udp", "udp", "benign"])
    >>> g["udp"].tpr, g["scan"].tpr, g["benign"].fpr
    (0.5, 1.0, 0.0)
    """
    t = np.asarray(y_true).astype(bool)
    p = np.asarray(y_pred).astype(bool)
    g = np.asarray(groups)
    if not t.shape == p.shape == g.shape:
        raise ValueError(f"y_true {t.shape}, y_pred {p.shape} and groups {g.shape} differ in shape")
    return {str(k): BinaryCounts.from_predictions(t[g == k], p[g == k]) for k in np.unique(g).tolist()}


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> NDArray[np.int64]:
    """Return the ``(num_classes, num_classes)`` int64 count matrix (rows = truth, columns = prediction).

    Matrices of disjoint row sets add up to the matrix of their union (a sufficient statistic).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        Integer labels in ``[0, num_classes)``.
    num_classes : int

    Examples
    --------
    >>> confusion_matrix([0, 1, 1], [0, 1, 0], 2).tolist()
    [[1, 0], [1, 1]]
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} differ in shape")
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes})")
    flat = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64, copy=False)


def classification_report(cm: ArrayLike, label_names: Sequence[str]) -> dict[str, Any]:
    """Finalise a confusion matrix: accuracy, macro-F1, balanced accuracy, per-class precision/recall/F1.

    Classes absent from both the truth and the predictions (a zero row and column) are left out of
    macro-F1: it equals ``sklearn.metrics.f1_score(y_true, y_pred, average="macro")`` with sklearn's
    default ``labels`` (the union of labels in ``y_true`` and ``y_pred``). A class present only in the
    truth or only in the predictions has F1 = 0 and counts. Balanced accuracy is the mean recall over the
    classes present in the truth (``sklearn.metrics.balanced_accuracy_score``). Per-class values with a
    zero denominator are NaN (recall of a class with no true row; precision of a class never predicted,
    sklearn's ``zero_division=np.nan``); per-class F1 is NaN only for a class absent from both.

    Parameters
    ----------
    cm : array-like of shape (n_classes, n_classes)
        Counts, rows = truth, columns = prediction (e.g. summed :func:`confusion_matrix` of clients).
    label_names : sequence of str of length n_classes

    Returns
    -------
    dict
        ``accuracy``, ``macro_f1``, ``balanced_accuracy``, ``num_rows``, ``per_class`` (name ->
        ``support``, ``recall``, ``precision``, ``f1``) and ``confusion_matrix`` (nested lists).

    Examples
    --------
    >>> r = classification_report(confusion_matrix([0, 0, 1, 1], [0, 0, 1, 0], 3), ["a", "b", "c"])
    >>> r["accuracy"], round(r["macro_f1"], 4), r["balanced_accuracy"], r["per_class"]["b"]["recall"]
    (0.75, 0.7333, 0.75, 0.5)
    """
    cm = np.asarray(cm, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(label_names):
        raise ValueError(f"cm must be square with {len(label_names)} rows (one per label), got {cm.shape}")
    total = int(cm.sum())
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        f1_den = support + predicted
        f1 = np.where(f1_den > 0, 2 * tp / f1_den, np.nan)
    present = f1_den > 0
    per_class = {
        name: {
            "support": int(support[i]),
            "recall": float(recall[i]),
            "precision": float(precision[i]),
            "f1": float(f1[i]),
        }
        for i, name in enumerate(label_names)
    }
    return {
        "accuracy": _ratio(float(tp.sum()), total),
        "macro_f1": float(np.mean(f1[present])) if present.any() else float("nan"),
        "balanced_accuracy": float(np.mean(recall[support > 0])) if (support > 0).any() else float("nan"),
        "num_rows": total,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
    }
