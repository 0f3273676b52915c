"""Fast writers of a float64 feature matrix: CSV byte-identical to ``pandas.DataFrame.to_csv``, and Parquet.

:func:`write_csv` produces exactly the bytes ``pd.DataFrame(values, columns=names).to_csv(path, index=False)``
writes (header quoted by the ``csv`` module's minimal rule, every value as Python's ``repr`` of the float,
NaN as an empty field, ``os.linesep`` after each line), without pandas. Values that are whole numbers below
1e16 in magnitude (``60.0``, ``-3.0``, ``0.0``, ``-0.0``: most N-BaIoT feature values of a capture, e.g.
99.7% of the spoofed SYN flood's) are formatted by a compiled kernel; the others are formatted by Python's
own ``repr`` (so the text is the same by construction) and spliced in. Rows are written in blocks, so memory
stays bounded for any number of rows.

:func:`write_parquet` writes the columns with pyarrow (the ``parquet`` extra); reading the file back with
``pd.read_parquet`` gives the frame ``to_parquet`` would have written.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numba
import numpy as np
from numpy.typing import NDArray

from fediot.errors import ConfigError, DataError

__all__ = ["csv_header", "format_csv_rows", "write_csv", "write_parquet"]

_BLOCK_ROWS = 8192
_FAST_LIMIT = 1e16  # repr switches to exponent notation at 1e16; below it a whole float prints as "<int>.0"


def csv_header(names: Sequence[str], lineterminator: str = os.linesep) -> bytes:
    """Return the header line pandas writes for ``names`` (``csv`` module, minimal quoting), as UTF-8."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator=lineterminator, quoting=csv.QUOTE_MINIMAL).writerow(list(names))
    return buf.getvalue().encode("utf-8")


@numba.njit(cache=True, nogil=True, boundscheck=False, error_model="numpy")
def _fill(
    values: Any, fast: Any, special: Any, special_offsets: Any, sep: int, eol: Any, out: Any
) -> int:  # pragma: no cover - compiled; tested through format_csv_rows
    """Write the rows of ``values`` into ``out`` (or only count when ``out`` is empty); return the length."""
    n, m = values.shape
    count_only = out.shape[0] == 0
    pos = 0
    s = 0  # index of the next special (non-fast) value, row-major
    digits = np.empty(20, dtype=np.uint8)
    for i in range(n):
        for j in range(m):
            if j > 0:
                if not count_only:
                    out[pos] = sep
                pos += 1
            if fast[i, j]:
                v = values[i, j]
                negative = v < 0.0 or (v == 0.0 and math.copysign(1.0, v) < 0.0)
                k = np.int64(-v if v < 0.0 else v)
                nd = 0
                while True:
                    digits[nd] = 48 + k % 10
                    nd += 1
                    k //= 10
                    if k == 0:
                        break
                length = nd + 2 + (1 if negative else 0)
                if not count_only:
                    p = pos
                    if negative:
                        out[p] = 45  # '-'
                        p += 1
                    for d in range(nd):
                        out[p + d] = digits[nd - 1 - d]
                    out[p + nd] = 46  # '.'
                    out[p + nd + 1] = 48  # '0'
                pos += length
            else:
                a = special_offsets[s]
                b = special_offsets[s + 1]
                if not count_only:
                    for q in range(b - a):
                        out[pos + q] = special[a + q]
                pos += b - a
                s += 1
        for q in range(eol.shape[0]):
            if not count_only:
                out[pos + q] = eol[q]
        pos += eol.shape[0]
    return pos


def format_csv_rows(values: NDArray[np.float64], lineterminator: str = os.linesep) -> bytes:
    r"""Return the data lines ``to_csv(index=False)`` writes for the rows of ``values`` (no header).

    Parameters
    ----------
    values : ndarray of shape (n_rows, n_columns), float64
    lineterminator : str
        Appended to each row (pandas' default: ``os.linesep``).

    Examples
    --------
    >>> import numpy as np
    >>> format_csv_rows(np.array([[1.0, -0.0, 0.1], [np.nan, 1e16, -2.5e-7]]), "\n").decode()
    '1.0,-0.0,0.1\n,1e+16,-2.5e-07\n'
    """
    a = np.ascontiguousarray(values, dtype=np.float64)
    if a.ndim != 2:
        raise DataError(f"expected a 2-D feature matrix, got shape {a.shape}")
    fast = np.abs(a) < _FAST_LIMIT
    fast &= a == np.floor(a)  # NaN and inf compare False: they take the repr path
    slow = a[~fast]
    texts = list(map(repr, slow.tolist()))  # Python's float repr: what pandas writes
    for i in np.flatnonzero(np.isnan(slow)).tolist():
        texts[i] = ""  # pandas' na_rep
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)), out=offsets[1:])
    special = np.frombuffer("".join(texts).encode("ascii"), dtype=np.uint8)
    eol = np.frombuffer(lineterminator.encode("ascii"), dtype=np.uint8)
    empty = np.zeros(0, dtype=np.uint8)
    size = _fill(a, fast, special, offsets, ord(","), eol, empty)
    out = np.empty(size, dtype=np.uint8)
    _fill(a, fast, special, offsets, ord(","), eol, out)
    return out.tobytes()


def write_csv(
    target: str | os.PathLike[str] | BinaryIO,
    values: NDArray[np.float64],
    names: Sequence[str],
    *,
    lineterminator: str = os.linesep,
    block_rows: int = _BLOCK_ROWS,
) -> None:
    """Write ``values`` with the header ``names`` as CSV, byte-identical to pandas' ``to_csv(index=False)``.

    Parameters
    ----------
    target : path or binary file
        Where to write (a path is created or truncated).
    values : ndarray of shape (n_rows, len(names)), float64
    names : sequence of str
        Column names.
    lineterminator : str
        Line end (pandas' default: ``os.linesep``).
    block_rows : int
        Rows formatted per block (bounds the memory used).

    Raises
    ------
    DataError
        If ``values`` is not 2-D with ``len(names)`` columns.
    """
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != len(names):
        raise DataError(f"features have shape {a.shape}, expected (n, {len(names)})")
    if isinstance(target, str | os.PathLike):
        with Path(target).open("wb") as fh:
            _write_blocks(fh, a, names, lineterminator, block_rows)
    else:
        _write_blocks(target, a, names, lineterminator, block_rows)


def _write_blocks(
    fh: BinaryIO, a: NDArray[np.float64], names: Sequence[str], lineterminator: str, block_rows: int
) -> None:
    fh.write(csv_header(names, lineterminator))
    for start in range(0, a.shape[0], max(1, block_rows)):
        fh.write(format_csv_rows(a[start : start + block_rows], lineterminator))


def write_parquet(path: str | os.PathLike[str], values: NDArray[np.float64], names: Sequence[str]) -> None:
    """Write ``values`` as a Parquet file with one float64 column per name (pyarrow, the ``parquet`` extra).

    Raises
    ------
    ConfigError
        If pyarrow is not installed.
    DataError
        If ``values`` is not 2-D with ``len(names)`` columns.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            f"writing {Path(path).name} needs pyarrow: pip install 'fediot[parquet]' (or use a .csv file)"
        ) from None
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != len(names):
        raise DataError(f"features have shape {a.shape}, expected (n, {len(names)})")
    table = pa.table({str(name): a[:, j] for j, name in enumerate(names)})
    pq.write_table(table, str(path))
