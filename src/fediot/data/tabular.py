"""The labelled table every tabular reader returns, and the strict CSV reading they share."""

from __future__ import annotations

import csv
import gzip
import io
import re
import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from fediot.errors import DataError

__all__ = [
    "TabularData",
    "check_finite_rows",
    "check_header",
    "open_text",
    "read_csv_strict",
    "read_feature_rows",
]


@dataclass(frozen=True, slots=True)
class TabularData:
    """A labelled table: one row per record, numeric features, a string label per row.

    Attributes
    ----------
    x : ndarray of shape (n_samples, n_features), float32
        Feature values in file column order. A symbolic column whose values are strings holds the index of
        each value in ``categories[name]`` (a fixed vocabulary, so codes agree across files).
    labels : ndarray of shape (n_samples,), str
        The label of each row as written in the file, without the KDD Cup 99 trailing period.
    feature_names : tuple of str, length n_features
        Column names.
    continuous : tuple of bool, length n_features
        True for continuous columns, False for symbolic ones.
    categories : mapping of str to tuple of str
        Vocabulary of each string-valued symbolic column (code ``i`` is ``categories[name][i]``).
    difficulty : ndarray of shape (n_samples,), int64, or None
        NSL-KDD's difficulty level (number of its 21 learners that got the row right); None elsewhere.
    source : str
        The file the rows were read from.
    """

    x: NDArray[np.float32]
    labels: NDArray[np.str_]
    feature_names: tuple[str, ...]
    continuous: tuple[bool, ...]
    categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    difficulty: NDArray[np.int64] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        n, f = self.x.shape
        if self.labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {self.labels.shape}")
        if not (len(self.feature_names) == len(self.continuous) == f):
            raise ValueError(f"feature_names and continuous must both have {f} entries")
        if self.difficulty is not None and self.difficulty.shape != (n,):
            raise ValueError(f"difficulty must have shape ({n},), got {self.difficulty.shape}")

    @property
    def num_rows(self) -> int:
        """Number of rows (``n_samples``)."""
        return int(self.x.shape[0])

    @property
    def label_names(self) -> tuple[str, ...]:
        """The distinct labels in sorted order (the classes ``y`` indexes)."""
        return tuple(np.unique(self.labels).tolist())

    @property
    def y(self) -> NDArray[np.int64]:
        """Index of each row's label in :attr:`label_names`, shape (n_samples,)."""
        _, inverse = np.unique(self.labels, return_inverse=True)
        return inverse.astype(np.int64)


def open_text(path: Path) -> io.TextIOBase:
    """Open a text file for reading, gunzipping it when its name ends in ``.gz``."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def _raw_line(path: Path, line: int) -> str | None:
    """Return the text of 1-based ``line`` of the file, or None if the file is shorter."""
    with open_text(path) as fh:
        for number, text in enumerate(fh, start=1):
            if number == line:
                return text.rstrip("\r\n")
    return None


def _count_lines_until_error(path: Path) -> int:
    """Count the complete lines a damaged gzip file yields before it fails."""
    count = 0
    try:
        with open_text(path) as fh:
            for _ in fh:
                count += 1
    except (EOFError, OSError, zlib.error, UnicodeDecodeError):
        pass
    return count


_FIELDS_RE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_EXTRA = "\x00extra field"  # a sentinel column after the expected ones: filled only by rows that are too long
_CHECK_ROWS = 1 << 16  # rows checked at a time (bounds the temporary boolean arrays)


def _first_empty_last_field(path: Path) -> int | None:
    """Return the 1-based line of the first line ending in a comma (an empty extra field), or None.

    Streams the (decompressed) bytes in 4 MiB chunks: pandas fills a missing field and an empty one alike.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    lines = 1
    prev = b""
    try:
        with opener(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                data = prev[-1:] + chunk
                for ending in (b",\n", b",\r\n"):
                    at = data.find(ending)
                    if at >= 0:
                        return lines + data.count(b"\n", 0, at) - prev[-1:].count(b"\n")
                lines += chunk.count(b"\n")
                prev = chunk
    except (EOFError, OSError, zlib.error):
        return None  # damage after the rows read with ``nrows`` (pandas read the rest without error)
    return lines if prev.endswith(b",") else None


def _first_long_line(path: Path, num_fields: int, first: int) -> tuple[int, int]:
    """Return (1-based line, field count) of the first line from ``first`` with more than ``num_fields``."""
    try:
        with open_text(path) as fh:
            for number, text in enumerate(fh, start=1):
                if number >= first:
                    count = text.rstrip("\r\n").count(",") + 1
                    if count > num_fields:
                        return number, count
    except (EOFError, OSError, zlib.error, UnicodeDecodeError):
        pass
    return first, num_fields + 1  # pragma: no cover - pandas saw a long line we cannot find


def read_csv_strict(
    path: Path,
    *,
    names: Sequence[str],
    strings: Sequence[str] = (),
    header: Sequence[str] | None = None,
    nrows: int | None = None,
) -> pd.DataFrame:
    """Read a comma-separated file with a known column layout, rejecting anything malformed.

    Parameters
    ----------
    path : Path
        A ``.csv``/``.txt`` file, or the same gzipped (``.gz``).
    names : sequence of str
        Every column's name, in file order; each row must have exactly this many fields.
    strings : sequence of str
        Columns kept as strings; all others must hold finite numbers.
    header : sequence of str, optional
        If given, the file's first line must be exactly these names (the data starts on line 2).
    nrows : int, optional
        Read only the first ``nrows`` data rows.

    Returns
    -------
    DataFrame of shape (n_rows, len(names))
        Numeric columns as int64 or float64 (all finite), string columns as strings.

    Raises
    ------
    DataError
        Missing file, damaged gzip, wrong header, a row with the wrong number of fields, an empty line, or a
        missing, non-numeric or non-finite value in a numeric column; it names the file, the 1-based line and
        the column.
    """
    if not path.is_file():
        raise DataError("file not found", path=path)
    offset = 1
    if header is not None:
        _check_header(path, list(header))
        offset = 2
    string_set = set(strings)
    try:
        with warnings.catch_warnings():
            # index_col=False: never take a leading field as the row index (that would shift every column);
            # a row one field too long fills the sentinel column, longer rows raise ParserWarning (below)
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                path,
                header=None,
                skiprows=1 if header is not None else 0,
                names=[*names, _EXTRA],
                index_col=False,
                dtype={**dict.fromkeys(strings, str), _EXTRA: str},
                keep_default_na=False,
                na_values=[],
                skip_blank_lines=False,
                quoting=csv.QUOTE_NONE,
                engine="c",
                low_memory=False,
                nrows=nrows,
                compression="gzip" if path.suffix == ".gz" else None,
            )
    except pd.errors.ParserWarning:
        line, found = _first_long_line(path, len(names), offset)
        raise DataError(
            f"expected {len(names)} comma-separated fields, found {found}", path=path, line=line
        ) from None
    except pd.errors.ParserError as exc:
        match = _FIELDS_RE.search(str(exc))
        if match is None:
            raise DataError(f"cannot parse: {exc}", path=path) from None
        _, line, found = (int(g) for g in match.groups())  # pandas' count includes the sentinel column
        raise DataError(
            f"expected {len(names)} comma-separated fields, found {found}",
            path=path,
            line=line,  # pandas counts every physical line, the skipped header included
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError("no data rows (the file is empty or holds only a header)", path=path) from None
    except (EOFError, OSError, zlib.error, UnicodeDecodeError) as exc:
        good = _count_lines_until_error(path)
        raise DataError(
            f"damaged or truncated file after {good} complete lines ({type(exc).__name__}: {exc})",
            path=path,
            line=good + 1,
        ) from None
    if frame.shape[0] == 0:
        raise DataError("no data rows (the file is empty or holds only a header)", path=path)
    extra = (frame.pop(_EXTRA) != "").to_numpy()
    if extra.any():
        row = int(np.argmax(extra))
        raise DataError(
            f"expected {len(names)} comma-separated fields, found {len(names) + 1} (an unlabelled extra "
            "column?)",
            path=path,
            line=row + offset,
        )
    comma_line = _first_empty_last_field(path)
    if comma_line is not None and (nrows is None or comma_line < nrows + offset):
        raise DataError(
            f"expected {len(names)} comma-separated fields, found a trailing comma (an empty extra field)",
            path=path,
            line=comma_line,
        )
    for name in names:
        column = frame[name]
        if name in string_set:
            empty = (column == "").to_numpy()
            if empty.any():
                _raise_bad_row(path, int(np.argmax(empty)) + offset, names, name, "a non-empty string")
            continue
        if pd.api.types.is_integer_dtype(column.dtype):
            continue
        numeric = pd.api.types.is_float_dtype(column.dtype)
        values = (column if numeric else pd.to_numeric(column, errors="coerce")).to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            _raise_bad_row(path, int(np.argmax(bad)) + offset, names, name, "a finite number")
        if not numeric:
            frame[name] = values
    return frame


def _check_header(path: Path, expected: list[str]) -> None:
    try:
        with open_text(path) as fh:
            first = fh.readline().rstrip("\r\n")
    except (EOFError, OSError, zlib.error, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the header ({type(exc).__name__}: {exc})", path=path, line=1) from None
    check_header(first.split(","), expected, path=path)


def check_header(found: Sequence[str], expected: Sequence[str], *, path: Path) -> None:
    """Check a file's header fields against the expected column names.

    Raises
    ------
    DataError
        Naming the first mismatching column (1-based) and what was expected there, or extra columns.
    """
    for i, want in enumerate(expected):
        got = found[i] if i < len(found) else None
        if got != want:
            shown = "nothing (the header is too short)" if got is None else repr(got)
            raise DataError(
                f"header: expected column {want!r}, found {shown}", path=path, line=1, column=i + 1
            )
    if len(found) > len(expected):
        raise DataError(
            f"header: expected {len(expected)} columns, found {len(found)} (extra {found[len(expected)]!r})",
            path=path,
            line=1,
            column=len(expected) + 1,
        )


def _raise_bad_row(path: Path, line: int, names: Sequence[str], column: str, what: str) -> NoReturn:
    text = _raw_line(path, line)
    if not text:
        raise DataError("empty line", path=path, line=line)
    fields = text.split(",")
    if len(fields) != len(names):
        raise DataError(
            f"expected {len(names)} comma-separated fields, found {len(fields)}", path=path, line=line
        )
    value = fields[list(names).index(column)]
    raise DataError(f"expected {what}, found {value!r}", path=path, line=line, column=column)


def check_finite_rows(
    x: NDArray[np.floating[Any]],
    names: Sequence[str],
    *,
    path: str | Path | None = None,
    first_line: int | None = None,
    what: str = "rows",
) -> None:
    """Raise unless every value of ``x`` is finite, naming the first bad row and column.

    Checked ``65,536`` rows at a time (the temporary mask stays small for any table).

    Parameters
    ----------
    x : ndarray of shape (n_rows, n_features)
        Values, e.g. after the cast to float32 (a value beyond float32's range becomes inf there).
    names : sequence of str, length n_features
        Column names for the message.
    path : str or Path, optional
        The file the rows came from.
    first_line : int, optional
        1-based file line of row 0 (CSV: 2 below a header); without it rows are named ``row i`` (0-based).
    what : str
        What the rows are, for the message (e.g. ``"client 'a' x_train"``).

    Raises
    ------
    DataError
        ``"expected a finite number ..., found nan"`` naming the file, line or row, and column.
    """
    if x.ndim != 2 or x.shape[1] != len(names):
        raise DataError(f"{what}: expected shape (n, {len(names)}), found {x.shape}", path=path)
    for start in range(0, x.shape[0], _CHECK_ROWS):
        block = x[start : start + _CHECK_ROWS]
        bad = ~np.isfinite(block)
        if bad.any():
            row, col = (int(v) for v in np.argwhere(bad)[0])
            value = block[row, col]
            row += start
            beyond = np.isinf(value) and x.dtype == np.float32
            hint = " within float32 range (|x| <= 3.4e38)" if beyond else ""
            message = f"expected a finite number{hint}, found {float(value)!r}"
            if first_line is None:
                raise DataError(f"{what}: row {row}: {message}", path=path, column=names[col])
            raise DataError(message, path=path, line=row + first_line, column=names[col])


def read_feature_rows(path: str | Path, feature_names: Sequence[str]) -> NDArray[np.float32]:
    """Read a gateway's feature rows from ``.csv``, ``.csv.gz`` or ``.npy`` under an explicit column contract.

    A CSV must have a header equal to ``feature_names`` (same names, same order, nothing more) and one
    finite number per field; a ``.npy`` must hold a 2-D numeric array with ``len(feature_names)`` columns
    (it has no names to check) and no pickled objects. Nothing is dropped, added, reordered or coerced
    silently: a NaN, inf, empty or non-numeric cell, a missing or extra column or field is an error.

    Parameters
    ----------
    path : str or Path
        The rows file.
    feature_names : sequence of str
        The expected columns, in order (e.g. :func:`fediot.data.nbaiot_feature_names`).

    Returns
    -------
    ndarray of shape (n_rows, len(feature_names)), float32
        Rows in file order (n_rows >= 1), all finite.

    Raises
    ------
    DataError
        Naming the file and, where it applies, the line (CSV) or row (``.npy``) and the column.
    """
    file = Path(path)
    names = list(feature_names)
    if not names or len(set(names)) != len(names):
        raise DataError(f"feature_names must be distinct and non-empty, got {len(names)} names", path=file)
    if file.name.endswith((".csv", ".csv.gz")):
        frame = read_csv_strict(file, names=names, header=names)
        with np.errstate(over="ignore"):  # beyond float32's range: inf, refused just below
            x = frame.to_numpy(dtype=np.float32)
        check_finite_rows(x, names, path=file, first_line=2)
        return x
    if file.suffix != ".npy":
        raise DataError("expected a .csv, .csv.gz or .npy file of feature rows", path=file)
    if not file.is_file():
        raise DataError("file not found", path=file)
    try:
        array = np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"not a readable .npy array without pickled objects ({exc})", path=file) from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        kind = getattr(array, "dtype", type(array))
        raise DataError(f"expected a numeric (float or integer) array, found {kind}", path=file)
    if array.ndim != 2 or array.shape[1] != len(names) or array.shape[0] == 0:
        raise DataError(
            f"expected an array of shape (n_rows >= 1, {len(names)}), found {array.shape}", path=file
        )
    with np.errstate(over="ignore"):
        x = np.ascontiguousarray(array, dtype=np.float32)
    check_finite_rows(x, names, path=file, what="array")
    return x
