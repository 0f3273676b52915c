"""Per-round cost of a real Flower deployment on loopback vs ``fediot.sim.run_rounds``, same workload.

Each configuration starts what ``fediot server`` starts — a SuperLink (TLS, SuperNode authentication) on
loopback and the fleet gate in front of it — and N SuperNodes with registered keys that connect through
the gate, each serving one gateway's rows (the shipped N-BaIoT benign sample, min-max scaled, split in
time order); it submits ``flwr run`` and reads the per-round wall time the ServerApp records
(``history-path``). The in-process runtime trains the same clients
(``fediot.flower.client_app.node_client``) with the same run config, at the same torch thread count as
each ClientApp (fediot's default: 1). Every process is started in its own process group and stopped by
group.

Before the deployments it measures the start-up of one ClientApp process — what Flower 1.41 pays for
every message: a fresh interpreter importing Flower's ClientApp runtime and ``fediot.flower.client_app``
— as the median of ``--startup-repeats`` runs.

``--src A B`` compares code trees (checkouts of fediot; each run with ``PYTHONPATH=TREE/src``, which every
Flower process inherits), interleaved, in one invocation: the before/after ratios of BENCHMARKS.md.

    FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1 FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 \\
        python benchmarks/bench_deploy.py --nodes 3 --rounds 4 --settings tuned --src /tmp/before .

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
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.common.config import flatten_dict, get_project_config

from fediot.config import FLConfig, fl_config_from_run_config, to_run_config
from fediot.data.nbaiot import read_nbaiot_csv
from fediot.federated.engine import run_fl
from fediot.flower import deploy
from fediot.flower.client_app import node_client
from fediot.flower.gate import gate_command
from fediot.flower.server_app import initial_weights
from fediot.models import get_threads
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


STARTUP = "import flwr.clientapp, flwr.app; import fediot.flower.client_app as m; m.app"
"""What a fresh ``flwr-clientapp`` process imports before it can handle a fediot message."""


def tree_env(src: Path | None) -> dict[str, str]:
    """The environment whose Python imports fediot from code tree ``src`` (None: as installed)."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src.resolve() / "src"), env.get("PYTHONPATH", "")])
    return env


def clientapp_startup(src: Path | None) -> float:
    """Wall seconds of one fresh interpreter importing what a ClientApp process imports."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", STARTUP], env=tree_env(src), check=True)
    return time.perf_counter() - t0


def deployed(
    root: Path, data: list[Path], config: dict[str, Any], setting: dict[str, Any], src: Path | None = None
) -> dict[str, float]:
    """Start a federation, run it once, stop it; return per-round and end-to-end seconds."""
    certs = deploy.generate_certs(root / "certs", num_nodes=len(data))
    extra = {"FLWR_HOME": str(root / "flwr-home"), "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": setting["task_poll"]}
    env = deploy.flower_env({**extra, "PYTHONPATH": tree_env(src).get("PYTHONPATH", "")})
    port, control_port = free_port(), free_port()  # the fleet gate (gateways); the SuperLink (flwr CLI)
    deploy.write_connection(
        root / "flwr-home", CONNECTION, address=f"127.0.0.1:{control_port}", root_cert=certs.ca_cert
    )
    app_config = {
        **config,
        "server.history-path": str(root / "history.json"),
        "server.poll-interval": setting["poll_interval"],
    }
    if src is not None:  # an older tree refuses keys it does not know (e.g. server.events-path)
        known = set(flatten_dict(get_project_config(src)["tool"]["flwr"]["app"]["config"]))
        app_config = {k: v for k, v in app_config.items() if k in known}
    deploy.write_app(root / "app", app_config)
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        procs.append(deploy.start_process(cmd, log_path=root / f"{name}.log", env=env))
        return procs[-1]

    try:
        superlink = start(
            "superlink",
            deploy.superlink_command(certs, host="127.0.0.1", port=control_port, database=root / "state.db"),
        )
        gate = start(
            "gate",
            gate_command(f"127.0.0.1:{port}", f"127.0.0.1:{control_port}", certs_dir=certs.ca_cert.parent),
        )
        deploy.wait_for_tls("127.0.0.1", control_port, certs.ca_cert, timeout=60, proc=superlink)
        deploy.wait_for_tls("127.0.0.1", port, certs.ca_cert, timeout=60, proc=gate)
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
        found = (root / "history.json").exists()
        history = json.loads((root / "history.json").read_text()) if found else {"finished": False}
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
    parser.add_argument("--src", type=Path, nargs="+", help="code trees to compare (default: as installed)")
    parser.add_argument("--startup-repeats", type=int, default=7)
    args = parser.parse_args()
    trees: list[Path | None] = list(args.src) if args.src else [None]
    names = {t: "installed" if t is None else str(t.resolve()) for t in trees}
    print(f"torch threads: {get_threads()} in process (each ClientApp process: the same default)")
    times: dict[Path | None, list[float]] = {t: [] for t in trees}
    for _ in range(args.startup_repeats):  # interleaved: the trees see the same machine load
        for t in times:
            times[t].append(clientapp_startup(t))
    for t in times:
        print(f"ClientApp process start-up ({names[t]}): median {statistics.median(times[t]):.2f} s "
              f"of {len(times[t])} (min {min(times[t]):.2f})")  # fmt: skip
    print(f"{'nodes':>5} {'setting':<15} {'code':<12} {'s/round':>8} {'e2e s/round':>11}", end=" ")
    print(f"{'sim s/round':>11} {'ratio':>7} failures")
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        for n in args.nodes:
            config = run_config(n, args.rounds)
            data = write_gateways(Path(tmp) / f"data-{n}", n)
            sim = in_process(data, config)
            for name in args.settings:
                for i, t in enumerate(trees):
                    d = deployed(Path(tmp) / f"{name}-{n}-{i}", data, config, SETTINGS[name], t)
                    print(
                        f"{n:>5} {name:<15} {Path(names[t]).name[:12]:<12} {d['round']:>8.2f} "
                        f"{d['end_to_end']:>11.2f} {sim:>11.3f} {d['round'] / sim:>6.0f}x "
                        f"{d['failures']:>8.0f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
