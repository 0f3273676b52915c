"""Deployment: generated certificates and keys; a real TLS SuperLink and authenticated SuperNodes (loopback).

The loopback tests start one SuperLink (TLS, ``--enable-supernode-auth``) and three SuperNodes whose public
keys are registered with ``flwr supernode register``, each serving a gateway's real N-BaIoT rows; runs are
submitted with ``flwr run`` through a private ``$FLWR_HOME``. Every process is started in its own process
group and stopped by group in the fixture's teardown, pass or fail.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cryptography.x509 as x509
import numpy as np
import pytest

import fediot.flower.deploy as deploy

pytestmark = pytest.mark.flower

REPO = Path(__file__).resolve().parents[2]
NBAIOT = REPO / "data" / "nbaiot"
CONNECTION = "fediot-test"
CLIENT_IDS = ("gw1", "gw2", "gw3")
APP_CONFIG: dict[str, Any] = {  # [tool.flwr.app.config] of the app the loopback tests submit
    "num-server-rounds": 3,
    "strategy": "fedavgm",
    "server-lr": 1.0,
    "server-momentum": 0.9,
    "fraction-fit": 1.0,
    "min-fit-clients": 2,
    "min-available-clients": 3,
    "seed": 7,
    "round-timeout": 120.0,
    "connect-timeout": 120.0,
    "poll-interval": 0.2,
    "num-features": 115,
    "local-epochs": 2,
    "lr": 0.01,
    "batch-size": 16,
    "checkpoint-path": "",
    "history-path": "",
    "scaler": "log-minmax",
    "detector-path": "",
    "feature-names": "nbaiot",
}


def test_generated_chain_verifies_and_node_keys_load_like_flower(tmp_path: Path) -> None:
    # Prepare
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

    # Execute
    paths = deploy.generate_certs(tmp_path, num_nodes=2)
    # Assert: server cert signed by the CA, with the loopback SANs
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    # node keys: OpenSSH EC keys, as flower-supernode's --auth-supernode-private-key loader requires
    assert len(paths.node_keys) == 2
    for key_path in paths.node_keys:
        private = load_ssh_private_key(key_path.read_bytes(), None)
        public = load_ssh_public_key(key_path.with_suffix(".pub").read_bytes())
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        assert private.public_key().public_numbers() == public.public_numbers()  # type: ignore[union-attr]
        assert key_path.stat().st_mode & 0o077 == 0
    assert paths.ca_key.stat().st_mode & 0o077 == 0


def test_connection_and_app_files_are_what_the_flower_cli_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    from flwr.cli.config_utils import load_and_validate
    from flwr.cli.flower_config import read_superlink_connection
    from flwr.common.config import parse_config_args

    (tmp_path / "config.toml").write_text(
        '[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = ":local:"\n'
    )
    # Execute
    deploy.write_connection(tmp_path, "lab", address="127.0.0.1:9093", root_cert=tmp_path / "ca.crt")
    app = deploy.write_app(tmp_path / "app", APP_CONFIG)
    run_config = deploy.format_config({"history-path": "/tmp/h.json", "resume": True, "server-lr": 0.5})
    # Assert: the Flower CLI's own readers accept both files and parse our --run-config string
    monkeypatch.setenv("FLWR_HOME", str(tmp_path))
    connection = read_superlink_connection(None)
    assert connection.name == "lab"
    assert connection.address == "127.0.0.1:9093"
    assert connection.root_certificates == str((tmp_path / "ca.crt").resolve())
    assert "local" in (tmp_path / "config.toml").read_text()  # other connections are kept
    config, _warnings = load_and_validate(app)
    assert config["tool"]["flwr"]["app"]["config"]["num-server-rounds"] == 3
    assert parse_config_args([run_config]) == {
        "history-path": "/tmp/h.json",
        "resume": True,
        "server-lr": 0.5,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.network
def test_superlink_serves_tls_with_generated_certificate(tmp_path: Path) -> None:
    # Prepare
    paths = deploy.generate_certs(tmp_path / "certs", num_nodes=0)
    port = _free_port()
    cmd = deploy.superlink_command(paths, host="127.0.0.1", port=port, database=tmp_path / "state.db")
    context = ssl.create_default_context(cafile=str(paths.ca_cert))
    proc = deploy.start_process(cmd, log_path=tmp_path / "superlink.log")
    peer = None
    try:
        # Execute: a TLS handshake that verifies the server against our CA (and its 127.0.0.1 SAN)
        deadline = time.monotonic() + 60
        while peer is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with (
                    socket.create_connection(("127.0.0.1", port), timeout=2) as sock,
                    context.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
                ):
                    peer = tls.getpeercert()
            except OSError:
                time.sleep(0.5)
    finally:
        deploy.stop_process(proc)
    # Assert
    log = (tmp_path / "superlink.log").read_text(errors="replace")
    assert peer is not None, log[-3000:]
    assert ("IP Address", "127.0.0.1") in peer["subjectAltName"]
    assert proc.returncode is not None


# --- a real federation on loopback -------------------------------------------------------------------------


def _write_gateways(folder: Path) -> tuple[dict[str, Path], dict[str, np.ndarray]]:
    """Split the shipped benign N-BaIoT rows (time order) into one rows file per gateway.

    Rows are min-max scaled with FedIoT's global per-feature min/max (the gateways' preprocessing); each
    gateway's file is split by the ClientApp into train / opt / test thirds. Returns the files and the
    rows to score: each gateway's benign test third and the shipped attack rows.
    """
    from fediot.data.nbaiot import read_nbaiot_csv

    lo = np.loadtxt(NBAIOT / "metadata" / "fediot_feature_min.txt")
    hi = np.loadtxt(NBAIOT / "metadata" / "fediot_feature_max.txt")
    span = np.where(hi > lo, hi - lo, 1.0)

    def scaled(name: str) -> np.ndarray:
        return ((read_nbaiot_csv(NBAIOT / "samples" / name) - lo) / span).astype(np.float32)

    benign = scaled("benign_traffic.csv.gz")
    folder.mkdir(parents=True)
    files: dict[str, Path] = {}
    test_rows = []
    for cid, rows in zip(CLIENT_IDS, np.array_split(benign, len(CLIENT_IDS)), strict=True):
        files[cid] = folder / f"{cid}.npy"
        np.save(files[cid], rows)
        test_rows.append(rows[2 * (rows.shape[0] // 3) :])
    attacks = [scaled(f) for f in ("doorbell_udp.csv.gz", "scan.csv.gz", "thermostat_udp.csv.gz")]
    return files, {"benign": np.concatenate(test_rows), "attack": np.concatenate(attacks)}


@dataclass
class Federation:
    """A running SuperLink + SuperNodes, and the files and environment the Flower CLI needs."""

    root: Path
    certs: Any
    env: dict[str, str]
    port: int
    app: Path
    data: dict[str, Path]
    scoring_rows: dict[str, np.ndarray]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        proc = deploy.start_process(cmd, log_path=self.root / f"{name}.log", env=self.env)
        self.procs[f"{name}#{proc.pid}"] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def flwr(self, cmd: list[str], *, name: str, timeout: float) -> tuple[int, str]:
        """Run a Flower CLI command in its own process group; stop the group if it outlives ``timeout``."""
        proc = self.start(name, cmd)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            deploy.stop_process(proc)
            pytest.fail(f"`{' '.join(cmd[1:4])}` ran over {timeout:.0f} s:\n{self.log(name)[-4000:]}")
        return code, self.log(name)

    def supernode(self, cid: str, key: Path) -> subprocess.Popen[bytes]:
        cmd = deploy.supernode_command(
            f"127.0.0.1:{self.port}",
            root_cert=self.certs.ca_cert,
            auth_key=key,
            node_config={"data-path": str(self.data[cid]), "client-id": cid},
            port=_free_port(),
        )
        return self.start(f"supernode-{cid}", cmd)

    def ensure_supernodes(self) -> None:
        """(Re)start the SuperNode of every gateway that is not running (a test may have killed one)."""
        for cid, key in zip(CLIENT_IDS, self.certs.node_keys, strict=False):
            running = [
                p for n, p in self.procs.items() if n.startswith(f"supernode-{cid}#") and p.poll() is None
            ]
            if not running:
                self.supernode(cid, key)

    def submit(self, name: str, run_config: dict[str, Any], *, timeout: float) -> str:
        """``flwr run --stream`` the app; return its output after the run has finished."""
        cmd = deploy.run_command(self.app, CONNECTION, run_config=run_config, stream=True)
        code, out = self.flwr(cmd, name=name, timeout=timeout)
        assert code == 0, out[-4000:]
        return out

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs.values())):
            deploy.stop_process(proc)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    root = tmp_path_factory.mktemp("federation")
    certs = deploy.generate_certs(
        root / "certs", num_nodes=len(CLIENT_IDS) + 1
    )  # the last is never registered
    data, scoring_rows = _write_gateways(root / "gateways")
    flwr_home = root / "flwr-home"
    # SuperExecs poll for tasks every 0.2 s instead of 1 s (inherited by the SuperLink's and SuperNodes')
    env = deploy.flower_env({"FLWR_HOME": str(flwr_home), "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.2"})
    port = _free_port()
    deploy.write_connection(flwr_home, CONNECTION, address=f"127.0.0.1:{port}", root_cert=certs.ca_cert)
    fed = Federation(root, certs, env, port, root / "app", data, scoring_rows)
    deploy.write_app(fed.app, APP_CONFIG)
    try:
        superlink = fed.start(
            "superlink",
            deploy.superlink_command(certs, host="127.0.0.1", port=port, database=root / "state.db"),
        )
        deploy.wait_for_tls("127.0.0.1", port, certs.ca_cert, timeout=60, proc=superlink)
        for i, public_key in enumerate(certs.node_public_keys[: len(CLIENT_IDS)]):
            code, out = fed.flwr(
                deploy.register_command(public_key, CONNECTION), name=f"register-{i}", timeout=60
            )
            assert code == 0, out
            assert "registered successfully" in out, out
        fed.ensure_supernodes()
        yield fed
    finally:
        fed.stop_all()
        # nothing may outlive the module: every process group we started is gone (killed ones reaped)
        deadline = time.monotonic() + 15
        alive = [n for n, p in fed.procs.items() if _group_alive(p.pid)]
        while alive and time.monotonic() < deadline:
            time.sleep(0.2)
            alive = [n for n in alive if _group_alive(fed.procs[n].pid)]
        assert not alive, f"process groups still alive: {alive}"


def _read_history(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {"finished": False, "rounds": []}


def _in_process_run(fed: Federation, run_config: dict[str, Any]) -> tuple[Any, Any]:
    """The same configuration in process: the clients the ClientApp builds, ``_run_federated``'s steps.

    Federated scaler from the clients' ``feature_stats`` (merged in client-id order), ``run_rounds``,
    federated threshold from their ``error_stats``; returns the run's result and the assembled detector.
    """
    from fediot.data.scaling import make_scaler
    from fediot.detect.detector import AnomalyDetector
    from fediot.detect.threshold import threshold_from_stats
    from fediot.federated.strategy import make_strategy
    from fediot.flower.client_app import node_client
    from fediot.flower.server_app import ServerConfig
    from fediot.models.autoencoder import Autoencoder, AutoencoderConfig
    from fediot.models.weights import get_weights, init_module
    from fediot.sim.runtime import run_rounds

    config = ServerConfig.from_run_config(run_config)
    assert config.scaler is not None
    clients = {
        cid: node_client({"data-path": str(fed.data[cid]), "client-id": cid}, run_config)
        for cid in CLIENT_IDS
    }
    stats = [clients[cid].feature_stats(config.scaler) for cid in sorted(clients)]
    merged = stats[0]
    for s in stats[1:]:
        merged = merged.merge(s)
    scaler = make_scaler(config.scaler, merged)
    for c in clients.values():
        c.set_scaler(scaler)
    initial = get_weights(init_module(Autoencoder(AutoencoderConfig(115)), config.seed))
    sim = run_rounds(
        dict(clients),
        make_strategy(
            config.strategy,
            server_learning_rate=config.server_learning_rate,
            server_momentum=config.server_momentum,
        ),
        initial,
        num_rounds=config.num_rounds,
        fraction_fit=config.fraction_fit,
        min_fit_clients=config.min_fit_clients,
        seed=config.seed,
        fit_config=lambda _r: dict(config.fit_config),
    )
    errors = [clients[cid].error_stats(sim.weights) for cid in sorted(clients)]
    merged_errors = errors[0]
    for s in errors[1:]:
        merged_errors = merged_errors.merge(s)
    detector = AnomalyDetector.from_parts(
        sim.weights,
        scaler,
        threshold_from_stats(merged_errors, k=config.threshold_k),
        config=AutoencoderConfig(115),
        feature_names=config.feature_names,
    )
    return sim, detector


@pytest.mark.slow
@pytest.mark.network
def test_deployed_fedavgm_run_saves_the_in_process_detector(federation: Federation) -> None:
    # Prepare
    from fediot.detect.detector import AnomalyDetector
    from fediot.flower.checkpoint import load_checkpoint

    federation.ensure_supernodes()
    out = federation.root / "results" / "full"
    keys = ("checkpoint-path", "history-path", "detector-path")
    run_config = {
        **APP_CONFIG,
        "checkpoint-path": str(out / "model.npz"),
        "history-path": str(out / "history.json"),
        "detector-path": str(out / "detector.pt"),
    }
    # Execute: federated log-minmax scaler, 3 rounds of FedAvgM over TLS with 3 authenticated SuperNodes,
    # federated threshold, detector saved by the ServerApp; then the same in process
    federation.submit("run-full", {k: run_config[k] for k in keys}, timeout=240)
    sim, reference = _in_process_run(federation, run_config)
    # Assert: the saved detector is the in-process one (scaler exact; weights within 1e-5 absolute;
    # threshold and anomaly scores within 1e-4 relative), and it detects
    saved = load_checkpoint(out / "model.npz")
    rounds = _read_history(out / "history.json")["rounds"]
    assert saved.server_round == 3
    assert saved.strategy == "fedavgm"
    assert [r["selected"] for r in rounds] == [r.selected for r in sim.rounds] == [list(CLIENT_IDS)] * 3
    assert [r["failures"] for r in rounds] == [0, 0, 0]
    for deployed_w, sim_w in zip(saved.weights, sim.weights, strict=True):
        np.testing.assert_allclose(deployed_w, sim_w, rtol=0, atol=1e-5)
    detector = AnomalyDetector.load(out / "detector.pt", feature_names=reference.feature_names_in_)
    for key, value in reference.scaler_.to_dict().items():
        np.testing.assert_array_equal(detector.scaler_.to_dict()[key], value)
    assert detector.threshold_ == pytest.approx(reference.threshold_, rel=1e-4)
    rows = np.concatenate([federation.scoring_rows["benign"], federation.scoring_rows["attack"]])
    scores = detector.anomaly_score(rows)
    np.testing.assert_allclose(scores, reference.anomaly_score(rows), rtol=1e-4, atol=1e-9)
    n_benign = federation.scoring_rows["benign"].shape[0]
    assert np.median(scores[n_benign:]) > np.quantile(scores[:n_benign], 0.9)
    assert detector.predict(rows[n_benign:]).mean() > 0.5


@pytest.mark.slow
@pytest.mark.network
def test_supernode_with_unregistered_key_is_refused(federation: Federation) -> None:
    # Prepare: the fourth key pair was generated but never registered
    unregistered = federation.certs.node_keys[len(CLIENT_IDS)]
    cmd = deploy.supernode_command(
        f"127.0.0.1:{federation.port}",
        root_cert=federation.certs.ca_cert,
        auth_key=unregistered,
        node_config={"data-path": str(federation.data["gw1"]), "client-id": "intruder"},
        port=_free_port(),
    )
    # Execute
    proc = federation.start("supernode-intruder", cmd)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        code = None
    # Assert: it gives up at once with Flower's exit code 305 "failed to activate" (process status 1)
    node_log = federation.log("supernode-intruder")
    assert code == 1, node_log[-3000:]
    assert "Exit Code: 305" in node_log
    assert "Failed to activate SuperNode" in node_log
    assert "No SuperNode found with the given public key" in federation.log("superlink")


@pytest.mark.slow
@pytest.mark.network
def test_run_completes_when_a_supernode_is_killed_mid_run(federation: Federation) -> None:
    # Prepare
    federation.ensure_supernodes()
    history = federation.root / "results" / "kill" / "history.json"
    checkpoint = federation.root / "results" / "kill" / "model.npz"
    run_config = {  # weights only: no federated scaler/threshold queries to wait on after the kill
        "history-path": str(history),
        "checkpoint-path": str(checkpoint),
        "round-timeout": 90.0,
        "scaler": "",
    }
    victim = next(
        p for n, p in federation.procs.items() if n.startswith("supernode-gw3#") and p.poll() is None
    )
    cmd = deploy.run_command(federation.app, CONNECTION, run_config=run_config, stream=True)
    run = federation.start("run-kill", cmd)
    # Execute: once round 1 is aggregated, SIGKILL gw3's SuperNode with its SuperExec and ClientApp
    deadline = time.monotonic() + 150
    while not _read_history(history)["rounds"] and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.2)
    assert _read_history(history)["rounds"], federation.log("run-kill")[-4000:]
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    try:
        code = run.wait(timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"the run did not finish after a SuperNode was killed:\n{federation.log('run-kill')[-4000:]}"
        )
    # Assert: all 3 rounds ran; after the kill gw3 failed or was no longer selected; the others carried on
    result = _read_history(history)
    rounds = result["rounds"]
    assert code == 0, federation.log("run-kill")[-4000:]
    assert result["finished"]
    assert [r["server_round"] for r in rounds] == [1, 2, 3]
    assert rounds[0]["selected"] == list(CLIENT_IDS)
    assert rounds[0]["failures"] == 0
    for r in rounds[1:]:
        assert len(r["selected"]) - r["failures"] == 2, rounds  # gw1 and gw2 replied
        assert "gw3" not in r["selected"] or r["failures"] == 1, rounds
    assert any("gw3" not in r["selected"] for r in rounds[1:]), "the dead node stayed selected every round"
