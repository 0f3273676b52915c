"""Detector scoring throughput: rows/s of ``reconstruction_errors`` on 115-wide rows, per call size.

One call scores ``--batch`` rows (1: one packet at a time, as a live gateway might; 256: a small window;
65536: offline scoring, one chunk of ``reconstruction_errors``' own loop) with the 115-86-58-38-29
autoencoder. Rows: the shipped real N-BaIoT samples (benign + attacks, ``data/nbaiot/samples``),
log1p-compressed and standardised, tiled to the call size. Each size is timed for at least ``--seconds``.

Run: ``python benchmarks/bench_scoring.py [--threads 1] [--seconds 1]``
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray

from fediot.models.autoencoder import Autoencoder, AutoencoderConfig
from fediot.models.train import reconstruction_errors
from fediot.models.weights import init_module

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "nbaiot" / "samples"
NUM_FEATURES = 115


def load_rows() -> NDArray[np.float32]:
    frames = [pd.read_csv(p).select_dtypes("number") for p in sorted(SAMPLES.glob("*.csv.gz"))]
    x = np.log1p(np.abs(np.concatenate([f.to_numpy(np.float64)[:, :NUM_FEATURES] for f in frames])))
    return ((x - x.mean(0)) / (x.std(0) + 1e-6)).astype(np.float32)


def time_calls(module: torch.nn.Module, x: NDArray[np.float32], seconds: float) -> tuple[float, int]:
    """Return (seconds per call, calls made) of ``reconstruction_errors(module, x)``."""
    for _ in range(3):
        reconstruction_errors(module, x)
    calls, t0 = 0, time.perf_counter()
    while True:
        reconstruction_errors(module, x)
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return elapsed / calls, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 256, 65536], help="rows per call")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum timing per call size")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    module = init_module(Autoencoder(AutoencoderConfig(NUM_FEATURES)), 0)
    rows = load_rows()
    print(
        f"reconstruction_errors, autoencoder 115-86-58-38-29 (~73 kFLOP/row), {rows.shape[0]} real N-BaIoT "
        f"rows tiled; {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    )
    for batch in args.batch:
        x = np.ascontiguousarray(np.resize(rows, (batch, NUM_FEATURES)))
        per_call, calls = time_calls(module, x, args.seconds)
        gflops = 2 * 36368 * batch / per_call / 1e9
        print(
            f"batch {batch:>6}: {batch / per_call:>12,.0f} rows/s  {per_call * 1e6:>10.1f} us/call  "
            f"({gflops:.1f} GFLOP/s, {calls} calls)"
        )


if __name__ == "__main__":
    main()
