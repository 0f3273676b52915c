"""Every command's failure path through the installed ``fediot`` console script: exit status and one line.

2 = usage or configuration error, 1 = runtime failure, 130 = interrupted (Ctrl-C); stderr never holds a
traceback, and fediot's own message is its last line (Flower's processes log above it in the server and
client cases).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fediot.data.paths import data_root

FEDIOT = Path(sys.executable).with_name("fediot")  # the console script installed with the package
REPO = Path(__file__).resolve().parents[2]  # the fediot Flower app (its pyproject.toml)


def _fediot(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FEDIOT), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=180,
        check=False,
    )


def _assert_fails(proc: subprocess.CompletedProcess[str], status: int, message: str) -> None:
    assert proc.returncode == status, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), proc.stderr[-2000:]
    assert message in last


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["run", "strategies", "--data", "nsl-kdd", "--set", "federated.rounds=abc"],
            "federated.rounds: expected an integer, got 'abc'",
        ),
        (
            ["run", "--set", "federated.roundz=5"],
            "unknown key 'federated.roundz' (did you mean 'federated.rounds'?)",
        ),
        (
            ["run", "--set", "train.optimizer=sgdd"],
            "train.optimizer: expected one of 'adam', 'sgd', got 'sgdd'",
        ),
        (["run", "no-such-experiment"], "unknown experiment 'no-such-experiment'"),
        (["run", "strategies", "--set", "federated.rounds"], "must look like section.key=value"),
        (["run", "--repeats", "0"], "--repeats must be >= 1"),
        (["run", "--no-such-option"], "No such option '--no-such-option'"),
        (["no-such-command"], "No such command 'no-such-command'"),
        (["extract", "--out", "x.csv"], "Missing argument 'PCAPS...'"),
        (["data", "build", "nope"], "unknown dataset 'nope'"),
        (["data", "download", "kdd", "--to", "dl"], "only 'nbaiot' is downloadable"),
        (["server"], "--certs is required"),
        (["client", "--insecure"], "--data is required"),
        (["client", "--data", "gw1.npy", "--root-cert", "ca.crt"], "--key is required"),
        (["server", "--insecure", "--port", "70000"], "--port must be 1-65535"),
        (["server", "--insecure", "--database", "no/such/state.db"], "folder no/such does not exist"),
        (["submit", "no-app"], "no-app: not a Flower app folder (no pyproject.toml)"),
        (
            ["submit", str(REPO), "--run-config", 'federated.strategy="fedsgd"'],
            "federated.strategy: expected one of 'fedavg', 'fedavgm',",
        ),
        (
            ["submit", str(REPO), "--run-config", "server.round-timout=5"],
            "did you mean 'server.round_timeout'?",
        ),
    ],
    ids=[
        "set-not-an-int",
        "set-unknown-key",
        "set-unknown-optimizer",
        "unknown-experiment",
        "set-without-value",
        "repeats-0",
        "unknown-option",
        "unknown-command",
        "extract-no-capture",
        "build-unknown",
        "download-unknown",
        "server-no-certs",
        "client-no-data",
        "client-no-key",
        "server-bad-port",
        "server-no-database-folder",
        "submit-no-app",
        "submit-bad-strategy",
        "submit-unknown-key",
    ],
)
def test_usage_and_config_errors_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    # Execute
    proc = _fediot(*args, cwd=tmp_path)
    # Assert
    _assert_fails(proc, 2, message)
    assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_runtime_failures_exit_1(tmp_path: Path) -> None:
    # Prepare
    (tmp_path / "certs").mkdir()
    # Execute
    missing = _fediot("extract", "missing.pcap", "--out", "x.csv", cwd=tmp_path)
    no_certs = _fediot("server", "--certs", "certs", cwd=tmp_path)
    unknown = _fediot("data", "info", "no-such-dataset", cwd=tmp_path)
    # Assert
    _assert_fails(missing, 1, "missing.pcap: file not found")
    assert not (tmp_path / "x.csv").exists()
    _assert_fails(no_certs, 1, "certs/ca.crt not found")
    _assert_fails(unknown, 1, "unknown dataset 'no-such-dataset'")


def test_data_verify_exits_1_on_a_modified_copy_of_the_data_folder(tmp_path: Path) -> None:
    # Prepare: a copy of the shipped data folder (31 MB), checked clean, then one file changed, one removed
    copy = tmp_path / "data"
    shutil.copytree(data_root(), copy)
    clean = _fediot("data", "verify", cwd=tmp_path, env={"FEDIOT_DATA_DIR": str(copy)})
    with (copy / "iot_sentinel" / "MANIFEST.csv").open("a", encoding="utf-8") as fh:
        fh.write("one more line\n")
    (copy / "kddcup99" / "kddcup.names").unlink()
    # Execute
    proc = _fediot("data", "verify", cwd=tmp_path, env={"FEDIOT_DATA_DIR": str(copy)})
    # Assert
    assert clean.returncode == 0, clean.stderr
    listed = sum(1 for line in (copy / "SHA256SUMS").read_text().splitlines() if line.strip())
    assert f"all {listed} files ok" in clean.stdout
    _assert_fails(proc, 1, f"2 of {listed} files missing or modified")
    assert "mismatch" in proc.stdout
    assert "missing" in proc.stdout


@pytest.mark.slow
def test_ctrl_c_on_run_exits_130_with_one_line(tmp_path: Path) -> None:
    # Prepare: a full-size run (20 rounds), so that it is still working when the signal arrives
    proc = subprocess.Popen(
        [str(FEDIOT), "-v", "run", "strategies", "--data", "nsl-kdd", "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert proc.stderr is not None
        started = proc.stderr.readline()  # the -v log line written just before the experiment starts
        assert "running strategies" in started
        time.sleep(2.0)  # now inside the experiment (loading data, training)
        assert proc.poll() is None
        # Execute
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Assert
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "interrupted"
    assert stdout == ""


@pytest.mark.slow
@pytest.mark.flower
@pytest.mark.network
def test_client_against_a_closed_port_gives_up_with_exit_1(tmp_path: Path) -> None:
    # Prepare: one gateway's rows, and a loopback port nobody listens on
    np.save(tmp_path / "gw1.npy", np.zeros((10, 115), np.float32))
    closed = _free_port()
    # Execute
    started = time.monotonic()
    proc = _fediot(
        "client",
        "--insecure",
        "--superlink",
        f"127.0.0.1:{closed}",
        "--data",
        str(tmp_path / "gw1.npy"),
        "--port",
        str(_free_port()),
        "--connect-timeout",
        "3",
        cwd=tmp_path,
    )
    # Assert: measured ~24 s on 2 loaded cores (start-up, 3 s of retries, shutdown)
    assert time.monotonic() - started < 150
    _assert_fails(proc, 1, f"flower-supernode exited with status 1 (SuperLink 127.0.0.1:{closed})")


@pytest.mark.slow
@pytest.mark.flower
@pytest.mark.network
def test_server_on_a_busy_port_exits_1_before_starting_flower(tmp_path: Path) -> None:
    # Prepare: the port is taken by a listening socket of this test
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # Execute
        proc = _fediot("server", "--insecure", "--port", str(port), cwd=tmp_path)
    # Assert
    _assert_fails(proc, 1, f"cannot listen on 127.0.0.1:{port}: Address already in use")
