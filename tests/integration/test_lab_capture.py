"""The lab (lab/capture.py) in CI: one short real capture between two namespaces it creates, and cleanup.

Needs root and the Debian packages `.ci/run` installs (iproute2 procps tcpdump nmap dnsmasq-base). Without
them these tests FAIL with a message saying what is missing: CI forbids skipped tests.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fediot.features.pcap import PROTO_TCP, read_pcap

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
CAPTURE = REPO / "lab" / "capture.py"
VERIFY = REPO / "lab" / "verify.py"
NEEDED = {"ip": "iproute2", "sysctl": "procps", "tcpdump": "tcpdump", "nmap": "nmap",
          "dnsmasq": "dnsmasq-base"}  # fmt: skip
LAB = ipaddress.IPv4Network("10.77.0.0/16")


def _require_lab() -> None:
    if os.geteuid() != 0:
        pytest.fail("the lab test needs root (network namespaces); CI runs .ci/run as root")
    missing = sorted({pkg for prog, pkg in NEEDED.items() if shutil.which(prog) is None})
    if missing:
        pytest.fail(f"lab tools missing: apt-get install -y {' '.join(missing)} (.ci/run installs them)")


def _namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _run_lab(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], str, list[int]]:
    _require_lab()
    prefix = f"fediot-test-{os.getpid()}"
    pid_log = tmp_path / "pids.txt"
    proc = subprocess.run(
        [sys.executable, str(CAPTURE), "--out", str(tmp_path / "out"), "--prefix", prefix,
         "--pid-log", str(pid_log), *extra],
        capture_output=True, text=True, timeout=150, check=False,
    )  # fmt: skip
    pids = [int(p) for p in pid_log.read_text().split()] if pid_log.exists() else []
    return proc, prefix, pids


def test_short_nmap_capture_holds_only_lab_traffic_and_leaves_nothing_behind(tmp_path: Path) -> None:
    # Prepare / Execute: a 100-port SYN scan from the attacker namespace at the victim's dnsmasq
    proc, prefix, pids = _run_lab(tmp_path, "--only", "test.nmap_top100")
    # Assert: cleanup first (pass or fail), then the capture itself
    assert not [ns for ns in _namespaces() if ns.startswith(prefix)]
    assert len(pids) >= 3  # dnsmasq, tcpdump, nmap
    assert not [p for p in pids if _alive(p)]
    assert proc.returncode == 0, proc.stderr[-2000:]
    capture = tmp_path / "out" / "test.nmap_top100.pcap.gz"
    table, summary = read_pcap(capture)
    assert summary.skipped == {}
    assert len(table) > 100
    assert (table.ip_version == 4).all()
    for column in (table.src_ip, table.dst_ip):
        assert (column[:, 0] == 0).all()
        assert all(ipaddress.IPv4Address(int(a)) in LAB for a in np.unique(column[:, 1]))
    probes = (table.protocol == PROTO_TCP) & (table.src_ip[:, 1] == int(ipaddress.IPv4Address("10.77.0.2")))
    assert len(np.unique(table.dst_port[probes])) >= 100  # the 100 ports were scanned
    assert (table.src_port[(table.protocol == PROTO_TCP) & ~probes] == 53).any()  # dnsmasq's open TCP port
    check = subprocess.run([sys.executable, str(VERIFY), str(capture)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    manifest = (tmp_path / "out" / "MANIFEST.json").read_text()
    assert "nmap -n -Pn -sS --top-ports 100" in manifest


def test_a_failing_run_still_removes_its_namespaces_and_processes(tmp_path: Path) -> None:
    # Prepare / Execute: fail on purpose once the namespaces exist and a service runs
    proc, prefix, pids = _run_lab(tmp_path, "--only", "test.nmap_top100", "--fail-after-setup")
    # Assert
    assert proc.returncode == 1
    assert "failing on purpose" in proc.stderr
    assert pids  # dnsmasq was started
    assert not [ns for ns in _namespaces() if ns.startswith(prefix)]
    assert not [p for p in pids if _alive(p)]


def test_the_verifier_rejects_traffic_outside_the_lab() -> None:
    # Prepare: a real capture from outside the lab (the StopDDoS SYN flood to 10.10.10.10)
    flood = REPO / "data" / "ddos_pcaps" / "pkt.TCP.synflood.spoofed.pcap.gz"
    # Execute
    check = subprocess.run([sys.executable, str(VERIFY), str(flood)], capture_output=True, text=True)
    # Assert
    assert check.returncode == 1
    assert "outside 10.77.0.0/16" in check.stdout
