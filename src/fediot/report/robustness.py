"""The report of the robustness experiment: per-attack tables, the 20% goal check and one plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fediot.report.plots import _pyplot, _save
from fediot.report.tables import fmt, get_path, markdown_table

__all__ = [
    "GOAL_FPR",
    "GOAL_TPR",
    "goal_check",
    "plot_robustness",
    "robustness_markdown",
    "robustness_summary_rows",
]

GOAL_TPR = 0.01
"""The goal (issue 14): at 20% hostile gateways, TPR at most 1 point below the clean run's ..."""
GOAL_FPR = 0.005
"""... and FPR at most 0.5 point above it (macro over the same honest clients)."""


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _deltas(run: dict[str, Any], level: str) -> tuple[float, float]:
    """``(dTPR, dFPR)`` of an attacked run against the clean run on the same honest clients."""
    if "failed" in run:
        return float("nan"), float("nan")
    if level == "window":
        now, clean = get_path(run, "window", "macro") or {}, run.get("clean_window_macro") or {}
    else:
        now, clean = run.get("macro") or {}, run.get("clean_macro") or {}
    return _num(now.get("tpr")) - _num(clean.get("tpr")), _num(now.get("fpr")) - _num(clean.get("fpr"))


def goal_check(runs: dict[str, Any], fraction: str, level: str = "instance") -> dict[str, dict[str, Any]]:
    """Per aggregator, at ``fraction``: which attacks keep TPR within 1 point and FPR within 0.5 point.

    Returns ``{aggregator: {"met": [...], "missed": [...], "worst_dtpr": x, "worst_dfpr": y}}``; a failed
    run (the attack broke the federation) counts as missed.
    """
    out: dict[str, dict[str, Any]] = {}
    for agg, entry in runs.items():
        met: list[str] = []
        missed: list[str] = []
        dtprs: list[float] = []
        dfprs: list[float] = []
        for attack, per_fraction in entry.items():
            if attack == "clean" or fraction not in per_fraction:
                continue
            dtpr, dfpr = _deltas(per_fraction[fraction], level)
            ok = not math.isnan(dtpr) and dtpr >= -GOAL_TPR and dfpr <= GOAL_FPR
            (met if ok else missed).append(attack)
            dtprs.append(dtpr)
            dfprs.append(dfpr)
        finite_t = [d for d in dtprs if not math.isnan(d)]
        finite_f = [d for d in dfprs if not math.isnan(d)]
        out[agg] = {
            "met": met,
            "missed": missed,
            "worst_dtpr": min(finite_t) if finite_t else float("nan"),
            "worst_dfpr": max(finite_f) if finite_f else float("nan"),
        }
    return out


def _cell(run: dict[str, Any] | None, level: str) -> str:
    if run is None:
        return "-"
    if "failed" in run:
        return "failed"
    macro = get_path(run, "window", "macro") if level == "window" else run.get("macro")
    if not macro:
        return "-"
    dtpr, dfpr = _deltas(run, level)
    text = f"{fmt(macro.get('tpr'), 3)} / {fmt(macro.get('fpr'), 3)}"
    if not math.isnan(dtpr):
        text += f" ({dtpr:+.3f} / {dfpr:+.3f})"
    return text


def _attacks(runs: dict[str, Any]) -> list[str]:
    first = next(iter(runs.values()))
    return [a for a in first if a != "clean"]


def _fractions(runs: dict[str, Any]) -> list[str]:
    first = next(iter(runs.values()))
    attack = next((a for a in first if a != "clean"), None)
    return list(first[attack]) if attack else []


def plot_robustness(runs: dict[str, Any], path: Path) -> Path | None:
    """Plot one panel per attack: honest clients' macro TPR (solid) and FPR (dashed) vs hostile fraction."""
    attacks = _attacks(runs)
    if not attacks:
        return None
    plt = _pyplot()
    cols = min(4, len(attacks))
    rows = math.ceil(len(attacks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    for ax, attack in zip(axes.flat, attacks, strict=False):
        for i, (agg, entry) in enumerate(runs.items()):
            clean = entry["clean"].get("macro") or {}
            xs, tpr, fpr = [0.0], [_num(clean.get("tpr"))], [_num(clean.get("fpr"))]
            for frac, run in entry[attack].items():
                macro = run.get("macro") or {}
                xs.append(float(frac))
                tpr.append(_num(macro.get("tpr")))
                fpr.append(_num(macro.get("fpr")))
            color = f"C{i}"
            ax.plot(xs, tpr, color=color, marker="o", markersize=3, label=agg)
            ax.plot(xs, fpr, color=color, marker="x", markersize=3, linestyle="--")
        ax.set_title(attack, fontsize=9)
        ax.set_xlabel("malicious fraction")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(attacks) :]:
        ax.axis("off")
    axes.flat[0].set_ylabel("macro TPR (—) / FPR (--)")
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)


def robustness_markdown(results: dict[str, Any], out: Path | None = None) -> str:
    """Return ``report.md`` for the robustness experiment; write its plot (PNG) into ``out``."""
    runs = results["runs"]
    cfg = results["config"]
    fed, train, detect = cfg["federated"], cfg["train"], cfg["detect"]
    seeds = results["seeds"]
    fractions = _fractions(runs)
    attacks = _attacks(runs)
    first_seed = results["malicious"][str(seeds[0])]
    parts = [
        f"# {results['experiment']}: {results.get('description', '')}",
        "",
        f"Dataset: `{results['dataset']}` — {results['num_clients']} clients. "
        f"Protocol: {results['protocol']}.",
        "",
        f"Federation (shorter than the main job, for the grid): {fed['rounds']} rounds, fraction "
        f"{fed['fraction_fit']} of clients per round, {fed['local_epochs']} local epoch(s), "
        f"{train['optimizer']} lr {train['lr']}, batch {train['batch_size']}; scaler {train['scaler']}, "
        f"threshold mean + {detect['threshold_k']} std, window {detect['window']}. Every run is one whole "
        "federation (federated scaler, rounds, federated threshold) from the same initial model.",
        "",
        "Numbers are macro TPR / FPR over the **honest** clients (what the attack does to its victims); in "
        "brackets the change against the same aggregator's clean run on the same honest clients. `failed`: "
        "the attack broke the federation (the run raised).",
        "",
        f"Seeds: {', '.join(map(str, seeds))}" + (" (means over seeds)." if len(seeds) > 1 else "."),
        "",
        "Hostile clients (seed "
        + str(seeds[0])
        + "): "
        + "; ".join(f"{float(f):.0%}: {', '.join(ids) or '-'}" for f, ids in first_seed.items()),
        "",
        "## Aggregators",
        "",
        markdown_table(
            ["aggregator", "settings"],
            [
                [a["name"], ", ".join(f"{k}={v}" for k, v in a.items() if k != "name")]
                for a in cfg["aggregators"]
            ],
        ),
        "",
        "## Clean runs (no hostile client)",
        "",
        markdown_table(
            ["aggregator", "macro TPR", "macro FPR", "window TPR", "window FPR", "threshold", "wall s"],
            [
                [
                    agg,
                    fmt(get_path(e, "clean", "macro", "tpr"), 3),
                    fmt(get_path(e, "clean", "macro", "fpr"), 3),
                    fmt(get_path(e, "clean", "window", "macro", "tpr"), 3),
                    fmt(get_path(e, "clean", "window", "macro", "fpr"), 3),
                    fmt(get_path(e, "clean", "threshold"), 4),
                    fmt(get_path(e, "clean", "wall_seconds"), 1),
                ]
                if "failed" not in e["clean"]
                else [agg, "failed", "", "", "", "", ""]
                for agg, e in runs.items()
            ],
        ),
        "",
    ]
    goal_at = "0.2" if "0.2" in fractions else (fractions[len(fractions) // 2] if fractions else None)
    if goal_at is not None:
        rows = []
        for level in ("instance", "window"):
            for agg, g in goal_check(runs, goal_at, level).items():
                rows.append(
                    [
                        agg,
                        level,
                        f"{len(g['met'])}/{len(g['met']) + len(g['missed'])}",
                        fmt(g["worst_dtpr"], 3),
                        fmt(g["worst_dfpr"], 3),
                        ", ".join(g["missed"]) or "-",
                    ]
                )
        parts += [
            f"## Goal at {float(goal_at):.0%} hostile: TPR within {GOAL_TPR:.0%} and FPR within "
            f"{GOAL_FPR:.1%} of the clean run",
            "",
            markdown_table(
                ["aggregator", "level", "attacks within the goal", "worst dTPR", "worst dFPR", "missed"], rows
            ),
            "",
        ]
    for attack in attacks:
        for level in ("instance", "window"):
            head = ["aggregator", *(f"{float(f):.0%} hostile: TPR / FPR (dTPR / dFPR)" for f in fractions)]
            table = [
                [agg, *(_cell(get_path(e, attack, f), level) for f in fractions)] for agg, e in runs.items()
            ]
            parts += [f"## Attack `{attack}` ({level} level)", "", markdown_table(head, table), ""]
    cost = sum(
        _num(r.get("wall_seconds"))
        for e in runs.values()
        for k, v in e.items()
        for r in ([v] if k == "clean" else list(v.values()))
    )
    parts += [f"Total federation time: {cost:.0f} s over all runs.", ""]
    if out is not None:
        path = plot_robustness(runs, Path(out) / "robustness.png")
        if path is not None:
            parts += [
                "## Plot",
                "",
                f"![macro TPR / FPR of the honest clients vs hostile fraction]({path.name})",
                "",
            ]
    return "\n".join(parts)


def robustness_summary_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Return the console summary: per aggregator the clean macro TPR/FPR and the goal check at 20%."""
    runs = results["runs"]
    fractions = _fractions(runs)
    at = "0.2" if "0.2" in fractions else (fractions[-1] if fractions else None)
    goal = goal_check(runs, at) if at is not None else {}
    headers = ["aggregator", "clean TPR", "clean FPR", f"goal met at {at}", "worst dTPR", "worst dFPR"]
    rows = []
    for agg, entry in runs.items():
        g = goal.get(agg, {"met": [], "missed": [], "worst_dtpr": None, "worst_dfpr": None})
        rows.append(
            [
                agg,
                fmt(get_path(entry, "clean", "macro", "tpr"), 3),
                fmt(get_path(entry, "clean", "macro", "fpr"), 3),
                f"{len(g['met'])}/{len(g['met']) + len(g['missed'])}",
                fmt(g["worst_dtpr"], 3),
                fmt(g["worst_dfpr"], 3),
            ]
        )
    return headers, rows
