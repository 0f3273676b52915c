"""Dataset readers (I/O at the edge), the dataset catalog, partitioners and the N-BaIoT downloader."""

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
