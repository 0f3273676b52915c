"""Readers for KDD Cup 1999 (10% and ``corrected``) and NSL-KDD, and the KDD attack-category map.

Both datasets share the 41 features of ``kddcup.names``. Rows are returned as a :class:`TabularData` whose
``x`` holds all 41 columns as float32: continuous and 0/1 symbolic columns (``land``, ``logged_in``,
``is_host_login``, ``is_guest_login``) keep their values; the three string-valued symbolic columns
(``protocol_type``, ``service``, ``flag``) hold codes into fixed vocabularies (:data:`KDD_CATEGORIES`), so a
code means the same value in every file. :func:`kdd_continuous_features` keeps the 34 continuous columns.

A label is *known* if it is ``normal`` or has an attack category in the UCI ``training_attack_types`` or,
for attacks that only occur in the test sets (``apache2``, ``mailbomb``, ...), in the shipped third-party
extended map. Any other label is rejected as malformed input.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from fediot.data.paths import data_root, shipped_file
from fediot.data.tabular import TabularData, check_finite_rows, read_csv_strict
from fediot.errors import DataError

__all__ = [
    "KDD99_FILES",
    "KDD_ATTACK_CATEGORIES",
    "KDD_CATEGORIES",
    "NSLKDD_FILES",
    "KddNames",
    "kdd_attack_categories",
    "kdd_attack_category",
    "kdd_continuous_features",
    "read_kdd99",
    "read_kdd_attack_types",
    "read_kdd_names",
    "read_nslkdd",
]

KDD99_FILES: dict[str, str] = {
    "10_percent": "kddcup99/kddcup.data_10_percent.gz",
    "corrected": "kddcup99/corrected.gz",
}
"""Shipped KDD Cup 99 files by short name (relative to the data folder)."""

NSLKDD_FILES: dict[str, str] = {
    "KDDTrain+_20Percent": "nsl_kdd/KDDTrain+_20Percent.txt.gz",
    "KDDTest+": "nsl_kdd/KDDTest+.txt.gz",
    "KDDTest-21": "nsl_kdd/KDDTest-21.txt.gz",
}
"""Shipped NSL-KDD files by their original name (relative to the data folder)."""

KDD_ATTACK_CATEGORIES = ("normal", "dos", "probe", "r2l", "u2r")
"""The five KDD classes an attack label maps to (``normal`` included)."""

KDD_CATEGORIES: dict[str, tuple[str, ...]] = {
    "protocol_type": ("icmp", "tcp", "udp"),
    "service": (
        "IRC", "X11", "Z39_50", "aol", "auth", "bgp", "courier", "csnet_ns", "ctf", "daytime", "discard",
        "domain", "domain_u", "echo", "eco_i", "ecr_i", "efs", "exec", "finger", "ftp", "ftp_data", "gopher",
        "harvest", "hostnames", "http", "http_2784", "http_443", "http_8001", "icmp", "imap4", "iso_tsap",
        "klogin", "kshell", "ldap", "link", "login", "mtp", "name", "netbios_dgm", "netbios_ns",
        "netbios_ssn", "netstat", "nnsp", "nntp", "ntp_u", "other", "pm_dump", "pop_2", "pop_3", "printer",
        "private", "red_i", "remote_job", "rje", "shell", "smtp", "sql_net", "ssh", "sunrpc", "supdup",
        "systat", "telnet", "tftp_u", "tim_i", "time", "urh_i", "urp_i", "uucp", "uucp_path", "vmnet",
        "whois",
    ),
    "flag": ("OTH", "REJ", "RSTO", "RSTOS0", "RSTR", "S0", "S1", "S2", "S3", "SF", "SH"),
}
"""Vocabulary of each string-valued symbolic column: every value in the shipped files plus ``aol``,
``harvest`` and ``http_2784`` (only in the full training files); ``x`` holds the index into it."""

_SYMBOLIC_STRINGS = tuple(KDD_CATEGORIES)
_NAMES = "kddcup99/kddcup.names"
_UCI_TYPES = "kddcup99/training_attack_types"
_EXTENDED_TYPES = "kddcup99/attack_types_extended_thirdparty.txt"


@dataclass(frozen=True, slots=True)
class KddNames:
    """Contents of ``kddcup.names``.

    Attributes
    ----------
    feature_names : tuple of str, length 41
        Feature names in column order.
    continuous : tuple of bool, length 41
        True for ``continuous`` features, False for ``symbolic`` ones (34 and 7).
    classes : tuple of str
        The class list of the first line (the 23 training labels, without periods).
    """

    feature_names: tuple[str, ...]
    continuous: tuple[bool, ...]
    classes: tuple[str, ...]


def read_kdd_names(path: str | Path | None = None) -> KddNames:
    """Read a UCI ``kddcup.names`` file (default: the shipped one).

    Raises
    ------
    DataError
        If a line is not ``name: continuous.`` / ``name: symbolic.`` or the class line is malformed.
    """
    file = shipped_file(_NAMES) if path is None else Path(path)
    if not file.is_file():
        raise DataError("file not found", path=file)
    lines = file.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].rstrip().endswith("."):
        raise DataError("expected the class list ending with '.' on the first line", path=file, line=1)
    classes = tuple(c.strip() for c in lines[0].rstrip().rstrip(".").split(","))
    names: list[str] = []
    continuous: list[bool] = []
    for number, text in enumerate(lines[1:], start=2):
        if not text.strip():
            continue
        name, sep, kind = text.partition(":")
        kind = kind.strip()
        if not sep or kind not in ("continuous.", "symbolic."):
            raise DataError(f"expected 'name: continuous.' or 'name: symbolic.', found {text!r}",
                            path=file, line=number)
        names.append(name.strip())
        continuous.append(kind == "continuous.")
    return KddNames(tuple(names), tuple(continuous), classes)


def read_kdd_attack_types(path: str | Path) -> dict[str, str]:
    """Read an ``attack category`` file (one ``label category`` pair a line; blank lines skipped).

    Raises
    ------
    DataError
        If a line has not two fields or its category is not dos, probe, r2l or u2r.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError("file not found", path=file)
    out: dict[str, str] = {}
    for number, text in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in KDD_ATTACK_CATEGORIES[1:]:
            raise DataError(f"expected 'attack dos|probe|r2l|u2r', found {text!r}", path=file, line=number)
        out[fields[0]] = fields[1]
    return out


@lru_cache(maxsize=4)
def _category_map(root: Path) -> dict[str, str]:
    del root  # the cache key: one map per data folder
    mapping = {"normal": "normal"}
    mapping.update(read_kdd_attack_types(shipped_file(_EXTENDED_TYPES)))
    mapping.update(read_kdd_attack_types(shipped_file(_UCI_TYPES)))  # the UCI file wins on conflicts
    return mapping


def kdd_attack_categories() -> dict[str, str]:
    """Return the label -> category map (``normal`` and every known attack; labels without periods)."""
    return dict(_category_map(data_root()))


def kdd_attack_category(label: str) -> str:
    """Return the category of a KDD label: ``"normal"``, ``"dos"``, ``"probe"``, ``"r2l"`` or ``"u2r"``.

    A trailing period (KDD Cup 99 spelling) is ignored.

    Raises
    ------
    DataError
        If the label is not known.

    Examples
    --------
    >>> kdd_attack_category("smurf.")
    'dos'
    >>> kdd_attack_category("snmpgetattack")
    'r2l'
    """
    mapping = _category_map(data_root())
    key = label[:-1] if label.endswith(".") else label
    try:
        return mapping[key]
    except KeyError:
        raise DataError(f"unknown KDD label {label!r}") from None


def _resolve(source: str | Path | None, files: dict[str, str], default: str) -> Path:
    if source is None:
        source = default
    if isinstance(source, str) and source in files:
        return shipped_file(files[source])
    return Path(source)


def _to_table(frame: pd.DataFrame, path: Path, names: KddNames, labels: pd.Series[str], offset: int,
              difficulty: NDArray[np.int64] | None) -> TabularData:
    known = set(_category_map(data_root()))
    unknown = ~labels.isin(known).to_numpy()
    if unknown.any():
        row = int(np.argmax(unknown))
        raise DataError(
            f"unknown label {labels.iloc[row]!r} (not normal and not in the attack-category maps)",
            path=path, line=row + offset, column="label",
        )
    for column, vocabulary in KDD_CATEGORIES.items():
        codes = pd.Index(vocabulary).get_indexer(pd.Index(frame[column]))
        if (codes < 0).any():
            row = int(np.argmax(codes < 0))
            raise DataError(
                f"unknown {column} value {frame[column].iloc[row]!r} (not in KDD_CATEGORIES)",
                path=path, line=row + offset, column=column,
            )
        frame[column] = codes
    with np.errstate(over="ignore"):  # beyond float32's range: inf, refused just below
        x = frame[list(names.feature_names)].to_numpy(dtype=np.float32)
    check_finite_rows(x, names.feature_names, path=path, first_line=offset)  # beyond float32's range
    return TabularData(
        x=x,
        labels=labels.to_numpy(dtype=str),
        feature_names=names.feature_names,
        continuous=names.continuous,
        categories=dict(KDD_CATEGORIES),
        difficulty=difficulty,
        source=str(path),
    )


def read_kdd99(source: str | Path | None = None, *, nrows: int | None = None) -> TabularData:
    """Read a KDD Cup 1999 file: 41 features and a label ending in ``.``, one row per connection.

    Parameters
    ----------
    source : str or Path, optional
        ``"10_percent"`` (default) or ``"corrected"`` for the shipped, checksum-verified files, or the path
        of any file in the same format (gzipped if its name ends in ``.gz``).
    nrows : int, optional
        Read only the first ``nrows`` rows.

    Returns
    -------
    TabularData
        ``x`` of shape (n_rows, 41) (string columns as codes into :data:`KDD_CATEGORIES`), ``labels`` of
        shape (n_rows,) without the trailing period.

    Raises
    ------
    DataError
        Missing or damaged file, a row without 42 fields, a non-numeric or non-finite feature, a label
        without its period, an unknown label or symbolic value; names the file, line and column.
    """
    path = _resolve(source, KDD99_FILES, "10_percent")
    names = read_kdd_names()
    columns = [*names.feature_names, "label"]
    frame = read_csv_strict(path, names=columns, strings=[*_SYMBOLIC_STRINGS, "label"], nrows=nrows)
    raw = frame["label"]
    no_period = ~raw.str.endswith(".").to_numpy(dtype=bool)
    if no_period.any():
        row = int(np.argmax(no_period))
        raise DataError(f"expected a label ending in '.', found {raw.iloc[row]!r}",
                        path=path, line=row + 1, column="label")
    return _to_table(frame, path, names, raw.str.slice(0, -1), 1, None)


def read_nslkdd(source: str | Path, *, nrows: int | None = None) -> TabularData:
    """Read an NSL-KDD file: 41 features, the label (no period) and the difficulty level.

    Parameters
    ----------
    source : str or Path
        ``"KDDTrain+_20Percent"``, ``"KDDTest+"`` or ``"KDDTest-21"`` for the shipped files, or a path.
    nrows : int, optional
        Read only the first ``nrows`` rows.

    Returns
    -------
    TabularData
        ``x`` of shape (n_rows, 41), ``labels`` and ``difficulty`` of shape (n_rows,).

    Raises
    ------
    DataError
        As :func:`read_kdd99`, for rows of 43 fields (a non-integer difficulty is an error too).
    """
    path = _resolve(source, NSLKDD_FILES, "KDDTrain+_20Percent")
    names = read_kdd_names()
    columns = [*names.feature_names, "label", "difficulty"]
    frame = read_csv_strict(path, names=columns, strings=[*_SYMBOLIC_STRINGS, "label"], nrows=nrows)
    difficulty = frame["difficulty"].to_numpy(dtype=np.float64)
    fractional = difficulty != np.round(difficulty)
    if fractional.any():
        row = int(np.argmax(fractional))
        raise DataError(f"expected an integer difficulty, found {difficulty[row]!r}",
                        path=path, line=row + 1, column="difficulty")
    return _to_table(frame, path, names, frame["label"], 1, difficulty.astype(np.int64))


def kdd_continuous_features(data: TabularData) -> TabularData:
    """Keep only the continuous columns (34 for KDD) of a table; labels and the rest are unchanged.

    Parameters
    ----------
    data : TabularData
        ``x`` of shape (n_rows, n_features).

    Returns
    -------
    TabularData
        ``x`` of shape (n_rows, n_continuous), ``categories`` empty.
    """
    keep = [i for i, cont in enumerate(data.continuous) if cont]
    return dataclasses.replace(
        data,
        x=np.ascontiguousarray(data.x[:, keep]),
        feature_names=tuple(data.feature_names[i] for i in keep),
        continuous=(True,) * len(keep),
        categories={},
    )
