"""Secure aggregation in deployment: Flower's SecAgg+ between a real TLS SuperLink and three SuperNodes.

One run (``server.secure-aggregation=true``, FedAvg, 1 round) on the loopback federation of
``test_flower_deploy`` (same fixture: TLS SuperLink, fleet gate, registered node keys, every process stopped
by process group). The app it submits runs fediot's own ServerApp over a recording Grid (``probe.py``,
written next to the app's ``pyproject.toml``), which keeps every SecAgg+ masked vector the server receives
and the training message of the round. The probe holds the masked-vector stage until the test has removed
gw3's rows file: gw3 has shared its keys, then its ClientApp fails: a gateway dropping out mid-round, whose
pairwise masks SecAgg+ must remove with its neighbours' shares.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fediot.config import fl_config_from_run_config, to_run_config
from fediot.flower import deploy
from integration.test_flower_deploy import (
    CONNECTION,
    FEDIOT,
    Federation,
    _free_port,
    _read_history,
    federation,
)

pytestmark = [pytest.mark.flower, pytest.mark.slow]
__all__ = ["federation"]  # the loopback federation fixture (module scope: its own SuperLink here)

CLIP, MAX_WEIGHT, Q = 1.0, 64.0, 2**22
PROBE = '''"""ServerApp: fediot's run_server over a Grid recording what the server receives (test probe)."""
import json, time
from pathlib import Path

import numpy as np
from flwr.common import bytes_to_ndarray
from flwr.serverapp import ServerApp

from fediot.config import fl_config_from_run_config
from fediot.flower.server_app import _log_to_run_stream, initial_weights, run_server

OUT = Path(__OUT__)
HOLD_ROUND = 1


class ProbeGrid:
    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def push_messages(self, messages):
        messages = list(messages)
        for m in messages:
            sa = m.content.config_records.get("secaggplus_configs")
            if sa is None or sa.get("stage") != "collect_masked_vectors":
                continue
            r = int(m.metadata.group_id)
            fit = OUT / f"fitins-round{r}.npz"
            if not fit.exists():
                arrays = m.content.array_records["fitins.parameters"].to_numpy_ndarrays()
                np.savez(fit, *arrays)
                config = dict(m.content.config_records["fitins.config"])
                (OUT / f"fitins-round{r}.json").write_text(json.dumps(config))
            if r == HOLD_ROUND and not (OUT / f"go-round{r}").exists():
                (OUT / f"stage2-round{r}").write_text("")
                deadline = time.monotonic() + 60
                while not (OUT / f"go-round{r}").exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids):
        out = list(self.inner.pull_messages(message_ids))
        for m in out:
            if m.has_error():
                continue
            nid, group = m.metadata.src_node_id, m.metadata.group_id
            config = m.content.config_records.get("config")
            if config is not None and "client-id" in config:
                (OUT / f"node-{nid}.json").write_text(json.dumps(config["client-id"]))
            sa = m.content.config_records.get("secaggplus_configs")
            if sa is not None and "masked_params" in sa:
                vectors = [bytes_to_ndarray(b) for b in sa["masked_params"]]
                np.savez(OUT / f"masked-round{group}-node{nid}.npz", *vectors)
                plain = {
                    "num_examples": m.content.metric_records["fitres.num_examples"]["num_examples"],
                    "metrics": dict(m.content.config_records["fitres.metrics"]),
                    "arrays": {k: len(v) for k, v in m.content.array_records.items()},
                }
                (OUT / f"plain-round{group}-node{nid}.json").write_text(json.dumps(plain))
        return out


app = ServerApp()


@app.main()
def main(grid, context):
    _log_to_run_stream()
    cfg = fl_config_from_run_config(context.run_config)
    run_server(ProbeGrid(grid), cfg, initial_weights(cfg))
'''


def _app_config(out: Path) -> dict[str, Any]:
    from fediot.config import FLConfig

    return to_run_config(
        FLConfig.from_dict(
            {
                "seed": 7,
                "federated": {
                    "rounds": 1,
                    "fraction_fit": 1.0,
                    "min_fit_clients": 2,
                    "local_epochs": 1,
                    "strategy": "fedavg",
                    "tolerate_failures": True,
                },
                "train": {"batch_size": 16},
                "server": {
                    "min_available_clients": 3,
                    "round_timeout": 120.0,
                    "connect_timeout": 120.0,
                    "poll_interval": 0.1,
                    "secure_aggregation": True,
                    "secagg_reconstruction_threshold": 2,
                    "secagg_clipping_range": CLIP,
                    "secagg_max_weight": MAX_WEIGHT,
                    "checkpoint_path": str(out / "model.npz"),
                    "history_path": str(out / "history.json"),
                },
            }
        )
    )


def _npz(path: Path) -> list[np.ndarray]:
    with np.load(path) as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))]


class _Drops:
    """The in-process transport, with gw3 gone after the scaler round (as in the deployed run)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def available(self) -> list[str]:
        return list(self.inner.available())

    def send(self, client_ids: list[str], request: Any) -> list[Any]:
        from fediot.federated.engine import ClientFailure

        replies = self.inner.send(client_ids, request)
        gone = request.server_round >= 1 or request.kind == "error_stats"
        return [
            ClientFailure("gone") if gone and c == "gw3" else r
            for c, r in zip(client_ids, replies, strict=True)
        ]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1])


@pytest.mark.network
def test_secagg_round_masks_each_gateway_equals_fedavg_and_survives_a_dropout(federation: Federation) -> None:
    # Prepare: the probe app, and a run config with SecAgg+ on (threshold 2 of 3 shares)
    from flwr.common.secure_aggregation.quantization import quantize

    from fediot.federated.engine import run_fl
    from fediot.flower.checkpoint import load_checkpoint
    from fediot.flower.client_app import node_client
    from fediot.flower.server_app import initial_weights
    from fediot.sim.runtime import InProcessTransport

    federation.ensure_supernodes()
    root = federation.root / "secagg"
    probe_out, results = root / "probe", root / "results"
    probe_out.mkdir(parents=True)
    run_config = _app_config(results)
    app = root / "app"
    deploy.write_app(app, run_config, name="fediot-secagg")
    (app / "probe.py").write_text(PROBE.replace("__OUT__", repr(str(probe_out))))
    text = (app / "pyproject.toml").read_text().replace("fediot.flower.server_app:app", "probe:app")
    (app / "pyproject.toml").write_text(text)
    gw3 = federation.data["gw3"]
    hidden = gw3.with_suffix(".away")
    # Execute: submit; when the round reaches its masked-vector stage (keys shared), gw3's rows disappear
    t0 = time.monotonic()
    run = federation.start("run-secagg", deploy.run_command(app, CONNECTION, stream=True))
    try:
        deadline = time.monotonic() + 300
        held = probe_out / "stage2-round1"
        while not held.exists() and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.1)
        assert held.exists(), federation.log("run-secagg")[-4000:]
        gw3.rename(hidden)
        (probe_out / "go-round1").write_text("")
        code = run.wait(timeout=300)
    finally:
        if hidden.exists():
            hidden.rename(gw3)
        deploy.stop_process(run)
    seconds = time.monotonic() - t0
    streamed = federation.log("run-secagg")
    assert code == 0, streamed[-4000:]
    # the same configuration in process: plain FedAvg without gw3; and gw1's plain update of the round
    cfg = fl_config_from_run_config(run_config)
    plain_cfg = fl_config_from_run_config({**run_config, "server.secure-aggregation": False})
    clients = {
        cid: node_client({"data-path": str(federation.data[cid]), "client-id": cid}, run_config)
        for cid in sorted(federation.data)
    }
    reference = run_fl(_Drops(InProcessTransport(clients)), plain_cfg, initial_weights(cfg))
    nodes = {json.loads(p.read_text()): int(p.stem.split("-")[1]) for p in probe_out.glob("node-*.json")}
    gw1 = node_client({"data-path": str(federation.data["gw1"]), "client-id": "gw1"}, run_config)
    assert reference.scaler is not None
    gw1.set_scaler(reference.scaler)
    fit_config = json.loads((probe_out / "fitins-round1.json").read_text())
    plain_gw1 = gw1.fit(_npz(probe_out / "fitins-round1.npz"), fit_config)

    # Assert (a): what the server got from gw1 is masked: uncorrelated with gw1's update, while the same
    # update merely quantised (SecAgg+'s step before masking) correlates almost perfectly; and no plain
    # count, loss or weights came with it
    masked = _npz(probe_out / f"masked-round1-node{nodes['gw1']}.npz")
    ratio = plain_gw1.num_examples / MAX_WEIGHT
    flat_plain = np.concatenate([w.ravel() for w in plain_gw1.weights])
    flat_masked = np.concatenate([m.ravel() for m in masked[1:-1]])  # [q_ratio], *weights, [loss]
    quantised = np.concatenate([q.ravel() for q in quantize([flat_plain * ratio], CLIP, Q)])
    r_masked, r_quantised = _pearson(flat_masked, flat_plain), _pearson(quantised, flat_plain)
    assert len(masked) == len(plain_gw1.weights) + 2
    assert flat_masked.size == flat_plain.size > 10_000
    assert abs(r_masked) < 0.05, r_masked
    assert r_quantised > 0.999, r_quantised
    assert masked[0].size == 1
    assert int(masked[0][0]) != round(ratio * Q)  # the weight is masked too
    plain_fields = json.loads((probe_out / f"plain-round1-node{nodes['gw1']}.json").read_text())
    assert plain_fields == {"num_examples": 0, "metrics": {}, "arrays": {"fitres.parameters": 0}}
    # (c): the round survived gw3's dropout after the key exchange: only gw1 and gw2 sent masked vectors,
    # gw3 is counted as a failure, the threshold round went on without it
    rounds = _read_history(results / "history.json")["rounds"]
    assert [(r["selected"], r["failures"]) for r in rounds] == [(["gw1", "gw2", "gw3"], 1)]
    assert sorted(p.name for p in probe_out.glob("masked-round1-*")) == sorted(
        f"masked-round1-node{nodes[c]}.npz" for c in ("gw1", "gw2")
    )
    assert "round 1/1: 2/3 replies (securely aggregated)" in streamed, streamed[-3000:]
    assert "dropped out of the secure aggregation: gw3" in streamed
    # (b): ... and gw3's masks were removed: the unmasked mean is plain FedAvg of gw1 and gw2 within the
    # quantisation bound K * step / sum_k (n_k / W) (stochastic rounding: < one step per gateway and
    # coordinate) plus the deployed-vs-in-process training difference test_flower_deploy allows (1e-5)
    saved, _ = load_checkpoint(results / "model.npz")
    bound = 2 * (2 * CLIP / Q) / ((clients["gw1"].num_train + clients["gw2"].num_train) / MAX_WEIGHT)
    err = max(float(np.abs(a - b).max()) for a, b in zip(saved.weights, reference.weights, strict=True))
    assert saved.server_round == 1
    assert err < bound + 1e-5, (err, bound)
    assert reference.threshold is not None
    print(
        f"secagg run {seconds:.1f} s; |r| masked {abs(r_masked):.4f}, quantised {r_quantised:.6f}; "
        f"max |SecAgg+ - FedAvg| {err:.2e} (bound {bound:.2e})"
    )


def test_simulated_secagg_fedavgm_run_equals_the_in_process_run() -> None:
    # Prepare: Flower's simulation engine (the same ServerApp and ClientApp code, SecAgg+ and all), FedAvgM
    import random

    import flwr.serverapp as flwr_serverapp
    import flwr.simulation as simulation

    from fediot import flower
    from fediot.config import FLConfig
    from fediot.federated.engine import run_fl
    from fediot.flower.server_app import initial_weights, run_server
    from fediot.sim.runtime import InProcessTransport
    from integration.test_flower_messages import NUM_CLIENTS, _clients

    def config(secure: bool) -> FLConfig:
        server = {"min_available_clients": NUM_CLIENTS, "poll_interval": 0.05, "secure_aggregation": secure}
        server.update({"secagg_clipping_range": CLIP, "secagg_max_weight": MAX_WEIGHT})
        federated = {"rounds": 1, "fraction_fit": 1.0, "min_fit_clients": 2, "local_epochs": 1}
        federated.update({"strategy": "fedavgm", "server_momentum": 0.7, "server_learning_rate": 0.8})
        return FLConfig.from_dict({"seed": 4, "federated": federated, "server": server})

    secure_cfg, plain_cfg = config(True), config(False)
    out: dict[str, Any] = {}

    def main(grid: Any, context: Any) -> None:
        out["result"] = run_server(grid, secure_cfg, initial_weights(secure_cfg))

    clients = _clients()
    ids = sorted(clients)
    server = flwr_serverapp.ServerApp()
    server.main()(main)
    random.seed(0)
    # Execute
    simulation.run_simulation(
        server_app=server,
        client_app=flower.make_client_app(lambda ctx: clients[ids[int(ctx.node_config["partition-id"])]]),
        num_supernodes=NUM_CLIENTS,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": {"num_cpus": 2}},
    )
    plain = run_fl(InProcessTransport(_clients()), plain_cfg, initial_weights(plain_cfg))
    # Assert: FedAvgM's step on the SecAgg+ mean is its step on the replies, within the quantisation (bound
    # 3 * step / sum n_k/W, ~6e-7 here, times the server learning rate). One round: a second one would
    # retrain from weights 6e-7 apart, which Adam's normalised steps can grow to ~1e-5 (seen), which is
    # training, not aggregation (the engine's multi-round equality is tests/unit/federated/
    # test_secure_aggregation.py)
    secure = out["result"].federation
    n = sum(c.num_train for c in clients.values())  # type: ignore[attr-defined]
    bound = 3 * (2 * CLIP / Q) / (n / MAX_WEIGHT)
    assert [r.selected for r in secure.rounds] == [r.selected for r in plain.rounds]
    assert [r.failures for r in secure.rounds] == [0]
    err = max(float(np.abs(a - b).max()) for a, b in zip(secure.weights, plain.weights, strict=True))
    assert err < bound + 1e-7, (err, bound)
    np.testing.assert_allclose(
        [r.train_loss for r in secure.rounds], [r.train_loss for r in plain.rounds], rtol=1e-4
    )
    assert secure.threshold == pytest.approx(plain.threshold, rel=1e-4)


@pytest.mark.network
def test_fediot_server_flag_reaches_the_superlinks_processes(federation: Federation, tmp_path: Path) -> None:
    # Prepare: `fediot server --secure-aggregation` on its own ports, with the federation's certificates
    from fediot.flower.secagg import SECURE_AGGREGATION_ENV

    port = _free_port()
    cmd = [str(FEDIOT), "server", "--certs", str(federation.certs.ca_cert.parent), "--port", str(port)]
    cmd += ["--control-port", str(_free_port()), "--secure-aggregation"]
    proc = deploy.start_process(cmd, log_path=tmp_path / "server.log", env=federation.env)
    try:
        # Execute
        deploy.wait_for_tls("127.0.0.1", port, federation.certs.ca_cert, timeout=60, proc=proc)
        environ = {}
        for pid in deploy._descendants(proc.pid):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"flower-superlink" in cmdline:
                environ = dict(
                    e.split("=", 1) for e in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in e
                )
    finally:
        deploy.stop_process(proc)
    # Assert: the SuperLink (whose SuperExec starts every ServerApp with its environment) has the switch
    # that makes `require_secure_aggregation` turn server.secure-aggregation on in each run
    assert environ.get(SECURE_AGGREGATION_ENV) == "1", (tmp_path / "server.log").read_text()[-2000:]
    assert proc.returncode is not None
