"""Live capture in network namespaces the test creates: tcpreplay -> veth -> `fediot detect --interface`.

Two namespaces joined by a veth pair only (no default route, no link to the host namespace, IPv6 off so
the kernel sends nothing of its own); tcpreplay replays a shipped capture in one, `fediot detect
--interface` captures in the other. The live alerts must equal offline `fediot detect` on the frames it
captured (saved with --save-pcap), those frames must be the replayed ones byte for byte, and every
replayed frame must be either captured or counted as a kernel drop. Every process is stopped by PID and
both namespaces are deleted, pass or fail.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fediot.data.paths import shipped_file
from fediot.detect.detector import AnomalyDetector
from fediot.features import extract_features, read_pcap
from fediot.features.columns import feature_names
from fediot.models import TrainConfig

pytestmark = pytest.mark.slow

REPLAYED = 3000
FEDIOT = [str(Path(sys.executable).parent / "fediot")]


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=60)


def _frames(path: Path) -> list[bytes]:
    """The frame bytes of a classic pcap, in order."""
    import struct

    data = path.read_bytes()
    big = data[:4] in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d")
    off, out = 24, []
    while off + 16 <= len(data):
        caplen = struct.unpack_from(">I" if big else "<I", data, off + 8)[0]
        out.append(data[off + 16 : off + 16 + caplen])
        off += 16 + caplen
    return out


@pytest.fixture(scope="module")
def tools() -> dict[str, str]:
    found = {name: shutil.which(name) for name in ("tcpreplay", "ip")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        pytest.fail(
            f"the live-capture test needs {', '.join(missing)} (apt-get install tcpreplay iproute2; "
            ".ci/run installs them)"
        )
    if os.geteuid() != 0:
        pytest.fail("the live-capture test creates network namespaces: run it as root (CI does)")
    return {k: v for k, v in found.items() if v is not None}


@pytest.fixture
def namespaces(tools: dict[str, str]) -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:6]
    tx, rx = f"fdt-tx-{tag}", f"fdt-rx-{tag}"
    created: list[str] = []
    try:
        for ns in (tx, rx):
            _run("ip", "netns", "add", ns)
            created.append(ns)
        _run(
            "ip",
            "link",
            "add",
            "veth-tx",
            "netns",
            tx,
            "type",
            "veth",
            "peer",
            "name",
            "veth-rx",
            "netns",
            rx,
        )
        for ns, dev in ((tx, "veth-tx"), (rx, "veth-rx")):
            _run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            _run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
            _run("ip", "netns", "exec", ns, "ip", "link", "set", dev, "up")
        yield tx, rx
    finally:
        for ns in created:
            _run("ip", "netns", "del", ns, check=False)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A detector fitted on the SYN flood capture's first rows: the replayed UDP flood is foreign to it."""
    packets, _ = read_pcap(shipped_file("ddos_pcaps/pkt.TCP.synflood.spoofed.pcap.gz"))
    rows, _ = extract_features(packets.take(np.arange(3000)), order="given")
    det = AnomalyDetector(train_config=TrainConfig(epochs=5, batch_size=64, lr=1e-3, optimizer="adam"))
    det.fit(rows, feature_names=feature_names())
    det.window_ = 5
    return det.save(tmp_path_factory.mktemp("live_model") / "detector.npz")


def test_live_alerts_equal_offline_alerts_on_the_captured_frames(
    namespaces: tuple[str, str], model: Path, tmp_path: Path
) -> None:
    tx, rx = namespaces
    # Prepare: the capture to replay (tcpreplay reads plain pcap), and isolation checks
    replay = tmp_path / "amp.pcap"
    replay.write_bytes(
        gzip.decompress(shipped_file("ddos_pcaps/amp.UDP.bacnet.IOT.37810.pcap.gz").read_bytes())
    )
    host_links = _run("ip", "-o", "link").stdout
    assert "veth-tx" not in host_links
    assert "veth-rx" not in host_links
    for ns in (tx, rx):
        assert _run("ip", "netns", "exec", ns, "ip", "route").stdout.strip() == ""
        assert _run("ip", "netns", "exec", ns, "ip", "-6", "route").stdout.strip() == ""
    alerts, saved, stats, log = (tmp_path / n for n in ("live.jsonl", "saved.pcap", "stats.json", "live.log"))
    detect = None
    try:
        with log.open("w") as out:
            detect = subprocess.Popen(
                ["ip", "netns", "exec", rx, *FEDIOT, "detect", str(model), "--interface", "veth-rx",
                 "--out", str(alerts), "--save-pcap", str(saved), "--stats", str(stats),
                 "--idle-timeout", "4"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while "listening on veth-rx" not in log.read_text():
            assert detect.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "fediot detect did not start listening within 120 s"
            time.sleep(0.2)
        # Execute: replay a bounded count at a bounded rate
        sent = _run(
            "ip", "netns", "exec", tx, "tcpreplay", "-i", "veth-tx", "--limit", str(REPLAYED),
            "--pps", "3000", str(replay),
        )  # fmt: skip
        assert f"Successful packets:        {REPLAYED}" in sent.stdout, sent.stdout
        assert detect.wait(timeout=120) == 0, log.read_text()
    finally:
        if detect is not None and detect.poll() is None:
            os.kill(detect.pid, signal.SIGKILL)
            detect.wait(timeout=30)
    # Assert: every replayed frame captured or dropped by the kernel (reported), in order, byte for byte
    summary = json.loads(stats.read_text())
    captured = _frames(saved)
    original = _frames(replay)[:REPLAYED]
    assert summary["packets"] + summary["kernel_drops"] + sum(summary["skipped"].values()) == REPLAYED
    assert len(captured) == summary["records"]
    if summary["kernel_drops"] == 0:
        assert captured == original
    else:  # dropped frames are missing; the rest are the replayed ones in order
        it = iter(original)
        assert all(any(frame == o for o in it) for frame in captured)
    # live alerts == offline detect on the same frames (same kernel timestamps)
    offline = tmp_path / "offline.jsonl"
    done = _run(*FEDIOT, "detect", str(model), str(saved), "--out", str(offline))
    assert "packets" in done.stdout
    live_lines = alerts.read_text().splitlines()
    assert live_lines == offline.read_text().splitlines()
    assert len(live_lines) > 0
    assert summary["alerts_written"] == len(live_lines)
    assert summary["latency"]["samples"] == summary["packets"]
