"""Admission: a stranger holding ``ca.crt`` and a key of its own can neither register the key nor join.

Two network namespaces the test creates, joined by one veth pair only (no default route, no link to the
host's namespaces): the server namespace runs ``fediot server`` as the guide does (the SuperLink on the
namespace's loopback, the fleet gate on the veth address); the gateway namespace plays a machine on the
gateways' network. From there a gateway whose key the operator registered joins, and a stranger with the
same ``ca.crt`` and a key of its own is refused by the Control API (nothing listens for it on the
network) and by the Fleet API (its key is unknown). Everything is stopped by PID and the namespaces are
deleted, pass or fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fediot.flower import deploy

pytestmark = [pytest.mark.flower, pytest.mark.slow, pytest.mark.network]

REPO = Path(__file__).resolve().parents[2]
FEDIOT = Path(sys.executable).with_name("fediot")
SERVER_IP, GATEWAY_IP = "10.213.7.1", "10.213.7.2"
FLEET_PORT, CONTROL_PORT = 9092, 9093  # fresh namespaces: the defaults cannot collide with anything


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=60)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    if shutil.which("ip") is None:
        pytest.fail("the admission test needs iproute2 (apt-get install iproute2; .ci/run installs it)")
    if os.geteuid() != 0:
        pytest.fail("the admission test creates network namespaces: run it as root (CI does)")
    tag = uuid.uuid4().hex[:6]
    srv, gw = f"fdt-srv-{tag}", f"fdt-gw-{tag}"
    created: list[str] = []
    try:
        for ns in (srv, gw):
            _run("ip", "netns", "add", ns)
            created.append(ns)
        _run("ip", "link", "add", "veth-srv", "netns", srv, "type", "veth", "peer", "name", "veth-gw",
             "netns", gw)  # fmt: skip
        for ns, dev, ip in ((srv, "veth-srv", SERVER_IP), (gw, "veth-gw", GATEWAY_IP)):
            _run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            _run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ip}/30", "dev", dev)
            _run("ip", "netns", "exec", ns, "ip", "link", "set", dev, "up")
            _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield srv, gw
    finally:
        for ns in created:
            _run("ip", "netns", "del", ns, check=False)


class _Procs:
    """Processes started in a namespace, each in its own process group, logged to ``root``."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env, self.procs = root, env, list[subprocess.Popen[bytes]]()

    def start(self, ns: str, name: str, cmd: list[str], **env: str) -> subprocess.Popen[bytes]:
        proc = deploy.start_process(
            ["ip", "netns", "exec", ns, *cmd], log_path=self.root / f"{name}.log", env={**self.env, **env}
        )
        self.procs.append(proc)
        return proc

    def run(self, ns: str, name: str, cmd: list[str], *, timeout: float = 60, **env: str) -> tuple[int, str]:
        proc = self.start(ns, name, cmd, **env)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            deploy.stop_process(proc)
            pytest.fail(f"{name} ran over {timeout:.0f} s:\n{self.log(name)[-3000:]}")
        return code, self.log(name)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            deploy.stop_process(proc)


def _connection(home: Path, name: str, address: str, ca: Path) -> str:
    deploy.write_connection(home, name, address=address, root_cert=ca)
    return str(home)


def test_stranger_with_ca_cert_cannot_register_a_key_or_join(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    # Prepare: the operator's certificates for the server's network address; gateway 1's key registered;
    # the stranger has the public ca.crt (every gateway has it) and a key pair of its own
    srv, gw = namespaces
    certs = deploy.generate_certs(tmp_path / "certs", num_nodes=1, hosts=(SERVER_IP,))
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    shutil.copy(certs.ca_cert, stranger / "ca.crt")
    stranger_key = deploy.add_node_keys(stranger, 1)[0]  # any valid EC key pair: its own, unregistered
    rows = tmp_path / "gw.npy"
    np.save(rows, np.random.default_rng(0).random((90, 115), dtype=np.float32))
    procs = _Procs(tmp_path, deploy.flower_env({"PYTHONPATH": os.environ.get("PYTHONPATH", "")}))
    operator_home = _connection(tmp_path / "op-home", "op", f"127.0.0.1:{CONTROL_PORT}", certs.ca_cert)
    stranger_home = tmp_path / "stranger-home"
    _connection(stranger_home, "fleet", f"{SERVER_IP}:{FLEET_PORT}", stranger / "ca.crt")
    _connection(stranger_home, "control", f"{SERVER_IP}:{CONTROL_PORT}", stranger / "ca.crt")
    try:
        server = procs.start(srv, "server", [str(FEDIOT), "server", "--certs", str(certs.ca_cert.parent),
                             "--host", SERVER_IP, "--database", str(tmp_path / "state.db")])  # fmt: skip
        wait = (
            "from fediot.flower.deploy import wait_for_tls as w; import sys; "
            f"w('127.0.0.1', {CONTROL_PORT}, sys.argv[1], timeout=60); "
            f"w('{SERVER_IP}', {FLEET_PORT}, sys.argv[1], timeout=60)"
        )
        code, out = procs.run(srv, "wait", [sys.executable, "-c", wait, str(certs.ca_cert)], timeout=90)
        assert code == 0, procs.log("server")[-3000:] + out[-2000:]
        assert server.poll() is None, procs.log("server")[-3000:]
        flwr = str(Path(sys.executable).with_name("flwr"))
        code, out = procs.run(srv, "register-gw1", [flwr, "supernode", "register",
                              str(certs.node_public_keys[0]), "op"], FLWR_HOME=operator_home)  # fmt: skip
        assert code == 0, out[-2000:]
        assert "registered successfully" in out, out[-2000:]

        # Execute: from the gateways' network, the stranger (1) connects to the Control API's port,
        # (2) registers its key through both addresses, (3) joins with its key;
        # and gateway 1 joins with its registered key (the control: the fleet gate does serve gateways)
        probe = (
            "import socket, sys\ntry:\n"
            f"    socket.create_connection(('{SERVER_IP}', {CONTROL_PORT}), timeout=5)\n"
            "except OSError as e:\n    print(type(e).__name__); sys.exit(3)\n"
        )
        probe_code, probe_out = procs.run(gw, "probe", [sys.executable, "-c", probe])
        registered = {
            name: procs.run(gw, f"stranger-register-{name}", [flwr, "supernode", "register",
                            str(stranger_key.with_suffix(".pub")), name], FLWR_HOME=str(stranger_home))
            for name in ("control", "fleet")
        }  # fmt: skip
        client = [str(FEDIOT), "client", "--superlink", f"{SERVER_IP}:{FLEET_PORT}", "--data", str(rows),
                  "--root-cert", str(stranger / "ca.crt"), "--connect-timeout", "30"]  # fmt: skip
        started = time.monotonic()
        join_code, join_out = procs.run(gw, "stranger-join", [*client, "--key", str(stranger_key),
                                        "--port", "9201"], timeout=60)  # fmt: skip
        join_seconds = time.monotonic() - started
        gateway = procs.start(gw, "gw1", [*client, "--key", str(certs.node_keys[0]), "--port", "9202"])
        deadline = time.monotonic() + 90
        while "SuperNode ID:" not in procs.log("gw1") and time.monotonic() < deadline:
            assert gateway.poll() is None, procs.log("gw1")[-3000:]
            time.sleep(0.2)
        gateway_joined = "SuperNode ID:" in procs.log("gw1")
        code, listing = procs.run(srv, "list", [flwr, "supernode", "list", "op", "--format", "json"],
                                  FLWR_HOME=operator_home)  # fmt: skip
    finally:
        procs.stop_all()
    # Assert: nothing answers on the Control API's port from the network (the SuperLink is on loopback)
    assert probe_code == 3, probe_out
    assert "ConnectionRefusedError" in probe_out, probe_out
    control_code, control_out = registered["control"]
    assert control_code != 0, control_out[-2000:]
    assert "registered successfully" not in control_out, control_out[-2000:]
    # the fleet gate refuses the Control API's register call (403), so the key was never stored
    fleet_code, fleet_out = registered["fleet"]
    assert fleet_code != 0, fleet_out[-2000:]
    assert "403 Forbidden" in fleet_out, fleet_out[-2000:]
    # joining with the unregistered key: refused (Flower's 305 "failed to activate"), non-zero, at once
    assert join_code == 1, join_out[-3000:]
    assert "Failed to activate SuperNode" in join_out, join_out[-3000:]
    assert join_out.strip().splitlines()[-1].startswith("error: "), join_out[-1000:]
    assert join_seconds < 10, join_seconds
    # the registered gateway joined through the same address; the operator sees exactly its key
    assert gateway_joined, procs.log("gw1")[-3000:]
    assert code == 0, listing[-2000:]
    nodes = json.loads(listing[listing.index("{") :])["nodes"]
    assert len(nodes) == 1, nodes
