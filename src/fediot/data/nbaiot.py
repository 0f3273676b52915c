"""Reader for N-BaIoT (Meidan et al. 2018) in its UCI per-device layout and its Kaggle flat layout.

UCI layout (also what fediot's gateway dataset builder writes)::

    <root>/<Device_Name>/benign_traffic.csv
    <root>/<Device_Name>/<family>_attacks/<attack>.csv      e.g. gafgyt_attacks/scan.csv -> "gafgyt.scan"

Kaggle flat layout (device ids 1-9 named by the shipped ``device_info.csv``)::

    <root>/<id>.benign.csv
    <root>/<id>.<family>.<attack>.csv                       e.g. 1.mirai.udp.csv -> "mirai.udp"

Any file may be gzipped (``.csv.gz``). Other files (``features.csv``, ``manifest.json``, ``*.rar``, ...)
are ignored. Every CSV must start with the 115 feature names of ``features.csv`` in order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from fediot.data.paths import shipped_file
from fediot.data.tabular import check_finite_rows, read_csv_strict
from fediot.errors import DataError

__all__ = [
    "NBAIOT_NUM_FEATURES",
    "NBaIoTDevice",
    "find_nbaiot_files",
    "nbaiot_device_names",
    "nbaiot_expected_counts",
    "nbaiot_feature_names",
    "read_nbaiot",
    "read_nbaiot_csv",
]

NBAIOT_NUM_FEATURES = 115
"""Number of N-BaIoT features (Kitsune's damped statistics over 5 time windows)."""

BENIGN = "benign"
_FEATURES = "nbaiot/metadata/features.csv"
_DEVICES = "nbaiot/metadata/device_info.csv"
_SUMMARY = "nbaiot/metadata/data_summary.csv"
_UCI_BENIGN = "benign_traffic"
_KAGGLE_RE = re.compile(r"^(\d+)\.([A-Za-z0-9_]+)(?:\.([A-Za-z0-9_]+))?\.csv(?:\.gz)?$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass(frozen=True, slots=True)
class NBaIoTDevice:
    """All rows of one device.

    Its ``name`` (e.g. ``"Danmini_Doorbell"``), its ``benign`` rows in file (time) order, float32 of shape
    (n_benign, 115), and ``attacks``, the rows of each attack, float32 of shape (n_attack, 115), keyed
    ``"<family>.<attack>"`` (e.g. ``"mirai.udp"``), keys sorted.
    """

    name: str
    benign: NDArray[np.float32]
    attacks: dict[str, NDArray[np.float32]] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        """Benign plus attack rows."""
        return int(self.benign.shape[0] + sum(a.shape[0] for a in self.attacks.values()))


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError("file not found", path=path)
    return path.read_text(encoding="utf-8").splitlines()


def nbaiot_feature_names(path: str | Path | None = None) -> tuple[str, ...]:
    """Return the 115 feature names in CSV column order, from ``features.csv`` (default: the shipped one).

    Raises
    ------
    DataError
        If the file does not hold 115 ``name,description`` rows after its header.
    """
    file = shipped_file(_FEATURES) if path is None else Path(path)
    lines = [line for line in _read_lines(file) if line.strip()]
    names = tuple(line.split(",", 1)[0].strip() for line in lines[1:])
    if len(names) != NBAIOT_NUM_FEATURES or len(set(names)) != len(names):
        raise DataError(
            f"expected {NBAIOT_NUM_FEATURES} distinct feature names, found {len(names)}", path=file
        )
    return names


def nbaiot_device_names() -> dict[int, str]:
    """Return the device id (1-9, Kaggle file prefix) -> device name map of ``device_info.csv``."""
    file = shipped_file(_DEVICES)
    out: dict[int, str] = {}
    for number, line in enumerate(_read_lines(file)[1:], start=2):
        if not line.strip():
            continue
        ident, sep, name = line.partition(",")
        if not sep or not ident.strip().isdigit() or not _NAME_RE.match(name.strip()):
            raise DataError(f"expected 'id,Device_Name', found {line!r}", path=file, line=number)
        out[int(ident)] = name.strip()
    return out


def nbaiot_expected_counts() -> dict[str, int]:
    """Return the data-row count of each of the 89 full N-BaIoT files, keyed by Kaggle file name.

    From the shipped ``data_summary.csv`` (e.g. ``{"1.benign.csv": 49548, ...}``; 7,062,606 rows in all).
    """
    file = shipped_file(_SUMMARY)
    out: dict[str, int] = {}
    for number, line in enumerate(_read_lines(file)[1:], start=2):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 3 or not fields[1].isdigit() or _KAGGLE_RE.match(fields[0]) is None:
            raise DataError(
                f"expected 'id.family.attack.csv,rows,115', found {line!r}", path=file, line=number
            )
        out[fields[0]] = int(fields[1])
    return out


def read_nbaiot_csv(path: str | Path, *, feature_names: tuple[str, ...] | None = None) -> NDArray[np.float32]:
    """Read one N-BaIoT CSV (header of the 115 feature names, then one row per packet).

    Parameters
    ----------
    path : str or Path
        ``.csv`` or ``.csv.gz`` file.
    feature_names : tuple of str, optional
        Expected header (default :func:`nbaiot_feature_names`).

    Returns
    -------
    ndarray of shape (n_rows, 115), float32
        Rows in file order.

    Raises
    ------
    DataError
        Missing file, a header that differs from ``features.csv`` (names the first mismatching column),
        no data rows, a row with more or fewer fields than the header (a leading or trailing extra field is
        never taken as an index or dropped), or a non-numeric / non-finite value, also one beyond float32's
        range (names line and column).
    """
    names = nbaiot_feature_names() if feature_names is None else feature_names
    frame = read_csv_strict(Path(path), names=names, header=names)
    with np.errstate(over="ignore"):  # beyond float32's range: inf, refused just below
        x = frame.to_numpy(dtype=np.float32)
    check_finite_rows(x, names, path=path, first_line=2)  # a float64 beyond float32's range is inf here
    return x


def _strip_csv(name: str) -> str | None:
    for suffix in (".csv.gz", ".csv"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _add(found: dict[str, dict[str, Path]], device: str, key: str, path: Path) -> None:
    files = found.setdefault(device, {})
    if key in files:
        raise DataError(f"two files for device {device!r}, {key!r}: {files[key].name} and {path.name}",
                        path=path)
    files[key] = path


def _find_uci(root: Path) -> dict[str, dict[str, Path]]:
    found: dict[str, dict[str, Path]] = {}
    for device_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        device = device_dir.name
        for entry in sorted(device_dir.iterdir()):
            stem = _strip_csv(entry.name)
            if entry.is_file() and stem == _UCI_BENIGN:
                _add(found, device, BENIGN, entry)
            elif entry.is_dir() and entry.name.endswith("_attacks"):
                family = entry.name[: -len("_attacks")]
                for attack_file in sorted(entry.iterdir()):
                    attack = _strip_csv(attack_file.name)
                    if attack_file.is_file() and attack is not None:
                        _add(found, device, f"{family}.{attack}", attack_file)
    return found


def _find_kaggle(root: Path) -> dict[str, dict[str, Path]]:
    devices: dict[int, str] | None = None
    found: dict[str, dict[str, Path]] = {}
    for entry in sorted(p for p in root.iterdir() if p.is_file()):
        match = _KAGGLE_RE.match(entry.name)
        if match is None:
            continue
        ident, family, attack = int(match[1]), match[2], match[3]
        if (attack is None) != (family == BENIGN):
            raise DataError("expected '<id>.benign.csv' or '<id>.<family>.<attack>.csv'", path=entry)
        if devices is None:
            devices = nbaiot_device_names()
        if ident not in devices:
            known = sorted(devices)
            raise DataError(f"unknown device id {ident} (device_info.csv knows {known})", path=entry)
        _add(found, devices[ident], BENIGN if attack is None else f"{family}.{attack}", entry)
    return found


def find_nbaiot_files(root: str | Path) -> dict[str, dict[str, Path]]:
    """Find the N-BaIoT CSVs under ``root`` in either layout.

    Returns
    -------
    dict of str to dict of str to Path
        ``{device name: {"benign" or "<family>.<attack>": path}}``, devices and keys sorted.

    Raises
    ------
    DataError
        If ``root`` is not a folder, holds both layouts or none, a device has no benign file, or a file
        name is ambiguous (e.g. both ``x.csv`` and ``x.csv.gz``).
    """
    folder = Path(root)
    if not folder.is_dir():
        raise DataError("N-BaIoT folder not found", path=folder)
    uci, kaggle = _find_uci(folder), _find_kaggle(folder)
    if uci and kaggle:
        raise DataError("holds both the UCI (per-device folders) and the Kaggle (flat) layout", path=folder)
    found = uci or kaggle
    if not found:
        raise DataError(
            "no N-BaIoT files: expected <Device>/benign_traffic.csv (UCI) or <id>.benign.csv (Kaggle)",
            path=folder,
        )
    for device, files in found.items():
        if BENIGN not in files:
            raise DataError(f"device {device!r} has attack files but no benign file", path=folder / device)
    return {device: dict(sorted(found[device].items())) for device in sorted(found)}


def read_nbaiot(root: str | Path) -> dict[str, NBaIoTDevice]:
    """Read every device of an N-BaIoT folder (UCI or Kaggle layout, ``.csv`` or ``.csv.gz``).

    Parameters
    ----------
    root : str or Path
        The folder (see the module docstring for the layouts).

    Returns
    -------
    dict of str to NBaIoTDevice
        Devices by name, sorted by name; each with its benign rows (n_benign, 115) in file order and its
        attack rows by ``"<family>.<attack>"``. Devices without Mirai files simply have no ``mirai.*`` keys.

    Raises
    ------
    DataError
        See :func:`find_nbaiot_files` and :func:`read_nbaiot_csv`; a device whose benign file has no rows.
    """
    names = nbaiot_feature_names()
    devices: dict[str, NBaIoTDevice] = {}
    for device, files in find_nbaiot_files(root).items():
        arrays = {key: read_nbaiot_csv(path, feature_names=names) for key, path in files.items()}
        benign = arrays.pop(BENIGN)
        devices[device] = NBaIoTDevice(device, benign, arrays)
    return devices
