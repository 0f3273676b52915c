"""Shared fixtures of the data-layer tests: each big shipped file is read once per session."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pytest

from fediot.data.kdd import read_kdd99, read_nslkdd
from fediot.data.paths import shipped_file
from fediot.data.tabular import TabularData

WriteLines = Callable[[str, list[str]], Path]


@pytest.fixture(scope="session")
def kdd10() -> TabularData:
    return read_kdd99("10_percent")


@pytest.fixture(scope="session")
def kdd_corrected() -> TabularData:
    return read_kdd99("corrected")


@pytest.fixture(scope="session")
def nsl_tables() -> dict[str, TabularData]:
    return {name: read_nslkdd(name) for name in ("KDDTrain+_20Percent", "KDDTest+", "KDDTest-21")}


def _head(relative: str, n: int) -> list[str]:
    with gzip.open(shipped_file(relative), "rt", encoding="utf-8") as fh:
        return [next(fh).rstrip("\n") for _ in range(n)]


@pytest.fixture(scope="session")
def kdd_head() -> list[str]:
    """The first 20 lines of the real KDD Cup 99 10% file (line i+1 is ``kdd_head[i]``)."""
    return _head("kddcup99/kddcup.data_10_percent.gz", 20)


@pytest.fixture(scope="session")
def nsl_head() -> list[str]:
    """The first 20 lines of the real NSL-KDD KDDTest+ file."""
    return _head("nsl_kdd/KDDTest+.txt.gz", 20)


@pytest.fixture
def write_lines(tmp_path: Path) -> WriteLines:
    """Write lines (newline-terminated) to ``tmp_path/name``, gzipped if the name ends in ``.gz``."""

    def write(name: str, lines: list[str]) -> Path:
        path = tmp_path / name
        data = "".join(f"{line}\n" for line in lines).encode()
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        return path

    return write
