"""Global vs per-device calibrated thresholds of a `fediot run` FL detector on the gateway dataset.

Usage (after `fediot run --seed S --out RUN`, which saves the FL detector as RUN/detector.npz):

    python benchmarks/calibrate_gateway.py RUN [RUN ...]

Per run, three ways to threshold the same detector's scores of every device's test rows (its benign test
third + its flood rows), with the experiment's evaluation (macro over devices; window = majority vote of 10
consecutive rows of one segment):

- ``global``: the federated threshold (as published in ``results.json``; checked);
- ``local (port)``: each device's threshold fitted by ``calibrate_scores`` on *all* its benign opt rows,
  i.e. every packet seen at the device's port (what ``detect.local_thresholds`` reports; checked against
  ``results.json``);
- ``calibrated (own MAC)``: what ``fediot calibrate --device MAC`` then ``fediot detect`` do: the threshold
  is fitted on the opt rows the device *sent* (source MAC = the device; about 62% of them, the rest are
  its peers' replies), and applied to the rows the device sent; the other rows keep the global threshold.

The rows' source MACs come from the IoT Sentinel captures the dataset was built from (benign rows are the
device's first packets in time order, one row per packet); in gateway v1 every flood packet carries the
device's MAC. Fails unless the detector's dataset fingerprint matches the default gateway dataset.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fediot.data.anomaly import AnomalyDataset, _thirds
from fediot.data.gateway import _TAR, GatewayConfig, _read_sentinel
from fediot.data.paths import shipped_file
from fediot.detect.calibrate import calibrate_scores
from fediot.detect.detector import AnomalyDetector
from fediot.detect.evaluate import evaluate_scores, summarize_evaluations
from fediot.experiments.anomaly import dataset_fingerprint
from fediot.experiments.datasets import DataConfig, load_anomaly_dataset

KEYS = ("tpr", "fpr", "balanced_accuracy")


def source_is_device(ds: AnomalyDataset) -> dict[str, tuple[NDArray[np.bool_], NDArray[np.bool_]]]:
    """Per device: (opt rows sent by the device, test rows sent by the device)."""
    gw = GatewayConfig()
    sentinel = _read_sentinel(shipped_file(_TAR))
    out = {}
    for cid, split in ds.clients.items():
        mac, packets, _ = sentinel[cid]
        n = min(len(packets), gw.max_benign_packets)
        own = packets.src_mac[:n] == np.uint64(mac)
        _, op, te = _thirds(n)
        test = split.tests["test"]
        n_attack = int(test.y.sum())
        if own[op].size != split.x_opt.shape[0] or own[te].size + n_attack != test.y.size:
            raise SystemExit(f"{cid}: the captures do not match the dataset's rows (rebuild the dataset)")
        out[cid] = (own[op], np.concatenate([own[te], np.ones(n_attack, bool)]))
    return out


def _once(scores: NDArray[np.float64]) -> Callable[[], list[NDArray[np.float64]]]:
    return lambda: [scores]


def evaluate(run: Path, ds: AnomalyDataset, own: dict[str, Any]) -> dict[str, dict[str, Any]]:
    detector = AnomalyDetector.load(run / "detector.npz")
    if detector.dataset_ != dataset_fingerprint(ds):
        raise SystemExit(f"{run / 'detector.npz'}: trained on another dataset than the default gateway one")
    window = detector.window_ or 1
    g = detector.threshold_
    evals: dict[str, dict[str, Any]] = {"global": {}, "local (port)": {}, "calibrated (own MAC)": {}}
    shares = []
    for cid, split in ds.clients.items():
        test = split.tests["test"]
        opt_own, test_own = own[cid]
        opt_scores = detector.anomaly_score(split.x_opt)
        scores = detector.anomaly_score(test.x)
        port = calibrate_scores(copy.deepcopy(detector), cid, _once(opt_scores)).threshold
        mine = calibrate_scores(copy.deepcopy(detector), cid, _once(opt_scores[opt_own])).threshold
        shares.append(opt_own.mean())
        per_row = np.where(test_own, mine, g)
        evals["global"][cid] = evaluate_scores(scores, g, test, window=window)
        evals["local (port)"][cid] = evaluate_scores(scores, port, test, window=window)
        # s > t  <=>  s - t > 0 (IEEE), so a per-row threshold goes through the same evaluation
        evals["calibrated (own MAC)"][cid] = evaluate_scores(scores - per_row, 0.0, test, window=window)
    print(f"{run}: opt rows sent by the device: mean share {np.mean(shares):.2f} over {len(shares)} devices")
    return {name: summarize_evaluations(e, window=window) for name, e in evals.items()}


def main() -> None:
    runs = [Path(a) for a in sys.argv[1:]]
    if not runs:
        raise SystemExit(__doc__)
    ds = load_anomaly_dataset(DataConfig(), seed=0)  # the gateway dataset does not depend on the seed
    own = source_is_device(ds)
    table: dict[str, list[list[float]]] = {}
    for run in runs:
        results = json.loads((run / "results.json").read_text(encoding="utf-8"))
        fl = results["runs"]["FL"]
        summary = evaluate(run, ds, own)
        for name, published in (("global", fl), ("local (port)", fl.get("local_threshold"))):
            if published is not None:
                for key in KEYS:
                    assert abs(published["macro"][key] - summary[name]["macro"][key]) < 1e-12, (name, key)
                    w_pub, w_got = published["window"]["macro"][key], summary[name]["window"]["macro"][key]
                    assert abs(w_pub - w_got) < 1e-12, (name, "window", key)
        for name, s in summary.items():
            table.setdefault(name, []).append(
                [s["macro"][k] for k in KEYS] + [s["window"]["macro"][k] for k in KEYS]
            )
    rates = ("TPR", "FPR", "bal. acc.")
    head = ("threshold", *(f"{scope} {r}" for scope in ("macro", "window") for r in rates))
    print("| " + " | ".join(head) + " |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in table.items():
        a = np.array(rows)
        cells = [
            f"{m:.3f}" if len(rows) == 1 else f"{m:.3f} ± {s:.3f}"
            for m, s in zip(a.mean(0), a.std(0, ddof=1) if len(rows) > 1 else a.mean(0), strict=True)
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
