"""PNG plots of anomaly-experiment results (matplotlib, headless Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fediot.report.io import atomic_write

__all__ = ["plot_client_rates", "plot_round_loss", "plot_score_distributions"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def plot_round_loss(runs: dict[str, Any], path: Path) -> Path | None:
    """Training loss per round of every federated variant; None if there is none."""
    curves = {name: r["round_train_loss"] for name, r in runs.items() if r.get("round_train_loss")}
    if not curves:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, losses in curves.items():
        ax.plot(range(1, len(losses) + 1), losses, marker="o", markersize=3, label=name)
    ax.set_xlabel("round")
    ax.set_ylabel("mean client training loss (MSE)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_client_rates(runs: dict[str, Any], path: Path) -> Path | None:
    """Per-client TPR and FPR bars, one panel per variant evaluated per client."""
    variants = {n: r for n, r in runs.items() if r.get("clients") and "->" not in next(iter(r["clients"]))}
    if not variants:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(
        len(variants),
        1,
        figsize=(max(6.0, 0.35 * len(next(iter(variants.values()))["clients"])), 2.6 * len(variants)),
        squeeze=False,
    )
    for ax, (name, r) in zip(axes[:, 0], variants.items(), strict=True):
        ids = list(r["clients"])
        tpr = [r["clients"][c]["tpr"] for c in ids]
        fpr = [r["clients"][c]["fpr"] for c in ids]
        xs = range(len(ids))
        ax.bar([x - 0.2 for x in xs], [0 if v is None or math.isnan(v) else v for v in tpr], 0.4, label="TPR")
        ax.bar([x + 0.2 for x in xs], [0 if v is None or math.isnan(v) else v for v in fpr], 0.4, label="FPR")
        ax.set_title(name, fontsize=9)
        ax.set_ylim(0, 1.05)
        ax.set_xticks(list(xs))
        ax.set_xticklabels(ids, rotation=60, ha="right", fontsize=7)
        ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    return _save(fig, path)


def plot_score_distributions(runs: dict[str, Any], path: Path) -> Path | None:
    """Empirical CDFs of benign and attack anomaly scores with each variant's threshold."""
    samples = {n: r["scores_sample"] for n, r in runs.items() if r.get("scores_sample")}
    if not samples:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(samples), figsize=(4.2 * len(samples), 3.4), squeeze=False)
    for ax, (name, s) in zip(axes[0], samples.items(), strict=True):
        n = len(s["benign_quantiles"])
        probs = [i / (n - 1) for i in range(n)] if n > 1 else []
        if s["benign_quantiles"]:
            ax.plot([max(v, 1e-12) for v in s["benign_quantiles"]], probs, label="benign")
        if s["attack_quantiles"]:
            ax.plot([max(v, 1e-12) for v in s["attack_quantiles"]], probs, label="attack")
        ax.axvline(s["threshold"], color="k", linestyle="--", linewidth=1, label="threshold")
        ax.set_xscale("log")
        ax.set_xlabel("anomaly score (reconstruction MSE)")
        ax.set_ylabel("fraction of test rows <= score")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
