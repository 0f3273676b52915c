"""The report of the anomaly experiments (strategies, retraining, fl-vs-centralized)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fediot.report.plots import plot_client_rates, plot_round_loss, plot_score_distributions
from fediot.report.tables import fmt, fmt_pm, get_path, markdown_table, seeds_note

__all__ = ["SEED_TABLES", "anomaly_markdown"]

SEED_TABLES: dict[str, list[tuple[str, float, float, float, float]]] = {
    "strategies": [("FRN", 0.9009, 0.03498, 93.073, 41.7), ("MRN", 0.9009, 0.02189, 93.096, 48.0)],
    "retraining": [("MRN", 0.9009, 0.02189, 93.096, 48.0), ("MNN", 0.9009, 0.02189, 93.096, 36.4)],
    "fl-vs-centralized": [("FL", 0.99988, 0.02836, 99.966, 8.6), ("Non-FL", 0.90076, 0.02232, 93.095, 3109)],
}
"""The seed README's tables (N-BaIoT, Colab K80): method, avg TPR, avg FPR, avg F1 (in %), minutes."""


def _row(runs: dict[str, Any], std: dict[str, Any], name: str, prefix: tuple[str, ...]) -> list[str]:
    row = [name]
    for scope in ("macro", "pooled"):
        for m in ("tpr", "fpr", "f1", "balanced_accuracy"):
            keys = (name, *prefix, scope, m)
            row.append(fmt_pm(get_path(runs, *keys), get_path(std, *keys), 4))
    return row


_HEAD = [
    "variant",
    "macro TPR",
    "macro FPR",
    "macro F1",
    "macro bal. acc.",
    "pooled TPR",
    "pooled FPR",
    "pooled F1",
    "pooled bal. acc.",
]


def anomaly_markdown(results: dict[str, Any], out: Path | None = None) -> str:
    """Return ``report.md`` for an anomaly experiment; write its plots (PNG) into ``out``."""
    runs, std = results["runs"], results.get("runs_std") or {}
    cfg = results["config"]
    name = results["experiment"]
    seeds = results["seeds"]
    baseline_epochs = cfg["centralized_epochs"] or cfg["rounds"] * cfg["local_epochs"]
    parts = [
        f"# {name}: {results.get('description', '')}",
        "",
        f"Dataset: `{results['dataset']}` — {len(results['clients'])} clients, {results['num_features']} "
        f"features. Protocol: {results['protocol']}.",
        "",
        f"Federated: {cfg['rounds']} rounds, fraction {cfg['fraction_fit']} of clients per round (at "
        f"least {cfg['min_fit_clients']}), {cfg['local_epochs']} local epoch(s), {cfg['optimizer']} lr "
        f"{cfg['lr']}, batch {cfg['batch_size']}; FedAvgM server lr {cfg['server_learning_rate']}, momentum "
        f"{cfg['server_momentum']}; retraining = an extra epoch on a fresh random "
        f"{cfg['retrain_fraction']:.0%} of the local benign rows every `retrain_every` rounds. Non-federated "
        f"baselines train {baseline_epochs} epochs. Scaler: {cfg['scaler']} (federated from per-client "
        "sufficient statistics); threshold: "
        f"mean + {cfg['threshold_k']} std of the opt-benign reconstruction MSE (federated from per-client "
        "sufficient statistics).",
        "",
        seeds_note(seeds),
        "",
        f"## Detection on `{results['test_sets'][0]}` (instance level)",
        "",
        "Macro = unweighted mean over clients (N-BaIoT's average); pooled = all clients' rows together. "
        "F1 is nearly blind to FPR when attacks outnumber benign rows, so FPR and balanced accuracy are "
        "shown too.",
        "",
        markdown_table(_HEAD, [_row(runs, std, v, ()) for v in runs]),
        "",
    ]
    if any(get_path(runs, v, "window") for v in runs):
        size = next(get_path(runs, v, "window", "size") for v in runs if get_path(runs, v, "window"))
        parts += [
            f"## Window level (majority vote of {int(size)} consecutive rows)",
            "",
            markdown_table(
                _HEAD, [_row(runs, std, v, ("window",)) for v in runs if get_path(runs, v, "window")]
            ),
            "",
        ]
    with_local = [v for v in runs if get_path(runs, v, "local_threshold")]
    if with_local:
        rows = []
        for v in with_local:
            for label, prefix in (("federated", ()), ("local", ("local_threshold",))):
                rows.append([f"{v}, {label}", *_row(runs, std, v, prefix)[1:]])
                if get_path(runs, v, *prefix, "window"):
                    rows.append([f"{v}, {label}, window", *_row(runs, std, v, (*prefix, "window"))[1:]])
        parts += [
            "## Federated threshold vs each client's local threshold (same global model)",
            "",
            "Local: the threshold rule on the client's own benign opt rows, as `fediot calibrate` sets a "
            "device's threshold from its own benign traffic (`calibrate_scores`); window rows: after the "
            "majority vote.",
            "",
            markdown_table(_HEAD, rows),
            "",
        ]
    for test in results["test_sets"][1:]:
        parts += [
            f"## Detection on `{test}`",
            "",
            markdown_table(_HEAD, [_row(runs, std, v, ("tests", test)) for v in runs]),
            "",
        ]
    attack_types = sorted({t for v in runs for t in (get_path(runs, v, "by_attack") or {})})
    if attack_types:
        rows = []
        for v in runs:
            row = [v]
            for t in attack_types:
                entry = get_path(runs, v, "by_attack", t) or {}
                row.append(fmt(entry.get("fpr" if t == "benign" else "tpr"), 4))
            rows.append(row)
        parts += [
            "## Per attack type (pooled TPR; FPR for benign rows)",
            "",
            markdown_table(["variant", *attack_types], rows),
            "",
        ]
    cost = []
    for v in runs:
        cost.append(
            [
                v,
                fmt(get_path(runs, v, "wall_seconds"), 1),
                fmt(get_path(runs, v, "bytes_sent")),
                fmt(get_path(runs, v, "bytes_received")),
            ]
        )
    parts += ["## Cost", "", markdown_table(["variant", "wall s", "bytes sent", "bytes received"], cost), ""]
    seed_rows = SEED_TABLES.get(name)
    if seed_rows:
        parts += [
            "## The seed README's table (for comparison; different data and protocol)",
            "",
            "Seed: N-BaIoT, unstated split and threshold, F1 in percent, minutes on a Colab K80. Ours above: "
            "fractions, stated protocol.",
            "",
            markdown_table(
                ["method", "avg TPR", "avg FPR", "avg F1 (%)", "time (min)"],
                [[m, fmt(a, 5), fmt(b, 5), fmt(c, 3), fmt(d, 1)] for m, a, b, c, d in seed_rows],
            ),
            "",
        ]
    if out is not None:
        plots = [
            ("Training loss per round", plot_round_loss(runs, Path(out) / "loss.png")),
            ("Per-client TPR / FPR", plot_client_rates(runs, Path(out) / "clients.png")),
            (
                "Score distributions with the threshold",
                plot_score_distributions(runs, Path(out) / "scores.png"),
            ),
        ]
        made = [(title, p) for title, p in plots if p is not None]
        if made:
            parts += ["## Plots", ""] + [f"![{title}]({p.name})" for title, p in made] + [""]
    for v in runs:
        clients = get_path(runs, v, "clients") or {}
        if not clients or "->" in next(iter(clients)):
            continue
        rows = [
            [
                cid,
                fmt(c.get("tpr")),
                fmt(c.get("fpr")),
                fmt(c.get("f1")),
                fmt(c.get("tp")),
                fmt(c.get("fp")),
                fmt(c.get("tn")),
                fmt(c.get("fn")),
            ]
            for cid, c in clients.items()
        ]
        parts += [
            f"### Per client: {v}",
            "",
            markdown_table(["client", "TPR", "FPR", "F1", "TP", "FP", "TN", "FN"], rows),
            "",
        ]
    return "\n".join(parts)
