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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fediot.data.scaling import SufficientStats
from fediot.detect.threshold import ErrorHistogram, ErrorSummary, ThresholdRule
from fediot.errors import DataError

__all__ = [
    "ERROR_STATS",
    "FEATURE_STATS",
    "decode_summary",
    "encode_summary",
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


def merge_summaries(summaries: Mapping[str, ErrorSummary]) -> ErrorSummary:
    """Merge per-client summaries in sorted client-id order (deterministic rounding on every transport).

    Raises
    ------
    DataError
        If there is none, or they are of different kinds or layouts.
    """
    if not summaries:
        raise DataError("no client summaries to merge")
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
    return merged


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
