"""The labelled table every tabular reader returns, and the strict CSV reading they share."""

from __future__ import annotations

import gzip
import io
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from fediot.errors import DataError

__all__ = ["TabularData", "check_header", "open_text", "read_csv_strict"]


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
    except (EOFError, OSError, zlib.error):
        pass
    return count


_FIELDS_RE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


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
        frame = pd.read_csv(
            path,
            header=None,
            skiprows=1 if header is not None else 0,
            names=list(names),
            dtype=dict.fromkeys(strings, str),
            keep_default_na=False,
            na_values=[],
            skip_blank_lines=False,
            engine="c",
            low_memory=False,
            nrows=nrows,
            compression="gzip" if path.suffix == ".gz" else None,
        )
    except pd.errors.ParserError as exc:
        match = _FIELDS_RE.search(str(exc))
        if match is None:
            raise DataError(f"cannot parse: {exc}", path=path) from None
        expected, line, found = (int(g) for g in match.groups())
        raise DataError(
            f"expected {expected} comma-separated fields, found {found}",
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
