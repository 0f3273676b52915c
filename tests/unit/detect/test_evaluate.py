"""The evaluation behind every published number, against sklearn.metrics and a plain-loop window vote."""

from __future__ import annotations

import gzip
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray
from sklearn import metrics as skm

from fediot.data.anomaly import TestSet as LabelledRows  # not named Test*: pytest would collect it
from fediot.data.paths import shipped_file
from fediot.detect.evaluate import ClientEvaluation, evaluate_scores, summarize_evaluations

METRICS = ("tpr", "fpr", "precision", "f1", "balanced_accuracy", "accuracy")
ATTACK_TYPES = ("mirai.udp", "gafgyt.scan", "syn")


def _reference(y: NDArray[Any], flags: NDArray[Any]) -> dict[str, float]:
    """Every metric from sklearn (NaN where a denominator is 0, as fediot defines it)."""
    y, flags = np.asarray(y, dtype=int), np.asarray(flags, dtype=int)
    tn, fp, fn, tp = skm.confusion_matrix(y, flags, labels=[0, 1]).ravel()
    both = 0 < y.sum() < y.size
    return {
        "tpr": skm.recall_score(y, flags, zero_division=np.nan) if y.any() else math.nan,
        "fpr": 1.0 - skm.recall_score(1 - y, 1 - flags, zero_division=np.nan) if not y.all() else math.nan,
        "precision": skm.precision_score(y, flags, zero_division=np.nan),
        "f1": skm.f1_score(y, flags, zero_division=np.nan),
        "balanced_accuracy": skm.balanced_accuracy_score(y, flags) if both else math.nan,
        "accuracy": skm.accuracy_score(y, flags),
        "tp": int(tp),
        "fp": int(fp),
        "tn": int(tn),
        "fn": int(fn),
    }


def _loop_vote(flags: NDArray[np.bool_], segments: NDArray[np.int32], ws: int) -> NDArray[np.bool_]:
    """N-BaIoT's majority vote written as a plain loop: > half of the last ``ws`` rows of the segment."""
    out = np.zeros(flags.size, dtype=bool)
    for i in range(flags.size):
        start = i
        while start > 0 and i - start + 1 < ws and segments[start - 1] == segments[i]:
            start -= 1
        window = flags[start : i + 1]
        out[i] = 2 * int(window.sum()) > window.size
    return out


def _random_test(rng: np.random.Generator, n: int, p_attack: float, num_segments: int) -> LabelledRows:
    y = (rng.random(n) < p_attack).astype(np.int8)
    types = np.where(y == 1, rng.choice(ATTACK_TYPES, n), "benign").astype(np.str_)
    segment = np.sort(rng.integers(0, num_segments, n)).astype(np.int32)
    return LabelledRows(np.zeros((n, 3), np.float32), y, types, segment)


def _assert_metrics(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12, nan_ok=True), key


def _random_clients(seed: int) -> tuple[dict[str, LabelledRows], dict[str, NDArray[np.float64]]]:
    """Four clients: mixed, attacks only (FPR undefined), benign only (TPR undefined), mixed."""
    rng = np.random.default_rng(seed)
    tests = {
        "a": _random_test(rng, 300, 0.7, 3),
        "b": _random_test(rng, 80, 1.0, 1),
        "c": _random_test(rng, 50, 0.0, 2),
        "d": _random_test(rng, 120, 0.5, 4),
    }
    scores = {cid: rng.normal(size=t.y.size) + 1.5 * t.y for cid, t in tests.items()}
    return tests, scores


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("window", [1, 5])
def test_summary_matches_sklearn_per_client_macro_pooled_and_by_attack(seed: int, window: int) -> None:
    # Prepare
    tests, scores = _random_clients(seed)
    threshold = 0.7
    # Execute
    evals = {cid: evaluate_scores(scores[cid], threshold, t, window=window) for cid, t in tests.items()}
    summary = summarize_evaluations(evals, window=window)
    # Assert
    levels: list[tuple[dict[str, Any], dict[str, NDArray[np.bool_]]]] = [
        (summary, {cid: scores[cid] > threshold for cid in tests})
    ]
    if window > 1:
        assert summary["window"]["size"] == window
        voted = {cid: _loop_vote(scores[cid] > threshold, t.segment, window) for cid, t in tests.items()}
        levels.append((summary["window"], voted))
    else:
        assert "window" not in summary
    for level, flags in levels:
        per_client = {cid: _reference(t.y, flags[cid]) for cid, t in tests.items()}
        assert list(level["clients"]) == list(tests)
        for cid in tests:
            _assert_metrics(level["clients"][cid], per_client[cid])
        # macro: the unweighted mean over the clients where the metric is defined
        for m in METRICS:
            defined = [per_client[cid][m] for cid in tests if not math.isnan(per_client[cid][m])]
            assert level["macro"][m] == pytest.approx(float(np.mean(defined)), abs=1e-12), m
        assert math.isnan(per_client["b"]["fpr"])
        assert math.isnan(per_client["c"]["tpr"])
        assert list(level["macro"]) == list(METRICS)
        # pooled: all clients' rows together
        y_all = np.concatenate([t.y for t in tests.values()])
        flags_all = np.concatenate([flags[cid] for cid in tests])
        _assert_metrics(level["pooled"], _reference(y_all, flags_all))
        # by attack type: pooled TPR per type, pooled FPR of benign rows
        types_all = np.concatenate([t.attack_type for t in tests.values()])
        assert list(level["by_attack"]) == sorted(["benign", *ATTACK_TYPES])
        for name, entry in level["by_attack"].items():
            mask = types_all == name
            assert entry["rows"] == int(mask.sum())
            if name == "benign":
                assert entry == {"rows": int(mask.sum()), "fpr": pytest.approx(flags_all[mask].mean())}
            else:
                tpr = skm.recall_score(y_all[mask], flags_all[mask])
                assert entry == {"rows": int(mask.sum()), "tpr": pytest.approx(tpr)}


def test_a_row_is_flagged_only_above_the_threshold_and_shapes_must_match() -> None:
    # Prepare: one score exactly at the threshold
    test = LabelledRows(
        np.zeros((4, 1), np.float32),
        np.array([1, 1, 0, 0], np.int8),
        np.array(["syn", "syn", "benign", "benign"]),
        np.zeros(4, np.int32),
    )
    # Execute
    evaluation = evaluate_scores(np.array([0.5, 0.9, 0.1, 0.9]), 0.5, test)
    # Assert
    assert isinstance(evaluation, ClientEvaluation)
    assert (evaluation.counts.tp, evaluation.counts.fn, evaluation.counts.fp, evaluation.counts.tn) == (
        1,
        1,
        1,
        1,
    )
    assert evaluation.window_counts is None
    with pytest.raises(ValueError, match="3 scores for 4 test rows"):
        evaluate_scores(np.zeros(3), 0.5, test)


def test_window_vote_never_crosses_a_segment() -> None:
    # Prepare: segment 0 all flagged, segment 1 none; a vote crossing the border would flag segment 1's start
    test = LabelledRows(
        np.zeros((6, 1), np.float32),
        np.ones(6, np.int8),
        np.array(["syn"] * 6),
        np.array([0, 0, 0, 1, 1, 1], np.int32),
    )
    # Execute
    evaluation = evaluate_scores(np.array([1.0, 1, 1, 0, 0, 0]), 0.5, test, window=3)
    # Assert
    assert evaluation.window_counts is not None
    assert (evaluation.window_counts.tp, evaluation.window_counts.fn) == (3, 3)


def _shipped_rows(name: str) -> NDArray[np.float64]:
    with gzip.open(shipped_file(f"nbaiot/samples/{name}.csv.gz"), "rt", encoding="utf-8") as fh:
        return pd.read_csv(fh).select_dtypes("number").to_numpy(np.float64)


def test_summary_on_shipped_nbaiot_rows_matches_sklearn() -> None:
    # Prepare: real N-BaIoT rows; score = mean |z| against the first 100 benign rows (a real, simple detector)
    benign = np.log1p(np.abs(_shipped_rows("benign_traffic")))
    attacks = {t: np.log1p(np.abs(_shipped_rows(t))) for t in ("scan", "doorbell_udp", "thermostat_udp")}
    mean, std = benign[:100].mean(0), benign[:100].std(0) + 1e-6
    threshold = float(np.quantile(np.abs((benign[:100] - mean) / std).mean(1), 0.95))
    tests, scores = {}, {}
    for k, part in enumerate((slice(100, 200), slice(200, 299))):
        x = np.concatenate([benign[part], *(a[part] for a in attacks.values())])
        y = np.concatenate(
            [np.zeros(benign[part].shape[0], np.int8)]
            + [np.ones(a[part].shape[0], np.int8) for a in attacks.values()]
        )
        types = np.concatenate(
            [["benign"] * benign[part].shape[0]] + [[t] * a[part].shape[0] for t, a in attacks.items()]
        )
        segment = np.repeat(
            np.arange(4, dtype=np.int32),
            [benign[part].shape[0]] + [a[part].shape[0] for a in attacks.values()],
        )
        tests[f"gw{k}"] = LabelledRows(x.astype(np.float32), y, types.astype(np.str_), segment)
        scores[f"gw{k}"] = np.abs((x - mean) / std).mean(1)
    # Execute
    evals = {cid: evaluate_scores(scores[cid], threshold, t, window=10) for cid, t in tests.items()}
    summary = summarize_evaluations(evals, window=10)
    # Assert
    flags = {cid: scores[cid] > threshold for cid in tests}
    for cid, t in tests.items():
        _assert_metrics(summary["clients"][cid], _reference(t.y, flags[cid]))
        voted = _loop_vote(flags[cid], t.segment, 10)
        _assert_metrics(summary["window"]["clients"][cid], _reference(t.y, voted))
    y_all = np.concatenate([t.y for t in tests.values()])
    _assert_metrics(summary["pooled"], _reference(y_all, np.concatenate(list(flags.values()))))
    for m in METRICS:
        assert summary["macro"][m] == pytest.approx(
            np.mean([summary["clients"][cid][m] for cid in tests]), abs=1e-12
        )
    # every kind of count occurs, so no metric is degenerate here (measured: tp 200, fp 3, tn 196, fn 397;
    # this mean-|z| score catches every thermostat_udp row and almost no doorbell_udp or scan row)
    assert min(summary["pooled"][k] for k in ("tp", "fp", "tn", "fn")) > 0
    types_all = np.concatenate([t.attack_type for t in tests.values()])
    flags_all = np.concatenate(list(flags.values()))
    for name in attacks:
        assert summary["by_attack"][name]["tpr"] == pytest.approx(flags_all[types_all == name].mean())
