"""The catalog of named datasets (``fediot data list/info``) and the check of every shipped file.

Row, feature and label counts are recorded here so that listing is instant; a unit test reads every
dataset and checks these numbers against the real files.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from fediot.data.kdd import KDD99_FILES, NSLKDD_FILES, read_kdd99, read_nslkdd
from fediot.data.nbaiot import read_nbaiot_csv
from fediot.data.paths import data_root, sha256_file, shipped_file
from fediot.errors import DataError

__all__ = ["DATASETS", "NBAIOT_SAMPLES", "DatasetInfo", "FileCheck", "check_shipped_files", "get_dataset"]

NBAIOT_SAMPLES = (
    "nbaiot/samples/benign_traffic.csv.gz",
    "nbaiot/samples/doorbell_udp.csv.gz",
    "nbaiot/samples/scan.csv.gz",
    "nbaiot/samples/thermostat_udp.csv.gz",
)
"""The four real N-BaIoT sample files (first 299 rows of four UCI CSVs)."""


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """A named, shipped dataset.

    Attributes
    ----------
    name : str
        Name used on the command line (e.g. ``"kdd99-corrected"``).
    description : str
        One line.
    files : tuple of str
        Its shipped files, relative to the data folder.
    num_rows, num_features, num_labels : int
        Recorded counts (checked against the files by the tests).
    read_labels : callable
        Reads the files and returns the label of every row, shape (num_rows,).
    """

    name: str
    description: str
    files: tuple[str, ...]
    num_rows: int
    num_features: int
    num_labels: int
    read_labels: Callable[[], NDArray[np.str_]]


def _nbaiot_sample_labels() -> NDArray[np.str_]:
    parts = []
    for rel in NBAIOT_SAMPLES:
        rows = read_nbaiot_csv(shipped_file(rel)).shape[0]
        parts.append(np.full(rows, Path(rel).name.removesuffix(".csv.gz")))
    return np.concatenate(parts)


DATASETS: tuple[DatasetInfo, ...] = (
    DatasetInfo("kdd99", "KDD Cup 1999, 10% training set", (KDD99_FILES["10_percent"],),
                494_021, 41, 23, lambda: read_kdd99("10_percent").labels),
    DatasetInfo("kdd99-corrected", "KDD Cup 1999, labelled test set (17 test-only attacks)",
                (KDD99_FILES["corrected"],), 311_029, 41, 38, lambda: read_kdd99("corrected").labels),
    DatasetInfo("nsl-kdd-train20", "NSL-KDD KDDTrain+_20Percent", (NSLKDD_FILES["KDDTrain+_20Percent"],),
                25_192, 41, 22, lambda: read_nslkdd("KDDTrain+_20Percent").labels),
    DatasetInfo("nsl-kdd-test+", "NSL-KDD KDDTest+", (NSLKDD_FILES["KDDTest+"],),
                22_544, 41, 38, lambda: read_nslkdd("KDDTest+").labels),
    DatasetInfo("nsl-kdd-test-21", "NSL-KDD KDDTest-21 (rows fewer than 21 learners got right)",
                (NSLKDD_FILES["KDDTest-21"],), 11_850, 41, 38, lambda: read_nslkdd("KDDTest-21").labels),
    DatasetInfo("nbaiot-samples", "N-BaIoT, first 299 real rows of 4 files (labels = file names)",
                NBAIOT_SAMPLES, 1_196, 115, 4, _nbaiot_sample_labels),
)
"""Every named dataset, in display order."""


def get_dataset(name: str) -> DatasetInfo:
    """Return the catalog entry called ``name``.

    Raises
    ------
    DataError
        If there is none (the message lists the known names).
    """
    for info in DATASETS:
        if info.name == name:
            return info
    raise DataError(f"unknown dataset {name!r}; known: {', '.join(d.name for d in DATASETS)}")


@dataclass(frozen=True, slots=True)
class FileCheck:
    """Result of checking one file listed in ``SHA256SUMS``."""

    name: str
    status: Literal["ok", "missing", "mismatch"]
    expected: str
    actual: str | None


def check_shipped_files(root: Path | None = None, *, only: Collection[str] | None = None) -> list[FileCheck]:
    """Hash every file listed in ``<root>/SHA256SUMS`` (default :func:`data_root`) and compare.

    Parameters
    ----------
    root : Path, optional
        The data folder.
    only : collection of str, optional
        Check only these listed files (paths relative to ``root``).

    Returns
    -------
    list of FileCheck
        One per listed (and selected) file, in listing order.
    """
    folder = data_root() if root is None else root
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        raise DataError("file not found", path=sums)
    out: list[FileCheck] = []
    for number, line in enumerate(sums.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(maxsplit=1)
        if len(fields) != 2:
            raise DataError(f"expected '<sha256>  <path>', found {line!r}", path=sums, line=number)
        digest, name = fields[0], fields[1].strip()
        if only is not None and name not in only:
            continue
        path = folder / name
        if not path.is_file():
            out.append(FileCheck(name, "missing", digest, None))
            continue
        actual = sha256_file(path)
        out.append(FileCheck(name, "ok" if actual == digest else "mismatch", digest, actual))
    return out
