"""The feature-table writer against pandas' to_csv / to_parquet, on the shipped captures and edge values."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fediot.data.paths import shipped_file
from fediot.errors import DataError
from fediot.features import extract_features, feature_names, write_features
from fediot.features.writer import format_csv_rows, write_csv, write_parquet

CAPTURES = ("ddos_pcaps/pkt.TCP.synflood.spoofed.pcap.gz", "ddos_pcaps/amp.UDP.bacnet.IOT.37810.pcap.gz")


@pytest.fixture(scope="module", params=CAPTURES)
def capture_features(request: pytest.FixtureRequest) -> np.ndarray:
    features, _ = extract_features([shipped_file(request.param)])
    return features


def _pandas_csv(values: np.ndarray, names: list[str]) -> bytes:
    return pd.DataFrame(values, columns=names).to_csv(index=False).encode("utf-8")


def test_csv_is_byte_identical_to_pandas_on_shipped_captures(
    capture_features: np.ndarray, tmp_path: Path
) -> None:
    # Prepare
    names = feature_names()
    # Execute
    path = write_features(tmp_path / "f.csv", capture_features)
    # Assert
    assert path.read_bytes() == _pandas_csv(capture_features, names)


def test_csv_edge_values_and_blocks_match_pandas() -> None:
    rng = np.random.default_rng(0)
    edge = [0.0, -0.0, 1.0, -1.0, 60.0, 0.1, -2.5e-7, 1e-5, 1e15 + 0.5, 9999999999999998.0, 1e16,
            -1e16, 1.7976931348623157e308, 5e-324, np.nan, np.inf, -np.inf, 1 / 3, 123456789.0,
            -123456789.125]  # fmt: skip
    values = np.concatenate(
        [np.resize(edge, (7, 20)), rng.standard_normal((50, 20)) * 1e3, rng.integers(-9, 9, (9, 20))]
    )
    names = [f"c{i}" for i in range(19)] + ["needs,quoting"]
    buf = io.BytesIO()
    write_csv(buf, values, names, block_rows=4)
    assert buf.getvalue() == _pandas_csv(values, names)
    assert format_csv_rows(values[:0]) == b""


def test_parquet_reads_back_as_pandas_frame(capture_features: np.ndarray, tmp_path: Path) -> None:
    import pyarrow  # noqa: F401  # the parquet extra, which the dev extra installs
    names = feature_names()
    write_parquet(tmp_path / "new.parquet", capture_features, names)
    pd.DataFrame(capture_features, columns=names).to_parquet(tmp_path / "old.parquet", index=False)
    new, old = pd.read_parquet(tmp_path / "new.parquet"), pd.read_parquet(tmp_path / "old.parquet")
    pd.testing.assert_frame_equal(new, old, check_exact=True)


def test_shape_mismatch_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"expected \(n, 2\)"):
        write_csv(tmp_path / "x.csv", np.zeros((3, 4)), ["a", "b"])
