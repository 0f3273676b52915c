"""Federated statistics: what a client answers to a statistics query, in one plain encoding, merged once.

A statistics query asks every client for a summary of its own rows — never the rows:

- ``feature_stats``: per-feature :class:`~fediot.data.scaling.SufficientStats` of its benign training rows
  (for the federated scaler; log-compressed first for ``log-*`` scalers);
- ``error_stats``: a summary of the reconstruction errors of its benign opt rows under the global weights
  (for the federated threshold): :class:`SufficientStats` for the ``mean-std`` rule, an
  :class:`~fediot.detect.threshold.ErrorHistogram` for the ``quantile`` rule.

Summaries cross every transport as a plain dict (:func:`encode_summary`: numpy arrays and scalars, with a
``summary`` kind tag) and are merged in sorted client-id order (:func:`merge_summaries`), so the in-process
runtime and Flower give bit-identical results.

Robust statistics (``federated.statistics``). The plain rule ``sum`` pools the summaries exactly — and one
client that lies (an error mean of 1e6, a feature max of 1e9, a count of 1e12) moves the pooled value
without bound. The rules ``median`` and ``trimmed`` instead combine each statistic coordinate-wise over
the ``K`` clients with a non-empty summary, one vote per client (counts do not weigh):

- :class:`SufficientStats`: per feature the mean and the variance ``m2 / count`` are each the median (or
  trimmed mean) of the clients' values; the min and max are the medians of the clients' mins and maxes
  (``median``), or (``trimmed``) the smallest min and largest max left once the ``int(trim * K)`` most
  extreme clients per side are dropped — a range as wide as the kept clients', where the median of the
  mins and maxes can be much narrower than many honest clients' data (they then scale far outside it);
- :class:`ErrorHistogram`: at every bin edge the cumulative fraction is the median (or trimmed mean) of
  the clients' cumulative fractions (their empirical CDFs), min and max as above.

**Bound.** If at most ``f`` of the ``K`` clients are hostile, with ``f < K / 2`` for ``median`` and
``f <= int(statistics_trim * K)`` for ``trimmed``, every combined statistic lies within the honest
clients' range of that statistic (a median or trimmed mean of ``K`` values of which more than half, or all
but the trimmed ones, are honest cannot leave their [min, max]; nor can the ``int(trim * K) + 1``-th
smallest or largest of them when at most ``int(trim * K)`` are hostile). Hence the ``mean-std`` threshold
``mu + k sigma`` lies in ``[min_h mu_h + k min_h sigma_h, max_h mu_h + k max_h sigma_h]`` over the honest
clients ``h`` (:func:`honest_threshold_bounds`), whatever the hostile clients send, and the ``quantile``
threshold lies within one histogram bin of the honest clients' own quantile thresholds. The price: the
robust rules ignore the spread *between* clients' means that the exact pool includes, so with honest but
different clients the threshold is that of a typical client rather than of the pooled rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fediot.data.scaling import SufficientStats
from fediot.detect.threshold import (
    THRESHOLD_DDOF,
    ErrorHistogram,
    ErrorSummary,
    ThresholdRule,
    threshold_from_summaries,
)
from fediot.errors import ConfigError, DataError
from fediot.federated.aggregate import trimmed_mean

__all__ = [
    "ERROR_STATS",
    "FEATURE_STATS",
    "STATISTICS_RULES",
    "decode_summary",
    "encode_summary",
    "honest_threshold_bounds",
    "merge_summaries",
    "threshold_rule_config",
    "threshold_rule_from_config",
]

FEATURE_STATS = "feature_stats"
"""Query name: per-feature statistics of the raw benign training rows (config: ``scaler`` kind)."""
ERROR_STATS = "error_stats"
"""Query name: reconstruction-error summary of the benign opt rows (config: the threshold rule)."""

_KIND = "summary"


def encode_summary(summary: ErrorSummary) -> dict[str, Any]:
    """Return ``summary`` as plain values: float64/int64 arrays, numbers and the ``summary`` kind.

    Examples
    --------
    >>> d = encode_summary(SufficientStats.from_array(np.array([[1.0], [3.0]])))
    >>> d["summary"], d["count"], d["mean"].tolist()
    ('stats', 2, [2.0])
    """
    if isinstance(summary, SufficientStats):
        return {_KIND: "stats", **summary.to_dict()}
    return {_KIND: "histogram", **summary.to_dict()}


def _finite(d: Mapping[str, Any], names: tuple[str, ...], what: str) -> None:
    for name in names:
        a = np.asarray(d[name], dtype=np.float64)
        if not np.isfinite(a).all():
            raise DataError(f"{what}: {name} holds non-finite values")


def decode_summary(d: Mapping[str, Any]) -> ErrorSummary:
    """Inverse of :func:`encode_summary`, validated (finite, consistent shapes, count >= 0).

    Raises
    ------
    DataError
        If the summary is malformed or not finite (a hostile or broken client): it is then rejected.
    """
    kind = d.get(_KIND)
    try:
        if kind == "stats":
            stats = SufficientStats.from_dict(d)
            if stats.count > 0:
                _finite(d, ("mean", "m2", "min", "max"), "feature statistics")
            if (stats.m2 < 0).any():
                raise DataError("feature statistics: m2 must be >= 0")
            return stats
        if kind == "histogram":
            hist = ErrorHistogram.from_dict(d)
            if (hist.counts < 0).any():
                raise DataError("error histogram: counts must be >= 0")
            if hist.count and not (np.isfinite(hist.min) and np.isfinite(hist.max)):
                raise DataError("error histogram: min/max must be finite")
            return hist
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"malformed {kind} summary: {exc}") from None
    raise DataError(f"unknown summary kind {kind!r} (expected 'stats' or 'histogram')")


STATISTICS_RULES = ("sum", "trimmed", "median")
"""How :func:`merge_summaries` combines the clients' summaries (``federated.statistics``)."""


def merge_summaries(
    summaries: Mapping[str, ErrorSummary], rule: str = "sum", trim: float = 0.2
) -> ErrorSummary:
    """Combine per-client summaries in sorted client-id order (deterministic rounding on every transport).

    Parameters
    ----------
    summaries : mapping of str to ErrorSummary
        Each client's summary, all of one kind and layout.
    rule : {"sum", "trimmed", "median"}
        ``sum``: the exact pool (Chan et al.'s merge, histogram counts added). ``median`` / ``trimmed``:
        each statistic combined coordinate-wise over the clients, bounded by the honest clients' range
        when fewer than half / at most ``int(trim * K)`` of the ``K`` clients lie (module docstring).
    trim : float
        ``trimmed``: fraction of clients cut from each tail, in [0, 0.5).

    Raises
    ------
    DataError
        If there is none, or they are of different kinds or layouts.
    ConfigError
        For an unknown ``rule``.

    Examples
    --------
    >>> honest = {f"c{i}": SufficientStats.from_array(np.array([[0.1 * i], [0.2]])) for i in range(4)}
    >>> liar = {"c9": SufficientStats.from_array(np.full((10, 1), 1e6))}
    >>> float(merge_summaries({**honest, **liar}).mean[0]) > 1e5
    True
    >>> float(merge_summaries({**honest, **liar}, "median").mean[0])
    0.2
    """
    if not summaries:
        raise DataError("no client summaries to merge")
    if rule not in STATISTICS_RULES:
        raise ConfigError(f"unknown statistics rule {rule!r}; expected one of: {', '.join(STATISTICS_RULES)}")
    ids = sorted(summaries)
    merged = summaries[ids[0]]
    for cid in ids[1:]:
        other = summaries[cid]
        if isinstance(merged, SufficientStats) and isinstance(other, SufficientStats):
            merged = merged.merge(other)
        elif isinstance(merged, ErrorHistogram) and isinstance(other, ErrorHistogram):
            merged = merged.merge(other)  # two types, two merges
        else:
            raise DataError(f"client {cid!r} sent a summary of another kind than the others")
    if rule == "sum":
        return merged
    nonempty = [summaries[cid] for cid in ids if summaries[cid].count > 0]
    if not nonempty:
        return merged

    def combine(values: NDArray[np.float64]) -> NDArray[np.float64]:
        if rule == "median":
            out: NDArray[np.float64] = np.median(values, axis=0)
            return out
        return trimmed_mean(values, trim)

    cut = int(trim * len(nonempty))

    def extremes(lows: NDArray[np.float64], highs: NDArray[np.float64]) -> tuple[Any, Any]:
        if rule == "median":
            return combine(lows), combine(highs)
        # trimmed: the range of the clients kept once the `cut` most extreme ones per side are dropped
        return np.sort(lows, axis=0)[cut], np.sort(highs, axis=0)[lows.shape[0] - 1 - cut]

    if isinstance(merged, SufficientStats):
        stats = [x for x in nonempty if isinstance(x, SufficientStats)]
        mean = combine(np.stack([x.mean for x in stats]))
        var = combine(np.stack([x.m2 / x.count for x in stats]))
        lo, hi = extremes(np.stack([x.min for x in stats]), np.stack([x.max for x in stats]))
        return SufficientStats(merged.count, mean, var * merged.count, lo, hi)
    hists = [x for x in nonempty if isinstance(x, ErrorHistogram)]
    cdf = combine(np.stack([np.cumsum(h.counts) / h.count for h in hists]))
    total = merged.count
    cum = np.maximum.accumulate(np.rint(np.clip(cdf, 0.0, 1.0) * total).astype(np.int64))
    cum[-1] = total
    counts = np.diff(cum, prepend=0).astype(np.int64)
    lo, hi = extremes(np.array([h.min for h in hists]), np.array([h.max for h in hists]))
    return ErrorHistogram(counts, float(lo), float(hi), merged.bins_per_decade, merged.lo_exp, merged.hi_exp)


def honest_threshold_bounds(honest: Sequence[ErrorSummary], rule: ThresholdRule) -> tuple[float, float]:
    """Return the interval a robust threshold is guaranteed to stay in, from the honest clients' summaries.

    ``mean_std``: ``[min_h mu_h + k min_h sigma_h, max_h mu_h + k max_h sigma_h]`` (population std in the
    lower end, the threshold's sample std in the upper one); ``quantile``: the honest
    clients' own quantile thresholds widened by one bin (a factor ``10 ** (1 / bins_per_decade)``). Valid
    for ``merge_summaries(..., "median")`` with fewer than half of the clients hostile and for
    ``"trimmed"`` with at most ``int(trim * K)`` hostile (see the module docstring).
    """
    summaries = [h for h in honest if h.count > 0]
    if not summaries:
        raise DataError("no non-empty honest summaries to bound a threshold with")
    if rule.kind == "mean_std":
        stats = [h for h in summaries if isinstance(h, SufficientStats)]
        if len(stats) != len(summaries):
            raise DataError("the mean-std rule bounds SufficientStats summaries only")
        mus = [float(h.mean[0]) for h in stats]
        # the threshold's std is the sample std of the combined count N: between the population and the
        # sample std of the combined variance, as N >= every honest count
        low = [math.sqrt(max(float(h.m2[0]) / h.count, 0.0)) for h in stats]
        high = [math.sqrt(max(float(h.m2[0]) / max(h.count - THRESHOLD_DDOF, 1), 0.0)) for h in stats]
        return min(mus) + rule.k * min(low), max(mus) + rule.k * max(high)
    own = [threshold_from_summaries([h], rule) for h in summaries]
    step = 10.0 ** (1.0 / rule.bins_per_decade)
    return min(own) / step, max(own) * step


def threshold_rule_config(rule: ThresholdRule) -> dict[str, bool | int | float | str]:
    """Encode a threshold rule as an ``error_stats`` query's config (kebab-case scalar keys)."""
    return {
        "threshold": rule.kind.replace("_", "-"), "threshold-k": rule.k, "threshold-q": rule.q,
        "bins-per-decade": rule.bins_per_decade, "lo-exp": rule.lo_exp, "hi-exp": rule.hi_exp,
    }  # fmt: skip


def threshold_rule_from_config(config: Mapping[str, Any]) -> ThresholdRule:
    """Inverse of :func:`threshold_rule_config` (defaults: N-BaIoT's mean + 1 std)."""
    kind = str(config.get("threshold", "mean-std"))
    return ThresholdRule(
        kind={"mean-std": "mean_std"}.get(kind, kind),  # type: ignore[arg-type]  # checked by ThresholdRule
        k=float(config.get("threshold-k", 1.0)),
        q=float(config.get("threshold-q", 0.99)),
        bins_per_decade=int(config.get("bins-per-decade", 100)),
        lo_exp=int(config.get("lo-exp", -12)),
        hi_exp=int(config.get("hi-exp", 6)),
    )
