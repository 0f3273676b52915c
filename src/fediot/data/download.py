"""Download the full N-BaIoT CSVs (Kaggle flat layout) with row-count and header verification.

N-BaIoT is not shipped (7 million rows); ``data_summary.csv`` gives the data-row count of each of its 89
files, which serves as the check of a download: a file is kept only if its header is the 115 names of
``features.csv`` and it has exactly the expected number of rows. Each file is written to a temporary file
in the target folder and renamed once verified, so an interrupted or bad download leaves no partial file.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fediot.data.nbaiot import nbaiot_expected_counts, nbaiot_feature_names
from fediot.data.tabular import check_header
from fediot.errors import DataError

__all__ = ["NBAIOT_BASE_URL", "DownloadEvent", "count_csv_rows", "download_nbaiot", "verify_nbaiot_file"]

log = logging.getLogger(__name__)

NBAIOT_BASE_URL = "https://www.kaggle.com/api/v1/datasets/download/mkashifn/nbaiot-dataset"
"""Default source: the Kaggle ``mkashifn/nbaiot-dataset`` files, fetched as ``<base_url>/<file name>``.
Any server (or mirror) serving the 89 flat CSVs under one URL prefix works with ``base_url``."""

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class DownloadEvent:
    """Progress of :func:`download_nbaiot`, passed to its ``progress`` callback.

    Attributes
    ----------
    name : str
        File name (e.g. ``"1.benign.csv"``).
    index : int
        1-based position of the file among ``num_files``.
    num_files : int
        Number of files requested.
    bytes_done : int
        Bytes received so far for this file.
    bytes_total : int or None
        The server's Content-Length, if it sent one.
    status : {"downloading", "done", "skipped"}
        ``skipped``: the file was already present and complete.
    """

    name: str
    index: int
    num_files: int
    bytes_done: int
    bytes_total: int | None
    status: Literal["downloading", "done", "skipped"]


def count_csv_rows(path: Path) -> tuple[str, int]:
    """Return a CSV file's first line (without its line ending) and its number of data rows after it.

    Counts newline-terminated lines in binary chunks (fast); a last line without a newline counts too.
    """
    lines = 0
    last = b"\n"
    with path.open("rb") as fh:
        first = fh.readline()
        if not first:
            return "", 0
        for block in iter(lambda: fh.read(_CHUNK), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    if last != b"\n":
        lines += 1
    return first.decode("utf-8", errors="replace").rstrip("\r\n"), lines


def verify_nbaiot_file(path: Path, expected_rows: int, *, feature_names: Sequence[str] | None = None) -> None:
    """Check that ``path`` has the 115-name N-BaIoT header and exactly ``expected_rows`` data rows.

    Raises
    ------
    DataError
        Naming the first mismatching header column, or the expected and found row counts.
    """
    names = list(nbaiot_feature_names() if feature_names is None else feature_names)
    header, rows = count_csv_rows(path)
    check_header(header.split(","), names, path=path)
    if rows != expected_rows:
        raise DataError(f"expected {expected_rows} data rows (data_summary.csv), found {rows}", path=path)


def _fetch(url: str, target: Path, timeout: float, report: Callable[[int, int | None], None]) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "fediot"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, target.open("wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            for block in iter(lambda: response.read(_CHUNK), b""):
                out.write(block)
                done += len(block)
                report(done, total)
    except urllib.error.HTTPError as exc:
        raise DataError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DataError(f"cannot download {url}: {exc.reason}") from None
    except OSError as exc:  # timeouts, resets
        raise DataError(f"cannot download {url}: {exc}") from None


def _unzip_if_needed(part: Path, name: str) -> None:
    """Kaggle may wrap a single file in a zip: replace ``part`` by the member called ``name``."""
    if not zipfile.is_zipfile(part):
        return
    with zipfile.ZipFile(part) as archive:
        members = [m for m in archive.namelist() if Path(m).name == name] or archive.namelist()
        if len(members) != 1:
            raise DataError(f"expected a zip holding {name}, found {archive.namelist()[:5]}", path=part)
        unzipped = part.with_suffix(".unzipped")
        with archive.open(members[0]) as src, unzipped.open("wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
    os.replace(unzipped, part)


def download_nbaiot(
    to: str | Path,
    *,
    base_url: str = NBAIOT_BASE_URL,
    files: Sequence[str] | None = None,
    expected: Mapping[str, int] | None = None,
    progress: Callable[[DownloadEvent], None] | None = None,
    timeout: float = 60.0,
) -> list[Path]:
    """Download N-BaIoT CSVs into ``to`` (Kaggle flat layout, readable by :func:`read_nbaiot`).

    Parameters
    ----------
    to : str or Path
        Target folder (created).
    base_url : str
        Each file is fetched from ``<base_url>/<file name>``.
    files : sequence of str, optional
        File names to fetch (default: every file of ``expected``).
    expected : mapping of str to int, optional
        Data-row count of each file (default: :func:`nbaiot_expected_counts`, the 89 real files).
    progress : callable, optional
        Called with a :class:`DownloadEvent` as bytes arrive and when each file is done or skipped.
    timeout : float
        Seconds to wait for the server on each network operation.

    Returns
    -------
    list of Path
        The verified files, in request order. Files already present and complete are not fetched again.

    Raises
    ------
    DataError
        Unreachable server or HTTP error (names the URL and the reason), or a fetched file whose header or
        row count is wrong (the partial file is removed).
    """
    counts = dict(nbaiot_expected_counts() if expected is None else expected)
    names = list(counts) if files is None else list(files)
    unknown = [n for n in names if n not in counts]
    if unknown:
        raise DataError(f"no expected row count for {unknown[:3]} (not in data_summary.csv)")
    folder = Path(to)
    folder.mkdir(parents=True, exist_ok=True)
    features = nbaiot_feature_names()
    report = progress or (lambda event: None)
    out: list[Path] = []
    for index, name in enumerate(names, start=1):
        dest = folder / name
        if dest.is_file():
            try:
                verify_nbaiot_file(dest, counts[name], feature_names=features)
            except DataError as exc:
                log.warning("fetching again: %s", exc)
            else:
                size = dest.stat().st_size
                report(DownloadEvent(name, index, len(names), size, size, "skipped"))
                out.append(dest)
                continue
        url = f"{base_url.rstrip('/')}/{urllib.parse.quote(name)}"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
        os.close(fd)
        part = Path(tmp)

        def on_bytes(done: int, total: int | None, name: str = name, index: int = index) -> None:
            report(DownloadEvent(name, index, len(names), done, total, "downloading"))

        try:
            _fetch(url, part, timeout, on_bytes)
            _unzip_if_needed(part, name)
            try:
                verify_nbaiot_file(part, counts[name], feature_names=features)
            except DataError as exc:
                raise DataError(f"downloaded from {url}: {exc}") from None
            os.replace(part, dest)
        finally:
            part.unlink(missing_ok=True)
        size = dest.stat().st_size
        report(DownloadEvent(name, index, len(names), size, size, "done"))
        log.info("downloaded %s (%d rows)", dest, counts[name])
        out.append(dest)
    return out
