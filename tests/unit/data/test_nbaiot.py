"""Tests of the N-BaIoT reader: both real layouts built from the 4 real sample files, and bad inputs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from fediot.data.nbaiot import (
    NBAIOT_NUM_FEATURES,
    find_nbaiot_files,
    nbaiot_device_names,
    nbaiot_expected_counts,
    nbaiot_feature_names,
    read_nbaiot,
    read_nbaiot_csv,
)
from fediot.data.paths import shipped_file
from fediot.errors import DataError

SAMPLES = ("benign_traffic", "doorbell_udp", "scan", "thermostat_udp")

# Device 1 gets all four samples; device 3 (Ennio_Doorbell: no Mirai in N-BaIoT) a benign prefix, one attack.
UCI_FILES = {
    "Danmini_Doorbell/benign_traffic.csv": ("benign_traffic", None),
    "Danmini_Doorbell/gafgyt_attacks/udp.csv": ("doorbell_udp", None),
    "Danmini_Doorbell/gafgyt_attacks/scan.csv.gz": ("scan", None),
    "Danmini_Doorbell/mirai_attacks/udp.csv": ("thermostat_udp", None),
    "Ennio_Doorbell/benign_traffic.csv.gz": ("benign_traffic", 50),
    "Ennio_Doorbell/gafgyt_attacks/combo.csv": ("doorbell_udp", None),
}
KAGGLE_FILES = {
    "1.benign.csv": ("benign_traffic", None),
    "1.gafgyt.udp.csv": ("doorbell_udp", None),
    "1.gafgyt.scan.csv": ("scan", None),
    "1.mirai.udp.csv.gz": ("thermostat_udp", None),
    "3.benign.csv": ("benign_traffic", 50),
    "3.gafgyt.combo.csv": ("doorbell_udp", None),
}


@pytest.fixture(scope="module")
def sample_lines() -> dict[str, list[str]]:
    """Header + 299 data lines of each real sample file."""
    out = {}
    for name in SAMPLES:
        with gzip.open(shipped_file(f"nbaiot/samples/{name}.csv.gz"), "rt", encoding="utf-8") as fh:
            out[name] = fh.read().splitlines()
    return out


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(f"{line}\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def _build(root: Path, files: dict[str, tuple[str, int | None]], samples: dict[str, list[str]]) -> Path:
    for rel, (sample, rows) in files.items():
        lines = samples[sample]
        _write(root / rel, lines if rows is None else lines[: rows + 1])
    return root


def test_metadata_feature_names_device_names_and_counts() -> None:
    # Execute
    names = nbaiot_feature_names()
    devices = nbaiot_device_names()
    counts = nbaiot_expected_counts()
    # Assert
    assert len(names) == NBAIOT_NUM_FEATURES == 115
    assert names[0] == "MI_dir_L5_weight"
    assert devices[1] == "Danmini_Doorbell"
    assert devices[9] == "SimpleHome_XCS7_1003_WHT_Security_Camera"
    assert len(counts) == 89
    assert sum(counts.values()) == 7_062_606
    assert counts["1.benign.csv"] == 49_548
    assert not any(k.startswith(("3.mirai", "7.mirai")) for k in counts)


def test_read_sample_file() -> None:
    # Execute
    x = read_nbaiot_csv(shipped_file("nbaiot/samples/thermostat_udp.csv.gz"))
    # Assert
    assert x.shape == (299, 115)
    assert x.dtype == np.float32
    assert np.isfinite(x).all()


def test_uci_layout(tmp_path: Path, sample_lines: dict[str, list[str]]) -> None:
    # Prepare
    root = _build(tmp_path / "uci", UCI_FILES, sample_lines)
    (root / "manifest.json").write_text(json.dumps({"ignored": True}))
    (root / "Danmini_Doorbell" / "mirai_attacks.rar").write_bytes(b"Rar!")
    # Execute
    devices = read_nbaiot(root)
    # Assert
    assert list(devices) == ["Danmini_Doorbell", "Ennio_Doorbell"]
    doorbell = devices["Danmini_Doorbell"]
    assert list(doorbell.attacks) == ["gafgyt.scan", "gafgyt.udp", "mirai.udp"]
    assert doorbell.benign.shape == (299, 115)
    assert doorbell.num_rows == 4 * 299
    assert devices["Ennio_Doorbell"].benign.shape == (50, 115)
    assert list(devices["Ennio_Doorbell"].attacks) == ["gafgyt.combo"]
    expected_first = np.array(sample_lines["benign_traffic"][1].split(","), dtype=np.float32)
    np.testing.assert_array_equal(doorbell.benign[0], expected_first)


def test_kaggle_layout_gives_identical_arrays(tmp_path: Path, sample_lines: dict[str, list[str]]) -> None:
    # Prepare
    uci = read_nbaiot(_build(tmp_path / "uci", UCI_FILES, sample_lines))
    kaggle_root = _build(tmp_path / "kaggle", KAGGLE_FILES, sample_lines)
    (kaggle_root / "data_summary.csv").write_text("File Name, Data Count, Feature Count\n")
    # Execute
    kaggle = read_nbaiot(kaggle_root)
    # Assert
    assert list(kaggle) == list(uci)
    for name, device in uci.items():
        other = kaggle[name]
        np.testing.assert_array_equal(device.benign, other.benign)
        assert list(device.attacks) == list(other.attacks)
        for key, rows in device.attacks.items():
            np.testing.assert_array_equal(rows, other.attacks[key])


def test_any_family_attacks_folder_is_read(tmp_path: Path, sample_lines: dict[str, list[str]]) -> None:
    # Prepare
    root = _build(tmp_path, {
        "Cam/benign_traffic.csv": ("benign_traffic", 10),
        "Cam/ddos_attacks/syn_flood.csv": ("scan", 5),
    }, sample_lines)
    # Execute
    devices = read_nbaiot(root)
    # Assert
    assert list(devices["Cam"].attacks) == ["ddos.syn_flood"]
    assert devices["Cam"].attacks["ddos.syn_flood"].shape == (5, 115)


def test_header_mismatch_names_the_first_wrong_column(
    tmp_path: Path, sample_lines: dict[str, list[str]]
) -> None:
    # Prepare
    lines = list(sample_lines["scan"][:20])
    lines[0] = lines[0].replace("H_L5_mean", "H_L5_avg")
    path = _write(tmp_path / "scan.csv", lines)
    # Execute
    with pytest.raises(DataError, match="expected column 'H_L5_mean', found 'H_L5_avg'") as info:
        read_nbaiot_csv(path)
    # Assert
    assert (info.value.path, info.value.line, info.value.column) == (str(path), 1, 17)


def test_header_with_an_extra_label_column(tmp_path: Path, sample_lines: dict[str, list[str]]) -> None:
    # Prepare
    lines = [line + ",0" for line in sample_lines["scan"][:5]]
    lines[0] = sample_lines["scan"][0] + ",label"
    path = _write(tmp_path / "scan.csv", lines)
    # Execute / Assert
    with pytest.raises(DataError, match="expected 115 columns, found 116"):
        read_nbaiot_csv(path)


def test_non_numeric_value_names_line_and_column(tmp_path: Path, sample_lines: dict[str, list[str]]) -> None:
    # Prepare
    lines = list(sample_lines["scan"][:20])
    fields = lines[3].split(",")
    fields[1] = "oops"
    lines[3] = ",".join(fields)
    path = _write(tmp_path / "scan.csv.gz", lines)
    # Execute
    with pytest.raises(DataError, match="expected a finite number, found 'oops'") as info:
        read_nbaiot_csv(path)
    # Assert
    assert (info.value.line, info.value.column) == (4, "MI_dir_L5_mean")


def test_row_with_an_extra_field_after_the_header(tmp_path: Path, sample_lines: dict[str, list[str]]) -> None:
    # Prepare
    lines = list(sample_lines["scan"][:10])
    lines[3] += ",1"  # file line 4
    path = _write(tmp_path / "scan.csv", lines)
    # Execute
    with pytest.raises(DataError, match="expected 115 comma-separated fields, found 116") as info:
        read_nbaiot_csv(path)
    # Assert
    assert info.value.line == 4


def test_empty_device_is_an_error(tmp_path: Path, sample_lines: dict[str, list[str]]) -> None:
    # Prepare
    root = _build(tmp_path, {"Cam/benign_traffic.csv": ("benign_traffic", 0)}, sample_lines)
    # Execute / Assert
    with pytest.raises(DataError, match="no data rows") as info:
        read_nbaiot(root)
    assert info.value.path is not None
    assert info.value.path.endswith("benign_traffic.csv")


def test_device_without_benign_file(tmp_path: Path, sample_lines: dict[str, list[str]]) -> None:
    # Prepare
    root = _build(tmp_path, {"Cam/mirai_attacks/udp.csv": ("scan", 3)}, sample_lines)
    # Execute / Assert
    with pytest.raises(DataError, match="'Cam' has attack files but no benign file"):
        read_nbaiot(root)


def test_both_layouts_in_one_folder(tmp_path: Path, sample_lines: dict[str, list[str]]) -> None:
    # Prepare
    root = _build(tmp_path, {"Cam/benign_traffic.csv": ("benign_traffic", 3), "1.benign.csv": ("scan", 3)},
                  sample_lines)
    # Execute / Assert
    with pytest.raises(DataError, match="both the UCI"):
        find_nbaiot_files(root)


def test_csv_and_csv_gz_of_the_same_file(tmp_path: Path, sample_lines: dict[str, list[str]]) -> None:
    # Prepare
    root = _build(tmp_path, {"2.benign.csv": ("benign_traffic", 3), "2.benign.csv.gz": ("benign_traffic", 3)},
                  sample_lines)
    # Execute / Assert
    with pytest.raises(DataError, match="two files for device 'Ecobee_Thermostat'"):
        find_nbaiot_files(root)


def test_unknown_kaggle_device_id(tmp_path: Path, sample_lines: dict[str, list[str]]) -> None:
    # Prepare
    root = _build(tmp_path, {"12.benign.csv": ("benign_traffic", 3)}, sample_lines)
    # Execute / Assert
    with pytest.raises(DataError, match="unknown device id 12"):
        find_nbaiot_files(root)


def test_folder_without_nbaiot_files(tmp_path: Path) -> None:
    # Prepare
    (tmp_path / "notes.txt").write_text("hello")
    # Execute / Assert
    with pytest.raises(DataError, match="no N-BaIoT files"):
        read_nbaiot(tmp_path)
    with pytest.raises(DataError, match="folder not found"):
        read_nbaiot(tmp_path / "missing")
