"""Detection: metrics as sufficient statistics, thresholds, the window vote and the AnomalyDetector."""

from fediot.detect.detector import FORMAT_VERSION, AnomalyDetector
from fediot.detect.metrics import (
    BINARY_METRICS,
    BinaryCounts,
    classification_report,
    confusion_matrix,
    counts_by_group,
    macro_metrics,
    pool_counts,
)
from fediot.detect.threshold import (
    THRESHOLD_DDOF,
    ErrorHistogram,
    ErrorSummary,
    ThresholdRule,
    error_summary,
    fit_threshold,
    local_thresholds,
    threshold_from_errors,
    threshold_from_histogram,
    threshold_from_stats,
    threshold_from_summaries,
    threshold_quantile,
)
from fediot.detect.window import window_vote

__all__ = [
    "BINARY_METRICS",
    "FORMAT_VERSION",
    "THRESHOLD_DDOF",
    "AnomalyDetector",
    "BinaryCounts",
    "ErrorHistogram",
    "ErrorSummary",
    "ThresholdRule",
    "classification_report",
    "confusion_matrix",
    "counts_by_group",
    "error_summary",
    "fit_threshold",
    "local_thresholds",
    "macro_metrics",
    "pool_counts",
    "threshold_from_errors",
    "threshold_from_histogram",
    "threshold_from_stats",
    "threshold_from_summaries",
    "threshold_quantile",
    "window_vote",
]
