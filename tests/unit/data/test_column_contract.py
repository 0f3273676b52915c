"""Client tables are finite or refused: the N-BaIoT column contract, KDD values, gateway feature rows and
AnomalyDataset rows; every error names the file (or client), the line or row, and the column."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from fediot.data import anomaly
from fediot.data.kdd import read_kdd99
from fediot.data.nbaiot import nbaiot_feature_names, read_nbaiot_csv
from fediot.data.paths import shipped_file
from fediot.data.tabular import read_feature_rows
from fediot.errors import DataError

NAMES = nbaiot_feature_names()


@pytest.fixture(scope="module")
def sample_lines() -> list[str]:
    """Header and the first 20 rows of the shipped N-BaIoT benign sample (real rows)."""
    text = gzip.decompress(shipped_file("nbaiot/samples/benign_traffic.csv.gz").read_bytes()).decode()
    return text.splitlines()[:21]


@pytest.fixture(scope="module")
def kdd_lines() -> list[str]:
    """The first 20 rows of the shipped KDD Cup 99 10% file (real rows)."""
    with gzip.open(shipped_file("kddcup99/kddcup.data_10_percent.gz"), "rt") as fh:
        return [next(fh).rstrip("\n") for _ in range(20)]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _set_cell(line: str, column: int, value: str) -> str:
    fields = line.split(",")
    fields[column] = value
    return ",".join(fields)


def test_the_sample_reads_with_its_115_columns(tmp_path: Path, sample_lines: list[str]) -> None:
    # Execute
    x = read_nbaiot_csv(_write(tmp_path / "ok.csv", sample_lines))

    # Assert
    assert x.shape == (20, 115)
    np.testing.assert_array_equal(x[0], np.asarray(sample_lines[1].split(","), dtype=np.float32))


@pytest.mark.parametrize(
    ("edit", "line", "message"),
    [
        pytest.param(
            lambda ls: [ls[0]] + [r + ",1.5" for r in ls[1:]],
            2,
            "expected 115 comma-separated fields, found 116",
            id="116th-trailing-field-every-row",
        ),
        pytest.param(
            lambda ls: [ls[0]] + ["7," + r for r in ls[1:]],
            2,
            "expected 115 comma-separated fields, found 116",
            id="leading-extra-field",
        ),
        pytest.param(
            lambda ls: [*ls[:5], ls[5] + ",0", *ls[6:]],
            6,
            "expected 115 comma-separated fields, found 116",
            id="one-long-row",
        ),
        pytest.param(
            lambda ls: [*ls[:3], ls[3] + ",1,2", *ls[4:]],
            4,
            "expected 115 comma-separated fields, found 117",
            id="two-extra-fields",
        ),
        pytest.param(
            lambda ls: [*ls[:7], ls[7] + ",", *ls[8:]],
            8,
            "expected 115 comma-separated fields, found a trailing comma",
            id="trailing-comma",
        ),
        pytest.param(
            lambda ls: [*ls[:2], ls[2].rsplit(",", 1)[0], *ls[3:]],
            3,
            "expected 115 comma-separated fields, found 114",
            id="missing-field",
        ),
        pytest.param(
            lambda ls: [*ls[:4], '"' + ls[4], *ls[5:]],
            5,
            r"column MI_dir_L5_weight: expected a finite number, found '\"1\.0'",
            id="quote",
        ),
    ],
)
def test_rows_with_the_wrong_field_count_are_errors_naming_the_line(
    tmp_path: Path, sample_lines: list[str], edit: object, line: int, message: str
) -> None:
    # Prepare
    assert callable(edit)
    path = _write(tmp_path / "bad.csv", edit(sample_lines))

    # Execute / Assert
    with pytest.raises(DataError, match=rf"bad\.csv, line {line}(, |: ){message}"):
        read_nbaiot_csv(path)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("nan", "expected a finite number, found 'nan'", id="nan"),
        pytest.param("inf", "expected a finite number, found 'inf'", id="inf"),
        pytest.param("-Infinity", "expected a finite number, found '-Infinity'", id="minus-inf"),
        pytest.param("", "expected a finite number, found ''", id="empty"),
        pytest.param("12abc", "expected a finite number, found '12abc'", id="non-numeric"),
        pytest.param(
            "1e39",
            r"expected a finite number within float32 range \(\|x\| <= 3\.4e38\), found inf",
            id="beyond-float32",
        ),
    ],
)
def test_a_bad_cell_is_an_error_naming_file_line_and_column(
    tmp_path: Path, sample_lines: list[str], value: str, message: str
) -> None:
    # Prepare: row 9 (line 10), column 40 (H_L0.1_weight) -- the rest of the column stays numeric
    lines = list(sample_lines)
    lines[9] = _set_cell(lines[9], 39, value)
    path = _write(tmp_path / "cell.csv", lines)

    # Execute / Assert: an error, never a dropped column
    with pytest.raises(DataError, match=rf"cell\.csv, line 10, column {NAMES[39]}: {message}"):
        read_nbaiot_csv(path)


def test_an_unlabelled_extra_column_in_the_header_is_an_error(
    tmp_path: Path, sample_lines: list[str]
) -> None:
    # Prepare: a 116th header name and a 116th field on every row
    lines = [sample_lines[0] + ",extra"] + [r + ",0" for r in sample_lines[1:]]
    path = _write(tmp_path / "extra.csv", lines)

    # Execute / Assert
    with pytest.raises(
        DataError, match=r"extra\.csv, line 1, column 116: header: expected 115 columns, found 116"
    ):
        read_nbaiot_csv(path)


def test_kdd_values_beyond_float32_are_errors(tmp_path: Path, kdd_lines: list[str]) -> None:
    # Prepare: src_bytes (column 5) of row 4 is 1e39: finite in float64, inf in the float32 table
    lines = list(kdd_lines)
    lines[3] = _set_cell(lines[3], 4, "1e39")
    path = tmp_path / "kdd.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))

    # Execute / Assert
    assert read_kdd99(_write(tmp_path / "ok.txt", kdd_lines)).x.shape == (20, 41)
    with pytest.raises(
        DataError, match=r"kdd\.gz, line 4, column src_bytes: expected a finite number within float32"
    ):
        read_kdd99(path)


def test_kdd_nan_and_extra_fields_are_errors(tmp_path: Path, kdd_lines: list[str]) -> None:
    # Prepare
    nan = list(kdd_lines)
    nan[5] = _set_cell(nan[5], 0, "NaN")
    extra = [line + ",x" for line in kdd_lines]

    # Execute / Assert
    with pytest.raises(
        DataError, match=r"nan\.txt, line 6, column duration: expected a finite number, found 'NaN'"
    ):
        read_kdd99(_write(tmp_path / "nan.txt", nan))
    with pytest.raises(DataError, match=r"extra\.txt, line 1: expected 42 comma-separated fields, found 43"):
        read_kdd99(_write(tmp_path / "extra.txt", extra))


# ---- read_feature_rows: the strict reader for a gateway's rows ------------------------------------------


def test_read_feature_rows_reads_csv_csv_gz_and_npy_alike(tmp_path: Path, sample_lines: list[str]) -> None:
    # Prepare
    csv = _write(tmp_path / "rows.csv", sample_lines)
    gz = tmp_path / "rows.csv.gz"
    gz.write_bytes(gzip.compress(csv.read_bytes()))
    npy = tmp_path / "rows.npy"
    np.save(npy, read_nbaiot_csv(csv).astype(np.float64))

    # Execute
    results = [read_feature_rows(p, NAMES) for p in (csv, gz, npy)]

    # Assert
    for x in results:
        assert x.dtype == np.float32
        np.testing.assert_array_equal(x, results[0])
    assert results[0].shape == (20, 115)


def test_read_feature_rows_refuses_reordered_or_missing_columns(
    tmp_path: Path, sample_lines: list[str]
) -> None:
    # Prepare: swap the first two header names; drop the last column everywhere
    header = sample_lines[0].split(",")
    swapped = [",".join([header[1], header[0], *header[2:]]), *sample_lines[1:]]
    dropped = [line.rsplit(",", 1)[0] for line in sample_lines]

    # Execute / Assert
    with pytest.raises(
        DataError, match=rf"swapped\.csv, line 1, column 1: header: expected column '{NAMES[0]}'"
    ):
        read_feature_rows(_write(tmp_path / "swapped.csv", swapped), NAMES)
    with pytest.raises(
        DataError,
        match=r"dropped\.csv, line 1, column 115: header: expected column 'HpHp_L0\.01_pcc', "
        "found nothing",
    ):
        read_feature_rows(_write(tmp_path / "dropped.csv", dropped), NAMES)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        pytest.param(
            np.full((3, 115), np.nan), r"array: row 0: expected a finite number, found .*nan", id="nan"
        ),
        pytest.param(
            np.where(np.eye(4, 115, k=7) > 0, np.inf, 1.0), "row 0: expected a finite number", id="inf"
        ),
        pytest.param(
            np.where(np.eye(5, 115, k=-2) > 0, 1e300, 1.0),
            "row 2: expected a finite number within float32 range",
            id="beyond-float32",
        ),
        pytest.param(
            np.zeros((3, 114)),
            r"expected an array of shape \(n_rows >= 1, 115\), found \(3, 114\)",
            id="114-columns",
        ),
        pytest.param(np.zeros(115), r"found \(115,\)", id="1-d"),
        pytest.param(np.zeros((0, 115)), r"found \(0, 115\)", id="no-rows"),
        pytest.param(np.full((2, 115), "1.0"), "expected a numeric .* array, found <U3", id="strings"),
        pytest.param(np.zeros((2, 115), dtype=bool), "expected a numeric .* array, found bool", id="bool"),
    ],
)
def test_read_feature_rows_refuses_bad_npy(tmp_path: Path, array: np.ndarray, message: str) -> None:
    # Prepare
    path = tmp_path / "rows.npy"
    np.save(path, array)

    # Execute / Assert
    with pytest.raises(DataError, match=rf"rows\.npy.*{message}"):
        read_feature_rows(path, NAMES)


def test_read_feature_rows_names_the_column_of_a_bad_npy_value(tmp_path: Path) -> None:
    # Prepare
    x = np.ones((6, 115))
    x[4, 17] = np.nan
    np.save(tmp_path / "r.npy", x)

    # Execute / Assert
    with pytest.raises(
        DataError, match=rf"r\.npy, column {NAMES[17]}: array: row 4: expected a finite number"
    ):
        read_feature_rows(tmp_path / "r.npy", NAMES)


def test_read_feature_rows_refuses_pickles_other_files_and_bad_names(tmp_path: Path) -> None:
    # Prepare
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "rows.parquet").write_bytes(b"PAR1")
    (tmp_path / "cut.npy").write_bytes(b"\x93NUMPY\x01\x00")

    # Execute / Assert
    with pytest.raises(DataError, match=r"obj\.npy: not a readable \.npy array without pickled objects"):
        read_feature_rows(tmp_path / "obj.npy", NAMES)
    with pytest.raises(DataError, match=r"cut\.npy: not a readable \.npy array"):
        read_feature_rows(tmp_path / "cut.npy", NAMES)
    with pytest.raises(DataError, match=r"rows\.parquet: expected a \.csv, \.csv\.gz or \.npy file"):
        read_feature_rows(tmp_path / "rows.parquet", NAMES)
    with pytest.raises(DataError, match=r"gone\.npy: file not found"):
        read_feature_rows(tmp_path / "gone.npy", NAMES)
    with pytest.raises(DataError, match="must be distinct and non-empty"):
        read_feature_rows(tmp_path / "x.npy", ["a", "a"])


# ---- AnomalyDataset rows are finite ----------------------------------------------------------------------


def _dataset(x_train: np.ndarray, test_x: np.ndarray) -> anomaly.AnomalyDataset:
    n = test_x.shape[0]
    test = anomaly.TestSet(test_x, np.zeros(n, np.int8), np.full(n, "benign"), np.zeros(n, np.int32))
    client = anomaly.ClientSplit("gw1", x_train, x_train[:2], {"test": test})
    return anomaly.AnomalyDataset("toy", "nbaiot", NAMES[:3], {"gw1": client}, ("test",))


def test_anomaly_dataset_refuses_non_finite_rows_naming_client_set_row_and_column() -> None:
    # Prepare
    good = np.ones((5, 3), np.float32)
    bad_test = good.copy()
    bad_test[3, 2] = np.inf

    # Execute / Assert
    assert _dataset(good, good).clients["gw1"].x_train.shape == (5, 3)
    with pytest.raises(
        DataError,
        match=rf"column {NAMES[2]}: toy: client 'gw1' test 'test': row 3: expected a "
        "finite number",
    ):
        _dataset(good, bad_test)
    with pytest.raises(DataError, match=r"client 'gw1': test 'test' has shape \(5, 4\), expected \(n, 3\)"):
        _dataset(good, np.ones((5, 4), np.float32))
    with pytest.raises(DataError, match=r"toy: client 'gw1' x_train: shape \(5, 2\), expected \(n, 3\)"):
        _dataset(np.ones((5, 2), np.float32), np.ones((5, 2), np.float32))


def test_invalid_utf8_is_a_data_error_not_a_traceback(tmp_path: Path, sample_lines: list[str]) -> None:
    # Prepare: a byte that is not UTF-8 in row 5 (found by tests/fuzz/test_fuzz_csv.py)
    path = tmp_path / "latin.csv"
    data = ("\n".join(sample_lines) + "\n").encode()
    at = data.index(b"\n", data.index(b"\n") * 5) + 3
    path.write_bytes(data[:at] + b"\xb0" + data[at + 1 :])

    # Execute / Assert
    with pytest.raises(
        DataError, match=r"latin\.csv, line \d+: damaged or truncated file .*UnicodeDecodeError"
    ):
        read_nbaiot_csv(path)
