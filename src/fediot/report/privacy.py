"""The report of the ``privacy`` experiment: the privacy/detection trade-off table and plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fediot.report.plots import _pyplot, _save
from fediot.report.tables import fmt, get_path, markdown_table, seeds_note

__all__ = ["plot_privacy_tradeoff", "privacy_markdown", "privacy_rows"]

_HEAD = [
    "cell", "epsilon budget", "epsilon spent", "noise multiplier", "macro TPR", "macro FPR",
    "window macro TPR", "window macro FPR", "threshold",
]  # fmt: skip


def privacy_rows(cells: dict[str, Any]) -> list[list[str]]:
    """Return one table row per grid cell (in run order)."""
    rows = []
    for name, r in cells.items():
        pc = r.get("privacy_config", {})
        budget = pc.get("epsilon_budget")
        rows.append(
            [
                name,
                "inf" if budget is None else fmt(budget, 3),
                "—" if "privacy" not in r else fmt(r["privacy"]["epsilon"], 3),
                "—" if r.get("noise_multiplier") is None else fmt(r["noise_multiplier"], 3),
                fmt(get_path(r, "macro", "tpr")),
                fmt(get_path(r, "macro", "fpr")),
                fmt(get_path(r, "window", "macro", "tpr")),
                fmt(get_path(r, "window", "macro", "fpr")),
                fmt(r.get("threshold"), 4),
            ]
        )
    return rows


def plot_privacy_tradeoff(cells: dict[str, Any], path: Path) -> Path | None:
    """Macro TPR and FPR (instance level) against the epsilon spent, one line per clipping rule."""
    series: dict[str, list[tuple[float, float, float]]] = {}
    ref = None
    for r in cells.values():
        tpr, fpr = get_path(r, "macro", "tpr"), get_path(r, "macro", "fpr")
        if tpr is None or fpr is None:
            continue
        if "privacy" not in r:
            ref = (float(tpr), float(fpr))
            continue
        clip = str(r["privacy_config"]["clipping"])
        series.setdefault(clip, []).append((float(r["privacy"]["epsilon"]), float(tpr), float(fpr)))
    if not series and ref is None:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, k, label in ((axes[0], 1, "macro TPR"), (axes[1], 2, "macro FPR")):
        for clip, pts in series.items():
            pts = sorted(pts)
            ax.plot([p[0] for p in pts], [p[k] for p in pts], marker="o", label=f"DP, {clip} clipping")
        if ref is not None:
            ax.axhline(ref[k - 1], color="gray", linestyle="--", label="no DP")
        ax.set_xscale("log")
        ax.set_xlabel("epsilon spent (log)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("privacy / detection trade-off")
    return _save(fig, path)


def privacy_markdown(results: dict[str, Any], out: Path | None = None) -> str:
    """Return ``report.md`` for the privacy experiment; write ``privacy_tradeoff.png`` into ``out``."""
    cells = results["runs"]["cells"]
    cfg = results["config"]
    parts = [
        f"# {results['experiment']}: {results.get('description', '')}",
        "",
        f"Dataset: `{results['dataset']}` — {results['num_clients']} clients. "
        f"{cfg['federated.rounds']} rounds, "
        f"fraction {cfg['federated.fraction_fit']} per round, strategy {cfg['federated.strategy']}. Central "
        f"client-level DP-FedAvg(M): noise calibrated to each budget at delta {cfg['privacy.delta']:g} "
        f"(RDP, sampling without replacement, replace-one); private statistics: {cfg['privacy.statistics']}.",
        "",
        markdown_table(_HEAD, privacy_rows(cells)),
        "",
        seeds_note(results["seeds"]),
    ]
    if out is not None:
        plot = plot_privacy_tradeoff(cells, out / "privacy_tradeoff.png")
        if plot is not None:
            parts += ["", f"![trade-off]({plot.name})"]
    return "\n".join(parts) + "\n"
