"""Tests of ``fediot data list/info/verify/download`` through Typer's CliRunner."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

from typer.testing import CliRunner

from fediot.cli import app
from fediot.data.catalog import DATASETS
from fediot.errors import ConfigError, DataError

runner = CliRunner()


def test_list_shows_every_dataset_with_its_rows() -> None:
    # Execute
    result = runner.invoke(app, ["data", "list"], env={"COLUMNS": "160"})
    # Assert
    assert result.exit_code == 0, result.output
    for info in DATASETS:
        assert info.name in result.output
    assert "494,021" in result.output
    assert "311,029" in result.output
    assert "11,850" in result.output


def test_info_shows_rows_label_counts_and_sha256_status() -> None:
    # Execute
    result = runner.invoke(app, ["data", "info", "nsl-kdd-test-21"], env={"COLUMNS": "160"})
    # Assert
    assert result.exit_code == 0, result.output
    assert "rows: 11,850" in result.output
    assert "labels: 38" in result.output
    assert "normal" in result.output
    assert "2,152" in result.output
    assert "sha256 nsl_kdd/KDDTest-21.txt.gz: ok" in result.output


def test_info_unknown_dataset_fails() -> None:
    # Execute
    result = runner.invoke(app, ["data", "info", "nope"])
    # Assert
    assert isinstance(result.exception, DataError)
    assert "unknown dataset 'nope'" in str(result.exception)


def test_verify_passes_on_the_shipped_data() -> None:
    # Execute
    result = runner.invoke(app, ["data", "verify"])
    # Assert
    assert result.exit_code == 0, result.output
    assert "all 46 files ok" in result.output


def test_verify_exits_1_on_a_modified_file(tmp_path: Path) -> None:
    # Prepare
    (tmp_path / "x.csv").write_text("modified\n")
    digest = hashlib.sha256(b"original\n").hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{digest}  x.csv\n")
    # Execute
    result = runner.invoke(app, ["data", "verify"], env={"FEDIOT_DATA_DIR": str(tmp_path), "COLUMNS": "160"})
    # Assert
    assert result.exit_code == 1
    assert "mismatch" in result.output


def test_download_unreachable_server_names_the_url(tmp_path: Path) -> None:
    # Prepare
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Execute
    result = runner.invoke(
        app, ["data", "download", "nbaiot", "--to", str(tmp_path / "n"), "--base-url", f"http://127.0.0.1:{port}"]
    )
    # Assert
    assert isinstance(result.exception, DataError)
    assert f"http://127.0.0.1:{port}/1.benign.csv" in str(result.exception)


def test_download_of_a_shipped_dataset_is_refused(tmp_path: Path) -> None:
    # Execute
    result = runner.invoke(app, ["data", "download", "kdd99", "--to", str(tmp_path)])
    # Assert: a usage error (the real entry point exits 2 for it, tests/e2e/test_cli_exit.py)
    assert isinstance(result.exception, ConfigError)
    assert "only 'nbaiot'" in str(result.exception)
