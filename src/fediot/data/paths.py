"""Where the shipped datasets live, and sha256 verification against ``data/SHA256SUMS``."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

from fediot.errors import DataError

__all__ = ["data_root", "sha256_file", "shipped_file", "verify_shipped"]

_ENV = "FEDIOT_DATA_DIR"


def data_root() -> Path:
    """Return the folder holding the shipped data (``$FEDIOT_DATA_DIR``, else the repository's ``data/``).

    Raises
    ------
    DataError
        If neither exists (e.g. fediot was installed from a wheel without the repository).
    """
    env = os.environ.get(_ENV)
    if env:
        root = Path(env)
        if not (root / "SHA256SUMS").is_file():
            raise DataError(f"${_ENV} points to {root}, which has no SHA256SUMS file")
        return root
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "data"
        if (candidate / "SHA256SUMS").is_file():
            return candidate
    raise DataError(
        "cannot find the shipped data folder: run fediot from a clone of the repository "
        f"(pip install -e .) or set ${_ENV} to its data/ folder"
    )


@lru_cache(maxsize=1)
def _manifest(root: Path) -> dict[str, str]:
    sums = {}
    for line in (root / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.strip()] = digest
    return sums


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of the file at ``path``."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_verified: set[tuple[str, float, int]] = set()


def verify_shipped(path: Path) -> None:
    """Check a shipped file against ``SHA256SUMS`` (once per process per unchanged file).

    Raises
    ------
    DataError
        If the file is missing, not listed, or its sha256 differs.
    """
    root = data_root()
    rel = path.resolve().relative_to(root.resolve()).as_posix()
    expected = _manifest(root).get(rel)
    if expected is None:
        raise DataError("not listed in SHA256SUMS", path=path)
    if not path.is_file():
        raise DataError("shipped data file is missing (is the clone complete?)", path=path)
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime, st.st_size)
    if key in _verified:
        return
    actual = sha256_file(path)
    if actual != expected:
        raise DataError(f"sha256 mismatch: expected {expected}, got {actual} (file corrupted or modified)",
                        path=path)
    _verified.add(key)


def shipped_file(relative: str, *, verify: bool = True) -> Path:
    """Return the path of a shipped data file (e.g. ``"kddcup99/corrected.gz"``), checksum-verified."""
    path = data_root() / relative
    if verify:
        verify_shipped(path)
    elif not path.is_file():
        raise DataError("shipped data file is missing", path=path)
    return path
