"""Tests of the KDD Cup 99 / NSL-KDD readers on the real shipped files and on corrupted copies."""

from __future__ import annotations

import collections
import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fediot.data.kdd import (
    KDD_CATEGORIES,
    kdd_attack_categories,
    kdd_attack_category,
    kdd_continuous_features,
    read_kdd99,
    read_kdd_attack_types,
    read_kdd_names,
    read_nslkdd,
)
from fediot.data.paths import shipped_file
from fediot.data.tabular import TabularData
from fediot.errors import DataError

WriteLines = Callable[[str, list[str]], Path]


def _counts(table: TabularData) -> collections.Counter[str]:
    return collections.Counter(table.labels.tolist())


# --- the real files ---------------------------------------------------------------------------------


def test_kdd10_has_the_published_rows_and_label_counts(kdd10: TabularData) -> None:
    # Execute
    counts = _counts(kdd10)
    # Assert
    assert kdd10.x.shape == (494_021, 41)
    assert kdd10.x.dtype == np.float32
    assert counts["smurf"] == 280_790
    assert counts["neptune"] == 107_201
    assert counts["normal"] == 97_278
    assert counts["back"] == 2_203
    assert counts["satan"] == 1_589
    assert len(counts) == 23


def test_corrected_has_the_published_rows_and_label_counts(kdd_corrected: TabularData) -> None:
    # Execute
    counts = _counts(kdd_corrected)
    # Assert
    assert kdd_corrected.x.shape == (311_029, 41)
    assert counts["smurf"] == 164_091
    assert counts["normal"] == 60_593
    assert counts["neptune"] == 58_001
    assert counts["snmpgetattack"] == 7_741
    assert counts["mailbomb"] == 5_000
    assert len(counts) == 38


def test_corrected_has_17_test_only_attacks_all_categorised(
    kdd10: TabularData, kdd_corrected: TabularData
) -> None:
    # Execute
    test_only = set(kdd_corrected.label_names) - set(kdd10.label_names)
    categories = {kdd_attack_category(label) for label in test_only}
    # Assert
    assert len(test_only) == 17
    assert categories <= {"dos", "probe", "r2l", "u2r"}


@pytest.mark.parametrize(
    ("name", "rows", "normal", "num_labels"),
    [
        ("KDDTrain+_20Percent", 25_192, 13_449, 22),
        ("KDDTest+", 22_544, 9_711, 38),
        ("KDDTest-21", 11_850, 2_152, 38),
    ],
)
def test_nslkdd_files_have_the_published_counts(
    nsl_tables: dict[str, TabularData], name: str, rows: int, normal: int, num_labels: int
) -> None:
    # Prepare
    table = nsl_tables[name]
    # Execute
    counts = _counts(table)
    # Assert
    assert table.x.shape == (rows, 41)
    assert counts["normal"] == normal
    assert rows - counts["normal"] == sum(v for k, v in counts.items() if k != "normal")
    assert len(counts) == num_labels
    assert table.difficulty is not None
    assert table.difficulty.shape == (rows,)
    assert table.difficulty.min() >= 0
    assert table.difficulty.max() <= 21


def test_nslkdd_test21_holds_only_rows_fewer_than_21_learners_got_right(
    nsl_tables: dict[str, TabularData],
) -> None:
    # Prepare
    test21 = nsl_tables["KDDTest-21"]
    # Assert
    assert test21.difficulty is not None
    assert int(test21.difficulty.max()) <= 20


def test_symbolic_strings_are_codes_into_the_fixed_vocabulary(kdd10: TabularData) -> None:
    # Prepare
    first = kdd10.feature_names.index("protocol_type")
    service = kdd10.feature_names.index("service")
    # Execute
    protocols = {KDD_CATEGORIES["protocol_type"][int(c)] for c in np.unique(kdd10.x[:, first])}
    row0_service = KDD_CATEGORIES["service"][int(kdd10.x[0, service])]
    # Assert
    assert protocols == {"icmp", "tcp", "udp"}
    assert row0_service == "http"  # the first line of the file: 0,tcp,http,SF,...
    assert kdd10.categories["flag"] == KDD_CATEGORIES["flag"]


def test_continuous_features_are_the_34_continuous_columns(kdd10: TabularData) -> None:
    # Execute
    cont = kdd_continuous_features(kdd10)
    # Assert
    assert cont.x.shape == (494_021, 34)
    assert "service" not in cont.feature_names
    assert "logged_in" not in cont.feature_names
    np.testing.assert_array_equal(cont.x[:, 0], kdd10.x[:, 0])  # duration
    assert cont.labels is kdd10.labels


def test_y_indexes_label_names(nsl_tables: dict[str, TabularData]) -> None:
    # Prepare
    table = nsl_tables["KDDTest-21"]
    # Execute
    names, y = table.label_names, table.y
    # Assert
    assert [names[i] for i in y[:50].tolist()] == table.labels[:50].tolist()
    assert y.dtype == np.int64


def test_names_file_has_41_features_34_continuous_and_23_classes() -> None:
    # Execute
    names = read_kdd_names()
    # Assert
    assert len(names.feature_names) == 41
    assert sum(names.continuous) == 34
    assert len(names.classes) == 23
    assert names.feature_names[:3] == ("duration", "protocol_type", "service")


@pytest.mark.parametrize(
    ("label", "category"),
    [("normal.", "normal"), ("smurf", "dos"), ("satan.", "probe"), ("warezclient", "r2l"),
     ("rootkit", "u2r"), ("apache2", "dos"), ("mscan", "probe"), ("xterm", "u2r")],
)
def test_attack_category(label: str, category: str) -> None:
    # Execute / Assert
    assert kdd_attack_category(label) == category


def test_attack_category_rejects_unknown_label() -> None:
    # Execute / Assert
    with pytest.raises(DataError, match="unknown KDD label 'bogus'"):
        kdd_attack_category("bogus")


def test_uci_map_wins_over_the_extended_map() -> None:
    # Execute
    mapping = kdd_attack_categories()
    # Assert
    assert mapping["normal"] == "normal"
    uci = read_kdd_attack_types(shipped_file("kddcup99/training_attack_types"))
    assert len(uci) == 22
    assert all(mapping[k] == v for k, v in uci.items())


def test_nrows_reads_a_prefix() -> None:
    # Execute
    table = read_kdd99("corrected", nrows=100)
    # Assert
    assert table.num_rows == 100
    assert table.labels[0] == "normal"


def test_reads_a_plain_text_copy_like_the_gzip(kdd_head: list[str], write_lines: WriteLines) -> None:
    # Prepare
    plain = write_lines("head.txt", kdd_head)
    gz = write_lines("head.gz", kdd_head)
    # Execute
    a, b = read_kdd99(plain), read_kdd99(gz)
    # Assert
    np.testing.assert_array_equal(a.x, b.x)
    assert a.num_rows == 20
    assert a.source == str(plain)


# --- strictness: one test per failure kind ----------------------------------------------------------


def _corrupt(lines: list[str], index: int, column: int, value: str) -> list[str]:
    out = list(lines)
    fields = out[index].split(",")
    fields[column] = value
    out[index] = ",".join(fields)
    return out


def test_missing_file(tmp_path: Path) -> None:
    # Execute / Assert
    with pytest.raises(DataError, match="file not found") as info:
        read_kdd99(tmp_path / "nope.gz")
    assert info.value.path == str(tmp_path / "nope.gz")


def test_row_with_too_many_fields(kdd_head: list[str], write_lines: WriteLines) -> None:
    # Prepare
    lines = list(kdd_head)
    lines[6] = "0," + lines[6]
    path = write_lines("bad.gz", lines)
    # Execute
    with pytest.raises(DataError, match="expected 42 comma-separated fields, found 43") as info:
        read_kdd99(path)
    # Assert
    assert (info.value.path, info.value.line) == (str(path), 7)


def test_row_with_too_few_fields(kdd_head: list[str], write_lines: WriteLines) -> None:
    # Prepare
    lines = list(kdd_head)
    lines[9] = lines[9].split(",", 1)[1]
    path = write_lines("bad.gz", lines)
    # Execute
    with pytest.raises(DataError, match="expected 42 comma-separated fields, found 41") as info:
        read_kdd99(path)
    # Assert
    assert info.value.line == 10


def test_non_numeric_value_in_a_numeric_column(kdd_head: list[str], write_lines: WriteLines) -> None:
    # Prepare
    path = write_lines("bad.txt", _corrupt(kdd_head, 4, 4, "12x"))
    # Execute
    with pytest.raises(DataError, match="expected a finite number, found '12x'") as info:
        read_kdd99(path)
    # Assert
    assert (info.value.line, info.value.column) == (5, "src_bytes")


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", ""])
def test_nan_inf_or_empty_value(kdd_head: list[str], write_lines: WriteLines, value: str) -> None:
    # Prepare
    path = write_lines("bad.gz", _corrupt(kdd_head, 11, 30, value))
    # Execute
    with pytest.raises(DataError, match="expected a finite number") as info:
        read_kdd99(path)
    # Assert
    assert (info.value.line, info.value.column) == (12, "srv_diff_host_rate")


def test_unknown_label(kdd_head: list[str], write_lines: WriteLines) -> None:
    # Prepare
    path = write_lines("bad.gz", _corrupt(kdd_head, 2, 41, "martian."))
    # Execute
    with pytest.raises(DataError, match="unknown label 'martian'") as info:
        read_kdd99(path)
    # Assert
    assert (info.value.line, info.value.column) == (3, "label")


def test_kdd99_label_without_its_period(kdd_head: list[str], write_lines: WriteLines) -> None:
    # Prepare
    path = write_lines("bad.gz", _corrupt(kdd_head, 3, 41, "normal"))
    # Execute
    with pytest.raises(DataError, match=r"label ending in '\.'") as info:
        read_kdd99(path)
    # Assert
    assert info.value.line == 4


def test_unknown_symbolic_value(kdd_head: list[str], write_lines: WriteLines) -> None:
    # Prepare
    path = write_lines("bad.gz", _corrupt(kdd_head, 7, 2, "gopher2"))
    # Execute
    with pytest.raises(DataError, match="unknown service value 'gopher2'") as info:
        read_kdd99(path)
    # Assert
    assert (info.value.line, info.value.column) == (8, "service")


def test_empty_line_in_the_middle(kdd_head: list[str], write_lines: WriteLines) -> None:
    # Prepare
    path = write_lines("bad.gz", [*kdd_head[:5], "", *kdd_head[5:]])
    # Execute
    with pytest.raises(DataError, match="empty line") as info:
        read_kdd99(path)
    # Assert
    assert info.value.line == 6


def test_empty_file(write_lines: WriteLines) -> None:
    # Prepare
    path = write_lines("empty.gz", [])
    # Execute / Assert
    with pytest.raises(DataError, match="no data rows"):
        read_kdd99(path)


def test_truncated_gzip(tmp_path: Path, kdd_head: list[str]) -> None:
    # Prepare
    data = gzip.compress("".join(f"{line}\n" for line in kdd_head * 50).encode())
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])
    # Execute
    with pytest.raises(DataError, match="damaged or truncated") as info:
        read_kdd99(path)
    # Assert
    assert info.value.path == str(path)
    assert info.value.line is not None
    assert info.value.line > 1


def test_nslkdd_label_with_a_period_is_unknown(nsl_head: list[str], write_lines: WriteLines) -> None:
    # Prepare
    path = write_lines("bad.txt", _corrupt(nsl_head, 1, 41, "neptune."))
    # Execute
    with pytest.raises(DataError, match=r"unknown label 'neptune\.'") as info:
        read_nslkdd(path)
    # Assert
    assert info.value.line == 2


def test_nslkdd_fractional_difficulty(nsl_head: list[str], write_lines: WriteLines) -> None:
    # Prepare
    path = write_lines("bad.txt", _corrupt(nsl_head, 13, 42, "20.5"))
    # Execute
    with pytest.raises(DataError, match="integer difficulty") as info:
        read_nslkdd(path)
    # Assert
    assert (info.value.line, info.value.column) == (14, "difficulty")


def test_nslkdd_reader_rejects_a_kdd99_file(kdd_head: list[str], write_lines: WriteLines) -> None:
    # Prepare
    path = write_lines("kdd.gz", kdd_head)
    # Execute / Assert
    with pytest.raises(DataError, match="expected 43 comma-separated fields, found 42"):
        read_nslkdd(path)


def test_malformed_names_file(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "kddcup.names"
    path.write_text("normal,smurf.\n\nduration: continuous.\nprotocol_type: text.\n")
    # Execute
    with pytest.raises(DataError, match="name: continuous") as info:
        read_kdd_names(path)
    # Assert
    assert info.value.line == 4
