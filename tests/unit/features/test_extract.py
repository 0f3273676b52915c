"""extract_features over files or a packet table, the N-BaIoT CSV, and the `fediot extract` command."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fediot.cli import app
from fediot.data.paths import shipped_file
from fediot.errors import ConfigError, DataError
from fediot.features import PacketTable, extract_features, feature_names, read_packets, write_features


def test_files_are_merged_in_time_order_and_match_a_prebuilt_table(fast_pcaps: list[Path]) -> None:
    # Prepare: the files in reverse order, and the same packets read and sorted by hand
    paths = fast_pcaps[::-1]
    table, _ = read_packets(fast_pcaps, order="given")

    # Execute
    from_files, summary = extract_features(paths)
    from_table, _ = extract_features(table)

    # Assert
    assert summary.num_packets == len(table)
    assert summary.order == "time"
    assert len(summary.files) == len(paths)
    np.testing.assert_array_equal(from_files, from_table)


def test_given_order_concatenates_files(packets: Callable[..., PacketTable]) -> None:
    # Prepare: a table whose timestamps go backwards
    table = packets([5.0, 1.0, 3.0], [100, 200, 300])

    # Execute
    given, _ = extract_features(table, order="given")
    timed, _ = extract_features(table, order="time")

    # Assert: rows follow the table in "given" order, timestamps in "time" order
    assert given[0, 1] == 100.0
    assert timed[0, 1] == 200.0


def test_reference_implementation_gives_the_same_matrix(packets: Callable[..., PacketTable]) -> None:
    # Prepare
    table = packets([0.0, 0.3, 0.4, 1.5], [60, 1500, 60, 590])

    # Execute
    fast, _ = extract_features(table)
    ref, _ = extract_features(table, implementation="reference")

    # Assert
    np.testing.assert_allclose(fast, ref, rtol=1e-9, atol=1e-9)


def test_no_packets_raises_data_error(tmp_path: Path) -> None:
    # Prepare: a valid pcap header with no records
    import dpkt

    path = tmp_path / "empty.pcap"
    with path.open("wb") as fh:
        dpkt.pcap.Writer(fh)

    # Execute / Assert
    with pytest.raises(DataError, match="no decodable packets"):
        extract_features([path])


def test_write_features_csv_has_the_nbaiot_header_and_round_trips(tmp_path: Path) -> None:
    # Prepare
    rng = np.random.default_rng(0)
    features = rng.random((7, 115))

    # Execute
    path = write_features(tmp_path / "sub" / "features.csv", features)

    # Assert
    frame = pd.read_csv(path)
    assert list(frame.columns) == feature_names()
    np.testing.assert_array_equal(frame.to_numpy(), features)
    assert [p.name for p in path.parent.iterdir()] == ["features.csv"]


def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: pyarrow unimportable even where the parquet extra is installed (runs everywhere, no skip)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    # Execute / Assert
    with pytest.raises(ConfigError, match=r"fediot\[parquet\]"):
        write_features(tmp_path / "f.parquet", np.zeros((1, 115)))


def test_cli_extract_writes_csv_and_reports_counts(tmp_path: Path) -> None:
    # Prepare
    pcap = shipped_file("ddos_pcaps/amp.UDP.bacnet.IOT.37810.pcap.gz")
    out = tmp_path / "amp.csv"

    # Execute
    result = CliRunner().invoke(app, ["--quiet", "extract", str(pcap), "--out", str(out)])

    # Assert
    assert result.exit_code == 0, result.output
    assert "9617 packets from 1 files" in result.output
    assert "skipped: none" in result.output
    frame = pd.read_csv(out)
    assert frame.shape == (9617, 115)
    assert list(frame.columns) == feature_names()


def test_cli_extract_rejects_a_non_capture(tmp_path: Path) -> None:
    # Prepare
    bogus = tmp_path / "notes.pcap"
    bogus.write_text("not a capture")

    # Execute
    result = CliRunner().invoke(app, ["--quiet", "extract", str(bogus), "--out", str(tmp_path / "x.csv")])

    # Assert
    assert result.exit_code != 0
    assert isinstance(result.exception, DataError)
    assert "notes.pcap" in str(result.exception)
    assert not (tmp_path / "x.csv").exists()
