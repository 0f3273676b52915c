"""Seconds per round: the in-process runtime (sequential and batched) vs Flower's simulation engine.

Workload: 9 clients x 20 rounds (``--rounds``), the 115-86-58-38-29 autoencoder, 2,000 rows per client,
1 local epoch, FedAvgM. Data: the 299 real N-BaIoT benign rows shipped in ``data/nbaiot/samples``,
log1p-compressed, tiled to 2,000 rows per client with small multiplicative jitter (a stand-in for the
full N-BaIoT data, which is not available offline; the timing does not depend on the values).

Three transports of the one federation engine (``fediot.federated.engine.run_fl``: federated scaler,
rounds, federated threshold) on the same FedAvgM configuration, in one process, one after another:

- ``sim sequential``: the in-process transport with the sequential executor (one client after another);
- ``sim batched``: the in-process transport with ``BatchedAutoencoderExecutor`` (all selected clients
  trained at once with stacked parameters; same results, checked below);
- ``flower``: Flower's ``run_simulation`` (Ray) with fediot's ServerApp and ClientApp over the same clients.

Run: ``python benchmarks/bench_runtimes.py [--rounds 5] [--threads 1] [--skip-flower]``

At scale, the issue-#13 workload (1,000 simulated nodes, 10% per round, 20 rounds, both sides on one CPU):
``python benchmarks/bench_runtimes.py --clients 1000 --fraction 0.1 --rows 200 --threads 1 --flower-cpus 1``.
Peak memory is sampled every 0.2 s over this process and all its descendants (Ray's workers included).

On a shared 2-core machine pass ``--threads 1``: with 2 OpenMP threads, tiny GEMMs spin-wait whenever
another process holds a core and a round can take 10-100x longer (measured); Flower's Ray actors run one
thread each.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

for _key, _value in {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
}.items():
    os.environ.setdefault(_key, _value)

from fediot.config import FLConfig  # noqa: E402
from fediot.federated.client import AutoencoderClient, Client  # noqa: E402
from fediot.federated.engine import FederationResult, run_fl  # noqa: E402
from fediot.federated.types import Weights  # noqa: E402
from fediot.flower.server_app import initial_weights  # noqa: E402
from fediot.models.autoencoder import Autoencoder, AutoencoderConfig  # noqa: E402
from fediot.models.train import TrainConfig  # noqa: E402
from fediot.sim.batched import BatchedAutoencoderExecutor  # noqa: E402
from fediot.sim.runtime import Executor, InProcessTransport  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "nbaiot" / "samples" / "benign_traffic.csv.gz"
NUM_FEATURES = 115


def make_config(args: argparse.Namespace) -> FLConfig:
    return FLConfig.from_dict(
        {
            "seed": args.seed,
            "federated": {
                "rounds": args.rounds,
                "fraction_fit": args.fraction,
                "min_fit_clients": 1,
                "local_epochs": 1,
                "server_momentum": 0.9,
            },
            "train": {"optimizer": "sgd", "lr": 0.01},
            "server": {
                "min_available_clients": args.clients,
                "round_timeout": 1800.0,
                "connect_timeout": 7200.0,  # 1,000 simulated nodes identify at ~1 per second on one CPU
            },
        }
    )


def make_clients(num_clients: int, rows: int, seed: int) -> dict[str, Client]:
    base = pd.read_csv(SAMPLE).select_dtypes("number").to_numpy(np.float64)[:, :NUM_FEATURES]
    base = np.log1p(np.abs(base))
    rng = np.random.default_rng(seed)
    clients: dict[str, Client] = {}
    for i in range(num_clients):
        idx = rng.integers(0, base.shape[0], size=rows)
        x = (base[idx] * rng.normal(1.0, 0.01, size=(rows, NUM_FEATURES))).astype(np.float32)
        c = AutoencoderClient(
            f"dev{i}",
            lambda: Autoencoder(AutoencoderConfig(NUM_FEATURES)),
            x,
            x[:0],
            TrainConfig(epochs=1, batch_size=64, lr=0.01),
            seed=seed,
        )
        clients[c.client_id] = c
    return clients


def bench_sim(args: argparse.Namespace, executor: Executor | None = None) -> tuple[float, FederationResult]:
    cfg = make_config(args)
    clients = make_clients(args.clients, args.rows, args.seed)
    t0 = time.perf_counter()
    result = run_fl(InProcessTransport(dict(sorted(clients.items())), executor), cfg, initial_weights(cfg))
    return time.perf_counter() - t0, result


def max_diff(a: Weights, b: Weights) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def bench_flower(args: argparse.Namespace) -> tuple[float, FederationResult]:
    from flwr.simulation import run_simulation

    from fediot.flower import ServerResult, make_client_app, make_server_app

    cfg = make_config(args)
    clients = make_clients(args.clients, args.rows, args.seed)
    ids = sorted(clients)
    results: list[ServerResult] = []

    def client_fn(context: Any) -> Client:
        return clients[ids[int(context.node_config["partition-id"])]]

    server = make_server_app(lambda _c: cfg, on_result=results.append)
    random.seed(args.seed)
    t0 = time.perf_counter()
    run_simulation(
        server_app=server,
        client_app=make_client_app(client_fn),
        num_supernodes=args.clients,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": args.flower_cpus or os.cpu_count() or 1},
        },
    )
    return time.perf_counter() - t0, results[0].federation


class PeakRSS:
    """Samples the summed RSS of this process and its descendants (``/proc``) in a thread; keeps the peak."""

    def __init__(self, interval: float = 0.2) -> None:
        import threading

        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    @staticmethod
    def tree_rss() -> int:
        parents: dict[int, int] = {}
        rss: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                pid = int(stat.parent.name)
                parents[pid] = int(fields[1])
                rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, ValueError, IndexError):
                continue
        me, total = os.getpid(), 0
        for pid, size in rss.items():
            p = pid
            while p not in (0, 1, me) and p in parents:
                p = parents[p]
            if p == me:
                total += size
        return total

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.peak = max(self.peak, self.tree_rss())

    def __enter__(self) -> PeakRSS:
        self.peak = self.tree_rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.tree_rss())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fraction", type=float, default=1.0, help="clients trained per round (fraction)")
    parser.add_argument(
        "--flower-cpus", type=int, default=0, help="CPUs Ray may use (0: all); 1 = one ClientApp actor"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads of this process (0: torch's default)"
    )
    parser.add_argument("--skip-flower", action="store_true", help="time the in-process runtimes only")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(
        f"workload: {args.clients} clients x {args.rounds} rounds, autoencoder 115-86-58-38-29, "
        f"{args.rows} rows/client (299 real N-BaIoT benign rows tiled + 1% jitter), 1 local epoch, FedAvgM; "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} thread(s) in-process"
    )
    with PeakRSS() as mem_sim:
        sim_s, sim = bench_sim(args)
    bat_s, bat = bench_sim(args, BatchedAutoencoderExecutor())
    rss_sim = mem_sim.peak / 2**20
    per_round_sim = sim_s / args.rounds
    per_round_bat = bat_s / args.rounds
    print(
        f"sim sequential          : {per_round_sim:7.3f} s/round  (total {sim_s:.1f} s, RSS {rss_sim:.0f} M)"
    )
    print(f"sim batched             : {per_round_bat:7.3f} s/round  (total {bat_s:.2f} s)")
    print(f"ratio sequential/batched: {per_round_sim / per_round_bat:7.2f}x")
    print(f"max |w_seq - w_batched| : {max_diff(sim.weights, bat.weights):.3g}")
    if args.skip_flower:
        return
    with PeakRSS() as mem_fl:
        fl_s, fl = bench_flower(args)
    per_round_fl = fl_s / args.rounds
    in_round_fl = float(np.mean([r.seconds for r in fl.rounds]))
    print(
        f"flower run_simulation   : {per_round_fl:7.3f} s/round  (total {fl_s:.1f} s incl. Ray start/stop, "
        f"peak RSS {mem_fl.peak / 2**20:.0f} M incl. Ray; {args.flower_cpus or os.cpu_count()} CPU(s))"
    )
    print(f"flower, rounds only     : {in_round_fl:7.3f} s/round  (mean of the ServerApp's round timings)")
    for name, per_round in (("sequential", per_round_sim), ("batched", per_round_bat)):
        ratio, ratio_rounds = per_round_fl / per_round, in_round_fl / per_round
        print(f"ratio flower/{name:<11}: {ratio:7.2f}x  (flower rounds only: {ratio_rounds:.2f}x)")
    print(f"max |w_seq - w_flower|  : {max_diff(sim.weights, fl.weights):.3g}")


if __name__ == "__main__":
    main()
