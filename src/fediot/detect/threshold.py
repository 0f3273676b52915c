"""Anomaly thresholds on reconstruction errors: local, pooled, and federated from per-client summaries.

Two rules (:class:`ThresholdRule`):

- ``mean_std``: N-BaIoT's ``mean + k * std`` of the benign "opt" errors (``k = 1`` in the paper), with the
  sample std (ddof = 1, :data:`THRESHOLD_DDOF`). Federated from per-client :class:`SufficientStats` of the
  errors (Chan's parallel merge): equal to the pooled value up to rounding.
- ``quantile``: the ``q`` quantile of the opt errors, defined as the order statistic ``x_(ceil(q n))``
  (numpy's ``method="inverted_cdf"``), so flagging ``score > threshold`` flags at most ``(1 - q) n`` opt
  rows. Federated from per-client :class:`ErrorHistogram` counts over fixed log-spaced bins: the result is
  never below the exact pooled quantile and at most ``10 ** (1 / bins_per_decade)`` times it (2.33 % for
  100 bins per decade) for errors in ``[10 ** lo_exp, 10 ** hi_exp)``; below that range it is at most
  ``10 ** lo_exp`` above; above it, it is the maximum error (still never below the exact value).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fediot.data.scaling import SufficientStats
from fediot.errors import DataError

__all__ = [
    "THRESHOLD_DDOF",
    "ErrorHistogram",
    "ErrorSummary",
    "ThresholdRule",
    "error_summary",
    "fit_threshold",
    "local_thresholds",
    "threshold_from_errors",
    "threshold_from_histogram",
    "threshold_from_stats",
    "threshold_from_summaries",
    "threshold_quantile",
]

THRESHOLD_DDOF = 1
"""The std in ``mean + k * std`` is the sample std (ddof = 1), as in N-BaIoT's reference code."""


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """How a threshold is set from benign reconstruction errors.

    Parameters
    ----------
    kind : {"mean_std", "quantile"}
        ``mean + k * std`` (sample std) or the ``q`` quantile.
    k : float
        Multiplier of the std (N-BaIoT: 1).
    q : float
        Quantile level in (0, 1) (a target FPR of about ``1 - q`` on benign rows).
    bins_per_decade : int
        Resolution of the federated quantile's log-spaced histogram.
    lo_exp, hi_exp : int
        The histogram covers errors in ``[10 ** lo_exp, 10 ** hi_exp)`` (plus an under- and overflow bin).
    """

    kind: Literal["mean_std", "quantile"] = "mean_std"
    k: float = 1.0
    q: float = 0.99
    bins_per_decade: int = 100
    lo_exp: int = -12
    hi_exp: int = 6

    def __post_init__(self) -> None:
        if self.kind not in ("mean_std", "quantile"):
            raise ValueError(f"kind must be 'mean_std' or 'quantile', got {self.kind!r}")
        if not math.isfinite(self.k):
            raise ValueError(f"k must be finite, got {self.k}")
        if not 0.0 < self.q < 1.0:
            raise ValueError(f"q must be in (0, 1), got {self.q}")
        if self.bins_per_decade < 1 or self.lo_exp >= self.hi_exp:
            raise ValueError(f"invalid histogram range: {self}")

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as plain values."""
        return {
            "kind": self.kind, "k": self.k, "q": self.q, "bins_per_decade": self.bins_per_decade,
            "lo_exp": self.lo_exp, "hi_exp": self.hi_exp,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ThresholdRule:
        """Inverse of :meth:`to_dict`."""
        return cls(
            kind=d["kind"], k=float(d["k"]), q=float(d["q"]), bins_per_decade=int(d["bins_per_decade"]),
            lo_exp=int(d["lo_exp"]), hi_exp=int(d["hi_exp"]),
        )  # fmt: skip


def _errors(errors: ArrayLike) -> NDArray[np.float64]:
    e = np.asarray(errors, dtype=np.float64).reshape(-1)
    bad = ~np.isfinite(e)
    if bad.any():
        raise DataError(f"reconstruction errors must be finite; index {int(np.argmax(bad))} is not")
    return e


def threshold_from_stats(stats: SufficientStats, *, k: float = 1.0) -> float:
    """Return ``mean + k * std`` (sample std) of reconstruction errors from their sufficient statistics.

    Parameters
    ----------
    stats : SufficientStats
        Statistics of one column (the errors), possibly merged over clients: equal to the pooled rule.
    k : float
        N-BaIoT uses 1.
    """
    if stats.num_features != 1:
        raise DataError(f"threshold statistics must have one column (the errors), got {stats.num_features}")
    if stats.count < 2:
        raise DataError(f"a mean + k*std threshold needs >= 2 error values, got {stats.count}")
    return float(stats.mean[0] + k * np.sqrt(stats.var(ddof=THRESHOLD_DDOF)[0]))


def threshold_from_errors(errors: ArrayLike, *, k: float = 1.0) -> float:
    """Return ``mean + k * std`` (sample std) of ``errors`` of shape (n_samples,).

    Examples
    --------
    >>> threshold_from_errors([1.0, 2.0, 3.0], k=1.0)
    3.0
    """
    return threshold_from_stats(SufficientStats.from_array(_errors(errors)[:, None]), k=k)


def threshold_quantile(errors: ArrayLike, q: float) -> float:
    """Return the exact ``q`` quantile ``x_(ceil(q n))`` of ``errors`` of shape (n_samples,).

    Examples
    --------
    >>> threshold_quantile([4.0, 1.0, 3.0, 2.0], 0.5)
    2.0
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q}")
    e = _errors(errors)
    if e.size == 0:
        raise DataError("cannot take a quantile of zero errors")
    return float(np.quantile(e, q, method="inverted_cdf"))


@dataclass(frozen=True, slots=True)
class ErrorHistogram:
    """Counts of errors in fixed log-spaced bins plus their min and max; summed across clients.

    Bin 0 holds ``[0, 10 ** lo_exp)``, bin ``i`` in ``1..nb`` holds
    ``[10 ** (lo_exp + (i - 1) / bpd), 10 ** (lo_exp + i / bpd))``, bin ``nb + 1`` holds
    ``[10 ** hi_exp, inf)``, where ``nb = (hi_exp - lo_exp) * bpd``.

    Attributes
    ----------
    counts : ndarray of shape (nb + 2,), int64
    min, max : float
        Smallest and largest error (+inf / -inf when empty).
    bins_per_decade, lo_exp, hi_exp : int
        The bin layout; only histograms of one layout merge.

    Examples
    --------
    >>> a = ErrorHistogram.from_errors([0.1, 0.2, 0.3], bins_per_decade=10)
    >>> h = a + ErrorHistogram.from_errors([0.4, 5.0], bins_per_decade=10)
    >>> int(h.count), round(h.quantile(0.5), 4)
    (5, 0.3162)
    """

    counts: NDArray[np.int64]
    min: float
    max: float
    bins_per_decade: int = 100
    lo_exp: int = -12
    hi_exp: int = 6

    def __post_init__(self) -> None:
        expected = (self.hi_exp - self.lo_exp) * self.bins_per_decade + 2
        if self.counts.shape != (expected,):
            raise DataError(f"histogram counts must have shape ({expected},), got {self.counts.shape}")

    @property
    def count(self) -> int:
        """Number of errors counted."""
        return int(self.counts.sum())

    @classmethod
    def from_errors(
        cls, errors: ArrayLike, *, bins_per_decade: int = 100, lo_exp: int = -12, hi_exp: int = 6
    ) -> ErrorHistogram:
        """Count ``errors`` of shape (n_samples,) (non-negative, finite) into the fixed bins."""
        e = _errors(errors)
        if e.size and e.min() < 0:
            raise DataError(f"reconstruction errors must be >= 0, got {e.min()!r}")
        nb = (hi_exp - lo_exp) * bins_per_decade
        idx = np.zeros(e.shape, dtype=np.int64)
        pos = e >= 10.0**lo_exp
        idx[pos] = 1 + np.floor((np.log10(e[pos]) - lo_exp) * bins_per_decade).astype(np.int64)
        idx = np.clip(idx, 0, nb + 1)
        counts = np.bincount(idx, minlength=nb + 2).astype(np.int64)
        lo, hi = (float(e.min()), float(e.max())) if e.size else (math.inf, -math.inf)
        return cls(counts, lo, hi, bins_per_decade, lo_exp, hi_exp)

    def merge(self, other: ErrorHistogram) -> ErrorHistogram:
        """Return the histogram of both error sets (exact: counts add)."""
        layout = (self.bins_per_decade, self.lo_exp, self.hi_exp)
        if layout != (other.bins_per_decade, other.lo_exp, other.hi_exp):
            raise DataError("cannot merge error histograms with different bin layouts")
        return ErrorHistogram(
            self.counts + other.counts, min(self.min, other.min), max(self.max, other.max), *layout
        )

    def __add__(self, other: ErrorHistogram) -> ErrorHistogram:
        return self.merge(other)

    def quantile(self, q: float) -> float:
        """Return the upper edge of the bin holding ``x_(ceil(q n))``, clipped to ``[min, max]``.

        Never below the exact quantile; see the module docstring for the bound.
        """
        if not 0.0 < q < 1.0:
            raise ValueError(f"q must be in (0, 1), got {q}")
        n = self.count
        if n == 0:
            raise DataError("cannot take a quantile of an empty histogram")
        rank = max(1, math.ceil(q * n))
        b = int(np.searchsorted(np.cumsum(self.counts), rank))
        overflow = b == self.counts.shape[0] - 1
        upper = self.max if overflow else 10.0 ** (self.lo_exp + b / self.bins_per_decade)
        return float(min(max(upper, self.min), self.max))

    def to_dict(self) -> dict[str, Any]:
        """Return plain values and the int64 count array: what crosses the network."""
        return {
            "counts": self.counts, "min": self.min, "max": self.max,
            "bins_per_decade": self.bins_per_decade, "lo_exp": self.lo_exp, "hi_exp": self.hi_exp,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ErrorHistogram:
        """Inverse of :meth:`to_dict`."""
        return cls(
            np.asarray(d["counts"], dtype=np.int64).reshape(-1), float(d["min"]), float(d["max"]),
            int(d["bins_per_decade"]), int(d["lo_exp"]), int(d["hi_exp"]),
        )  # fmt: skip


def threshold_from_histogram(hist: ErrorHistogram, q: float) -> float:
    """Return the federated ``q`` quantile threshold from a (merged) :class:`ErrorHistogram`."""
    return hist.quantile(q)


ErrorSummary = SufficientStats | ErrorHistogram
"""What a client sends for the threshold: error statistics (``mean_std``) or a histogram (``quantile``)."""


def fit_threshold(errors: ArrayLike, rule: ThresholdRule) -> float:
    """Return the exact threshold of ``rule`` on ``errors`` of shape (n_samples,) (local or pooled rows)."""
    if rule.kind == "mean_std":
        return threshold_from_errors(errors, k=rule.k)
    return threshold_quantile(errors, rule.q)


def error_summary(errors: ArrayLike, rule: ThresholdRule) -> ErrorSummary:
    """Return the summary of one client's ``errors`` (shape (n_samples,)) that ``rule`` federates."""
    if rule.kind == "mean_std":
        return SufficientStats.from_array(_errors(errors)[:, None])
    return ErrorHistogram.from_errors(
        errors, bins_per_decade=rule.bins_per_decade, lo_exp=rule.lo_exp, hi_exp=rule.hi_exp
    )


def threshold_from_summaries(summaries: Iterable[ErrorSummary], rule: ThresholdRule) -> float:
    """Merge per-client summaries (from :func:`error_summary`) and finalise ``rule``'s threshold once.

    ``mean_std`` equals the pooled :func:`fit_threshold` up to rounding; ``quantile`` is the histogram
    approximation bounded in the module docstring.

    Examples
    --------
    >>> rule = ThresholdRule(kind="mean_std", k=1.0)
    >>> parts = [error_summary([1.0, 2.0], rule), error_summary([3.0], rule)]
    >>> threshold_from_summaries(parts, rule) == fit_threshold([1.0, 2.0, 3.0], rule)
    True
    """
    items = list(summaries)
    if not items:
        raise DataError("no client summaries to set a threshold from")
    kind = SufficientStats if rule.kind == "mean_std" else ErrorHistogram
    if not all(isinstance(s, kind) for s in items):
        raise DataError(f"the {rule.kind} rule needs {kind.__name__} summaries from every client")
    merged = functools.reduce(lambda a, b: a.merge(b), items)  # type: ignore[arg-type]
    if isinstance(merged, SufficientStats):
        return threshold_from_stats(merged, k=rule.k)
    return threshold_from_histogram(merged, rule.q)


def local_thresholds(errors_by_client: Mapping[str, ArrayLike], rule: ThresholdRule) -> dict[str, float]:
    """Return each client's own threshold, fitted on its own errors only (no federation)."""
    return {cid: fit_threshold(e, rule) for cid, e in errors_by_client.items()}
