"""Tests of the dataset catalog (its recorded counts against the real files) and of the sha256 check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fediot.data.catalog import DATASETS, check_shipped_files, get_dataset
from fediot.data.tabular import TabularData
from fediot.errors import DataError


def _labels_of(name: str, kdd10: TabularData, kdd_corrected: TabularData,
               nsl_tables: dict[str, TabularData]) -> np.ndarray:
    # The big files come from the session fixtures (read once); the small ones through the catalog itself.
    big = {"kdd99": kdd10.labels, "kdd99-corrected": kdd_corrected.labels}
    return big[name] if name in big else get_dataset(name).read_labels()


@pytest.mark.parametrize("name", [d.name for d in DATASETS])
def test_recorded_counts_match_the_real_files(
    name: str, kdd10: TabularData, kdd_corrected: TabularData, nsl_tables: dict[str, TabularData]
) -> None:
    # Prepare
    info = get_dataset(name)
    # Execute
    labels = _labels_of(name, kdd10, kdd_corrected, nsl_tables)
    # Assert
    assert labels.shape == (info.num_rows,)
    assert np.unique(labels).size == info.num_labels


def test_recorded_feature_counts() -> None:
    # Execute
    features = {d.name: d.num_features for d in DATASETS}
    # Assert
    assert features["kdd99"] == features["nsl-kdd-test+"] == 41
    assert features["nbaiot-samples"] == 115


def test_every_catalog_file_is_listed_in_sha256sums() -> None:
    # Prepare
    listed = {c.name for c in check_shipped_files()}
    # Execute
    files = {f for d in DATASETS for f in d.files}
    # Assert
    assert files <= listed


def test_shipped_files_all_verify() -> None:
    # Execute
    checks = check_shipped_files()
    # Assert
    assert len(checks) == 46  # 22 + data/lab (23 captures + MANIFEST.json)
    assert {c.status for c in checks} == {"ok"}


def test_mismatch_and_missing_files_are_reported(tmp_path: Path) -> None:
    # Prepare
    (tmp_path / "a.txt").write_text("a\n")
    (tmp_path / "b.txt").write_text("tampered\n")
    good_a = "87428fc522803d31065e7bce3cf03fe475096631e5e07bbd7a0fde60c4cf25c7"  # sha256 of "a\n"
    (tmp_path / "SHA256SUMS").write_text(f"{good_a}  a.txt\n{good_a}  b.txt\n{good_a}  c.txt\n")
    # Execute
    checks = check_shipped_files(tmp_path)
    # Assert
    statuses = [(c.name, c.status) for c in checks]
    assert statuses == [("a.txt", "ok"), ("b.txt", "mismatch"), ("c.txt", "missing")]


def test_unknown_dataset_lists_the_known_names() -> None:
    # Execute / Assert
    with pytest.raises(DataError, match="unknown dataset 'kdd2000'; known: kdd99, kdd99-corrected"):
        get_dataset("kdd2000")
