"""``fediot extract`` as a whole process vs in-process extraction, and the table writer vs pandas' to_csv.

For each workload (the shipped captures in ``data/ddos_pcaps``, each alone and both together) this script
times, interleaved, ``--repeats`` times, best (minimum) wall time each:

- ``whole command``: a fresh ``fediot -q extract ... -o out.csv`` process (the installed entry point), after
  one warm-up run, so numba's on-disk cache is filled ("warm", as a user's second run);
- ``in-process extraction``: ``fediot.features.extract_features`` on the same files (warm, in this process);
- ``writer``: ``fediot.features.writer.write_csv`` of that feature matrix, and the former writer
  ``pandas.DataFrame(...).to_csv(index=False)`` (the bytes are checked identical);
- ``startup``: a fresh process that only imports ``fediot.cli`` and the extractor (the floor of any command).

Run: ``python benchmarks/bench_extract_cli.py [--repeats 3]``
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from fediot.features import extract_features, feature_names
from fediot.features.writer import write_csv

DATA = Path(__file__).resolve().parents[1] / "data" / "ddos_pcaps"
SYN = DATA / "pkt.TCP.synflood.spoofed.pcap.gz"
AMP = DATA / "amp.UDP.bacnet.IOT.37810.pcap.gz"
STARTUP = "import fediot.cli, fediot.features.afterimage_fast, fediot.features.writer"


def wall(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_cli(pcaps: list[Path], out: Path) -> None:
    cmd = [str(Path(sys.executable).parent / "fediot"), "-q", "extract", *map(str, pcaps), "-o", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions (best is kept)")
    args = parser.parse_args()
    workloads = {"SYN flood (spoofed)": [SYN], "UDP amplification": [AMP], "both": [SYN, AMP]}
    names = feature_names()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "features.csv"
        run_cli([SYN], out)  # warm numba's cache
        for label, pcaps in workloads.items():
            features, summary = extract_features(pcaps)
            best = {k: float("inf") for k in ("cli", "extract", "writer", "pandas", "startup")}
            for _ in range(args.repeats):
                best["cli"] = min(best["cli"], wall(lambda p=pcaps: run_cli(p, out)))
                best["extract"] = min(best["extract"], wall(lambda p=pcaps: extract_features(p)))
                buf = io.BytesIO()
                best["writer"] = min(best["writer"], wall(lambda b=buf, f=features: write_csv(b, f, names)))
                old: list[bytes] = []

                def pandas_csv(f: NDArray[np.float64] = features, sink: list[bytes] = old) -> None:
                    sink.append(pd.DataFrame(f, columns=names).to_csv(index=False).encode())

                best["pandas"] = min(best["pandas"], wall(pandas_csv))
                cmd = [sys.executable, "-c", STARTUP]
                best["startup"] = min(best["startup"], wall(lambda c=cmd: subprocess.run(c, check=True)))
            same = buf.getvalue() == old[-1] == out.read_bytes()
            n = summary.num_packets
            rows.append((label, n, best, same))
    print(f"python {sys.version.split()[0]}; best of {args.repeats} interleaved runs, wall time\n")
    print(
        "| workload | packets | whole command s (pkt/s) | in-process extraction s (pkt/s) "
        "| command / extraction | writer s | pandas to_csv s | to_csv / writer | process startup s "
        "| bytes identical |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, n, b, same in rows:
        print(
            f"| {label} | {n:,} | {b['cli']:.2f} ({n / b['cli']:,.0f}) "
            f"| {b['extract']:.2f} ({n / b['extract']:,.0f}) | {b['cli'] / b['extract']:.2f}x "
            f"| {b['writer']:.3f} | {b['pandas']:.2f} | {b['pandas'] / b['writer']:.1f}x "
            f"| {b['startup']:.2f} | {same} |"
        )


if __name__ == "__main__":
    main()
