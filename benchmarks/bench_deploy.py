"""Per-round cost of a real Flower deployment on loopback vs ``fediot.sim.run_rounds``, same workload.

Each configuration starts a SuperLink (TLS, SuperNode authentication) and N SuperNodes with registered
keys, each serving one gateway's rows (the shipped N-BaIoT benign sample, min-max scaled, split in time
order), submits ``flwr run`` and reads the per-round wall time the ServerApp records (``history-path``).
The in-process runtime trains the same clients (``fediot.flower.client_app.node_client``) with the same
run config. Every process is started in its own process group and stopped by group.

    FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1 FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 \\
        python benchmarks/bench_deploy.py --nodes 3 9 --rounds 4

Settings compared (``--settings``):

- ``flower-default``: ``--isolation subprocess``, SuperExec task poll 1 s, replies polled every 3 s
  (what ``Grid.send_and_receive`` does);
- ``tuned``: ``--isolation subprocess``, task poll 0.1 s (``FLWR_SUPEREXEC_TASK_POLL_INTERVAL``),
  ``poll-interval = 0.2`` in the run config;
- ``process``: as ``tuned`` but ``--isolation process`` with one operator-started ``flower-superexec``
  per SuperNode.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from fediot.config import FLConfig, fl_config_from_run_config, to_run_config
from fediot.data.nbaiot import read_nbaiot_csv
from fediot.federated.engine import run_fl
from fediot.flower import deploy
from fediot.flower.client_app import node_client
from fediot.flower.server_app import initial_weights
from fediot.sim.runtime import InProcessTransport

NBAIOT = Path(__file__).resolve().parents[1] / "data" / "nbaiot"
CONNECTION = "bench"
SETTINGS: dict[str, dict[str, Any]] = {
    "flower-default": {"isolation": "subprocess", "task_poll": "1.0", "poll_interval": 3.0},
    "tuned": {"isolation": "subprocess", "task_poll": "0.1", "poll_interval": 0.2},
    "process": {"isolation": "process", "task_poll": "0.1", "poll_interval": 0.2},
}


def run_config(num_nodes: int, rounds: int) -> dict[str, Any]:
    return to_run_config(
        FLConfig.from_dict(
            {
                "federated": {
                    "rounds": rounds,
                    "fraction_fit": 1.0,
                    "min_fit_clients": max(1, num_nodes - 1),  # a node starved of CPU may miss a heartbeat
                    "local_epochs": 1,
                    "server_momentum": 0.9,
                },
                "train": {"optimizer": "sgd", "lr": 0.01, "batch_size": 16},
                "server": {
                    "min_available_clients": num_nodes,
                    "round_timeout": 300.0,
                    "connect_timeout": 300.0,
                },
            }
        )
    )


def write_gateways(folder: Path, num_nodes: int) -> list[Path]:
    lo = np.loadtxt(NBAIOT / "metadata" / "fediot_feature_min.txt")
    hi = np.loadtxt(NBAIOT / "metadata" / "fediot_feature_max.txt")
    x = (read_nbaiot_csv(NBAIOT / "samples" / "benign_traffic.csv.gz") - lo) / np.where(hi > lo, hi - lo, 1.0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, rows in enumerate(np.array_split(x.astype(np.float32), num_nodes), start=1):
        paths.append(folder / f"gw{i}.npy")
        np.save(paths[-1], rows)
    return paths


def in_process(data: list[Path], config: dict[str, Any]) -> float:
    """Seconds per round of the in-process transport of the same engine on the same clients and config."""
    cfg = fl_config_from_run_config(config)
    clients = {p.stem: node_client({"data-path": str(p), "client-id": p.stem}, config) for p in data}
    result = run_fl(InProcessTransport(dict(sorted(clients.items()))), cfg, initial_weights(cfg))
    return statistics.mean(r.seconds for r in result.rounds)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def deployed(
    root: Path, data: list[Path], config: dict[str, Any], setting: dict[str, Any]
) -> dict[str, float]:
    """Start a federation, run it once, stop it; return per-round and end-to-end seconds."""
    certs = deploy.generate_certs(root / "certs", num_nodes=len(data))
    env = deploy.flower_env(
        {"FLWR_HOME": str(root / "flwr-home"), "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": setting["task_poll"]}
    )
    port = free_port()
    deploy.write_connection(
        root / "flwr-home", CONNECTION, address=f"127.0.0.1:{port}", root_cert=certs.ca_cert
    )
    app_config = {
        **config,
        "server.history-path": str(root / "history.json"),
        "server.poll-interval": setting["poll_interval"],
    }
    deploy.write_app(root / "app", app_config)
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        procs.append(deploy.start_process(cmd, log_path=root / f"{name}.log", env=env))
        return procs[-1]

    try:
        superlink = start("superlink", deploy.superlink_command(certs, port=port, database=root / "state.db"))
        deploy.wait_for_tls("127.0.0.1", port, certs.ca_cert, timeout=60, proc=superlink)
        for public_key in certs.node_public_keys:
            subprocess.run(
                deploy.register_command(public_key, CONNECTION), env=env, check=True, capture_output=True
            )
        for path, key in zip(data, certs.node_keys, strict=True):
            node_port = free_port()
            cmd = deploy.supernode_command(
                f"127.0.0.1:{port}",
                root_cert=certs.ca_cert,
                auth_key=key,
                node_config={"data-path": str(path), "client-id": path.stem},
                port=node_port,
                isolation=setting["isolation"],
            )
            start(f"supernode-{path.stem}", cmd)
            if setting["isolation"] == "process":
                start(f"superexec-{path.stem}", deploy.superexec_command(f"127.0.0.1:{node_port}"))
        t0 = time.perf_counter()
        run = start("run", deploy.run_command(root / "app", CONNECTION, stream=True))
        code = run.wait(timeout=1800)
        wall = time.perf_counter() - t0
        history = json.loads((root / "history.json").read_text())
        if code != 0 or not history["finished"]:
            raise RuntimeError(f"run failed ({code}):\n{(root / 'run.log').read_text()[-3000:]}")
    finally:
        for proc in reversed(procs):
            deploy.stop_process(proc)
    seconds = [r["seconds"] for r in history["rounds"]]
    failures = sum(r["failures"] for r in history["rounds"])
    return {"round": statistics.mean(seconds), "end_to_end": wall / len(seconds), "failures": failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 9])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    args = parser.parse_args()
    print(f"{'nodes':>5} {'setting':<15} {'s/round':>8} {'e2e s/round':>11}", end=" ")
    print(f"{'sim s/round':>11} {'ratio':>7} failures")
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        for n in args.nodes:
            config = run_config(n, args.rounds)
            data = write_gateways(Path(tmp) / f"data-{n}", n)
            sim = in_process(data, config)
            for name in args.settings:
                d = deployed(Path(tmp) / f"{name}-{n}", data, config, SETTINGS[name])
                print(
                    f"{n:>5} {name:<15} {d['round']:>8.2f} {d['end_to_end']:>11.2f} {sim:>11.3f} "
                    f"{d['round'] / sim:>6.0f}x {d['failures']:>8.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
