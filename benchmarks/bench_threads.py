"""Torch threads for fediot's small models: 1 vs 2 threads, quiet and beside a competing CPU-bound process.

Workloads (real rows: the first ``--rows`` packets' N-BaIoT features of the shipped UDP amplification
capture ``data/ddos_pcaps/amp.UDP.bacnet.IOT.37810.pcap.gz``, extracted by ``fediot.features``, log-minmax
scaled):

- training: ``fediot.models.train_autoencoder`` on those rows (115-86-58-38-29 autoencoder, Adam, lr 1e-3,
  batch 32, ``--epochs`` epochs: the detector's default settings, fewer epochs);
- scoring: ``AutoencoderScorer(backend="torch").score`` of 65,536 rows (the rows tiled).

Each workload runs at 1 and 2 torch threads, interleaved, ``--repeats`` times; the table shows the median
wall time. "busy" = while one competing process spins on a core (``python -c`` busy loop, started by this
script, stopped by its PID, and bounded to ``--max-busy`` seconds on its own). The machine's 1-minute load
average is printed with each condition: on a shared machine "quiet" means only the others' load.

Training results must not depend on the thread count: the script compares the trained weights of the
1- and 2-thread runs bit for bit and prints the result.

Run: ``python benchmarks/bench_threads.py [--repeats 3] [--epochs 2]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from fediot.data.scaling import SufficientStats, make_scaler, scaler_inputs
from fediot.features import extract_features, read_packets
from fediot.models import (
    Autoencoder,
    AutoencoderConfig,
    AutoencoderScorer,
    TrainConfig,
    init_module,
    set_threads,
    train_autoencoder,
)

CAPTURE = Path(__file__).resolve().parents[1] / "data" / "ddos_pcaps" / "amp.UDP.bacnet.IOT.37810.pcap.gz"
SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


def real_rows(n: int) -> NDArray[np.float32]:
    packets, _ = read_packets([CAPTURE], order="time")
    features, _ = extract_features(packets.take(np.arange(min(n, len(packets)))), order="given")
    scaler = make_scaler("log-minmax", SufficientStats.from_array(scaler_inputs("log-minmax", features)))
    return scaler.transform(features)


def train_once(x: NDArray[np.float32], epochs: int) -> tuple[float, list[torch.Tensor]]:
    module = init_module(Autoencoder(AutoencoderConfig(x.shape[1])), 0)
    config = TrainConfig(epochs=epochs, batch_size=32, lr=1e-3, optimizer="adam")
    t0 = time.perf_counter()
    train_autoencoder(module, x, config, seed=0)
    return time.perf_counter() - t0, [p.detach().clone() for p in module.parameters()]


def score_once(scorer: AutoencoderScorer, x: NDArray[np.float32]) -> float:
    t0 = time.perf_counter()
    scorer.score(x)
    return time.perf_counter() - t0


def measure(workloads: dict[str, Callable[[], float]], repeats: int) -> dict[tuple[str, int], list[float]]:
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(repeats):
        for threads in (1, 2):
            set_threads(threads)
            for name, fn in workloads.items():
                times.setdefault((name, threads), []).append(fn())
    set_threads(1)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="real rows for training")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions per cell")
    parser.add_argument(
        "--max-busy", type=float, default=300.0, help="upper bound of the competitor's life (s)"
    )
    args = parser.parse_args()
    set_threads(1)
    x = real_rows(args.rows)
    big = np.ascontiguousarray(np.resize(x, (65536, x.shape[1])))
    scorer = AutoencoderScorer(init_module(Autoencoder(AutoencoderConfig(x.shape[1])), 0), backend="torch")
    weights: dict[int, list[torch.Tensor]] = {}

    def training() -> float:
        seconds, w = train_once(x, args.epochs)
        weights.setdefault(torch.get_num_threads(), w)
        return seconds

    workloads = {
        f"training ({x.shape[0]} rows, {args.epochs} epochs)": training,
        "scoring (65,536 rows)": lambda: score_once(scorer, big),
    }
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__}; {x.shape[0]} real rows from {CAPTURE.name}")
    results: dict[str, dict[tuple[str, int], list[float]]] = {}
    load: dict[str, float] = {}
    load["quiet"] = os.getloadavg()[0]
    results["quiet"] = measure(workloads, args.repeats)
    spin = subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=args.max_busy)])
    try:
        time.sleep(0.5)
        load["busy"] = os.getloadavg()[0]
        results["busy"] = measure(workloads, args.repeats)
    finally:
        spin.kill()  # by PID (Popen.kill signals spin.pid)
        spin.wait(timeout=10)
    print(f"competitor PID {spin.pid} stopped (exit {spin.returncode})")
    print("\n| workload | condition (load avg) | 1 thread s | 2 threads s | 2 threads / 1 thread |")
    print("|---|---|---|---|---|")
    for name in workloads:
        for cond in ("quiet", "busy"):
            one = statistics.median(results[cond][(name, 1)])
            two = statistics.median(results[cond][(name, 2)])
            print(f"| {name} | {cond} ({load[cond]:.1f}) | {one:.3f} | {two:.3f} | {two / one:.2f}x |")
    same = all(torch.equal(a, b) for a, b in zip(weights[1], weights[2], strict=True))
    diff = max(float((a - b).abs().max()) for a, b in zip(weights[1], weights[2], strict=True))
    print(
        "\ntrained weights at 1 vs 2 threads: "
        + ("bit-identical" if same else f"differ (max |diff| {diff:.3g})")
    )


if __name__ == "__main__":
    main()
