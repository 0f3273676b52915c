"""Dataset readers (I/O at the edge), the dataset catalog, partitioners and the N-BaIoT downloader.

Names are imported on first use (PEP 562): importing one submodule (``fediot.data.scaling``, what a
gateway's ClientApp needs) does not pay for pandas and the dataset readers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fediot.data.catalog import DATASETS, DatasetInfo, FileCheck, check_shipped_files, get_dataset
    from fediot.data.download import NBAIOT_BASE_URL, DownloadEvent, download_nbaiot, verify_nbaiot_file
    from fediot.data.kdd import (
        KDD99_FILES,
        KDD_ATTACK_CATEGORIES,
        KDD_CATEGORIES,
        NSLKDD_FILES,
        KddNames,
        kdd_attack_categories,
        kdd_attack_category,
        kdd_continuous_features,
        read_kdd99,
        read_kdd_attack_types,
        read_kdd_names,
        read_nslkdd,
    )
    from fediot.data.nbaiot import (
        NBAIOT_NUM_FEATURES,
        NBaIoTDevice,
        find_nbaiot_files,
        nbaiot_device_names,
        nbaiot_expected_counts,
        nbaiot_feature_names,
        read_nbaiot,
        read_nbaiot_csv,
    )
    from fediot.data.partition import (
        partition_by_group,
        partition_contiguous,
        partition_dirichlet,
        partition_iid,
    )
    from fediot.data.paths import data_root, sha256_file, shipped_file, verify_shipped
    from fediot.data.tabular import TabularData, read_csv_strict

_LAZY: dict[str, str] = {
    "DATASETS": "catalog",
    "DatasetInfo": "catalog",
    "DownloadEvent": "download",
    "FileCheck": "catalog",
    "KDD99_FILES": "kdd",
    "KDD_ATTACK_CATEGORIES": "kdd",
    "KDD_CATEGORIES": "kdd",
    "KddNames": "kdd",
    "NBAIOT_BASE_URL": "download",
    "NBAIOT_NUM_FEATURES": "nbaiot",
    "NBaIoTDevice": "nbaiot",
    "NSLKDD_FILES": "kdd",
    "TabularData": "tabular",
    "check_shipped_files": "catalog",
    "data_root": "paths",
    "download_nbaiot": "download",
    "find_nbaiot_files": "nbaiot",
    "get_dataset": "catalog",
    "kdd_attack_categories": "kdd",
    "kdd_attack_category": "kdd",
    "kdd_continuous_features": "kdd",
    "nbaiot_device_names": "nbaiot",
    "nbaiot_expected_counts": "nbaiot",
    "nbaiot_feature_names": "nbaiot",
    "partition_by_group": "partition",
    "partition_contiguous": "partition",
    "partition_dirichlet": "partition",
    "partition_iid": "partition",
    "read_csv_strict": "tabular",
    "read_kdd99": "kdd",
    "read_kdd_attack_types": "kdd",
    "read_kdd_names": "kdd",
    "read_nbaiot": "nbaiot",
    "read_nbaiot_csv": "nbaiot",
    "read_nslkdd": "kdd",
    "sha256_file": "paths",
    "shipped_file": "paths",
    "verify_nbaiot_file": "download",
    "verify_shipped": "paths",
}

__all__ = [
    "DATASETS",
    "KDD99_FILES",
    "KDD_ATTACK_CATEGORIES",
    "KDD_CATEGORIES",
    "NBAIOT_BASE_URL",
    "NBAIOT_NUM_FEATURES",
    "NSLKDD_FILES",
    "DatasetInfo",
    "DownloadEvent",
    "FileCheck",
    "KddNames",
    "NBaIoTDevice",
    "TabularData",
    "check_shipped_files",
    "data_root",
    "download_nbaiot",
    "find_nbaiot_files",
    "get_dataset",
    "kdd_attack_categories",
    "kdd_attack_category",
    "kdd_continuous_features",
    "nbaiot_device_names",
    "nbaiot_expected_counts",
    "nbaiot_feature_names",
    "partition_by_group",
    "partition_contiguous",
    "partition_dirichlet",
    "partition_iid",
    "read_csv_strict",
    "read_kdd99",
    "read_kdd_attack_types",
    "read_kdd_names",
    "read_nbaiot",
    "read_nbaiot_csv",
    "read_nslkdd",
    "sha256_file",
    "shipped_file",
    "verify_nbaiot_file",
    "verify_shipped",
]


def __getattr__(name: str) -> Any:
    """Import ``name`` (a re-exported function or constant, or a submodule) on first access."""
    module = _LAZY.get(name)
    if module is None:
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
