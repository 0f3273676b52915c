"""Fuzz the table readers with mutated real shipped rows (N-BaIoT sample, KDD Cup 99): a fediot error, or
a finite table with one row per data line and the contract's columns -- never a shifted or dropped column."""

from __future__ import annotations

import contextlib
import gzip
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fediot.data.kdd import read_kdd99
from fediot.data.nbaiot import nbaiot_feature_names
from fediot.data.paths import shipped_file
from fediot.data.tabular import read_feature_rows
from fediot.errors import FediotError

DEADLINE_S = 10.0
CASES = 300
_GARBAGE = (",", ",,", '"', "\n", "\r\n", "nan", "inf", "-", "1e39", "x", " ", "\x00", "é", "0x1F", "1,2")


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise TimeoutError(f"a fuzz case ran longer than {DEADLINE_S} s")


@contextlib.contextmanager
def _deadline() -> Iterator[None]:
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, DEADLINE_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def tables() -> dict[str, bytes]:
    """Heads of real shipped tables: the N-BaIoT benign sample (header + 12 rows) and 30 KDD rows."""
    nbaiot = gzip.decompress(shipped_file("nbaiot/samples/benign_traffic.csv.gz").read_bytes())
    with gzip.open(shipped_file("kddcup99/kddcup.data_10_percent.gz"), "rb") as fh:
        kdd = b"".join(next(fh) for _ in range(30))
    return {"nbaiot": b"\n".join(nbaiot.split(b"\n")[:13]) + b"\n", "kdd": kdd}


def _mutate(data: bytes, draw: Callable[[int, int], int]) -> bytes:
    text = bytearray(data)
    for _ in range(draw(1, 3)):
        op = draw(0, 5)
        n = len(text)
        pos = draw(0, max(0, n - 1))
        if op == 0 and n:  # flip a bit
            text[pos] ^= 1 << draw(0, 7)
        elif op == 1:  # truncate
            del text[draw(0, n) :]
        elif op == 2:  # insert a troublesome token
            text[pos:pos] = _GARBAGE[draw(0, len(_GARBAGE) - 1)].encode()
        elif op == 3 and n:  # replace a field's value with a token
            start = text.rfind(b",", 0, pos) + 1
            stop = text.find(b",", pos)
            stop = n if stop < 0 else stop
            text[start:stop] = _GARBAGE[draw(0, len(_GARBAGE) - 1)].encode()
        elif op == 4:  # duplicate or delete a line
            lines = bytes(text).split(b"\n")
            i = draw(0, len(lines) - 1)
            lines[i:i] = [lines[i]] if draw(0, 1) else []
            if draw(0, 1):
                del lines[i]
            text = bytearray(b"\n".join(lines))
        elif op == 5 and n:  # delete a span
            del text[pos : pos + draw(1, 40)]
    return bytes(text)


@settings(max_examples=CASES, derandomize=True, database=None)
@given(data=st.data())
def test_mutated_tables_give_a_finite_table_or_a_fediot_error(
    tables: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    # Prepare
    kind = data.draw(st.sampled_from(sorted(tables)), label="table")
    case = _mutate(tables[kind], lambda lo, hi: data.draw(st.integers(lo, hi)))
    zipped = data.draw(st.booleans(), label="gzip")
    folder = tmp_path_factory.mktemp("case")
    path = folder / (("rows.csv" if kind == "nbaiot" else "rows.txt") + (".gz" if zipped else ""))
    path.write_bytes(gzip.compress(case, mtime=0) if zipped else case)

    # Execute
    error: FediotError | None = None
    x = None
    with _deadline():
        try:
            x = read_feature_rows(path, nbaiot_feature_names()) if kind == "nbaiot" else read_kdd99(path).x
        except FediotError as exc:
            error = exc

    # Assert
    if error is not None:
        assert str(error).startswith(str(path)), str(error)  # names the file
        return
    assert x is not None
    data_lines = case.count(b"\n") - (1 if kind == "nbaiot" else 0) + (0 if case.endswith(b"\n") else 1)
    assert x.shape == (data_lines, 115 if kind == "nbaiot" else 41)
    assert np.isfinite(x).all()


def test_the_unmutated_tables_read(tables: dict[str, bytes], tmp_path: Path) -> None:
    # Prepare
    (tmp_path / "rows.csv").write_bytes(tables["nbaiot"])
    (tmp_path / "rows.txt").write_bytes(tables["kdd"])

    # Execute / Assert
    assert read_feature_rows(tmp_path / "rows.csv", nbaiot_feature_names()).shape == (12, 115)
    assert read_kdd99(tmp_path / "rows.txt").x.shape == (30, 41)
