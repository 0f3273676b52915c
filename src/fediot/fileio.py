"""The one atomic file writer: a file is its old version or the complete new one, never half-written."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "check_output_dir", "default_mode", "publish_outputs"]


def default_mode() -> int:
    """Return the mode a new regular file gets under the current umask (``0o666 & ~umask``)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: Path | str, write: Callable[[Path], None], *, mode: int | None = None) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``.

    The temporary file is removed if ``write`` raises, so ``path`` keeps its old content. The file gets
    ``mode`` (default: what the umask gives a new file, as ``open`` would; pass ``0o600`` for secrets).

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "a.txt"
    >>> atomic_write(target, lambda tmp: tmp.write_text("done")).read_text()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, default_mode() if mode is None else mode)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def check_output_dir(out: Path | str) -> Path:
    """Return ``out`` as a Path; raise :class:`~fediot.errors.ConfigError` if it is an existing non-folder.

    Call it before any work, so a run never fails at its very end on an unusable ``--out``.
    """
    from fediot.errors import ConfigError

    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path}: exists and is not a folder (expected a folder for the outputs)")
    return path


def publish_outputs(staging: Path, out: Path, *, owned: tuple[str, ...], last: str) -> list[Path]:
    """Move every file of ``staging`` into ``out`` so that a run's outputs appear together or not at all.

    Order: the old ``last`` file (e.g. ``results.json``) is removed first, then the old outputs this kind of
    run owns (names or glob patterns in ``owned``, e.g. stale plots), then the new files are moved in, and
    ``last`` is moved in at the very end. An interruption at any point leaves either the complete new set or
    a folder without ``last``: never a new ``results.json`` beside an old ``report.md``. Other files in
    ``out`` are left alone. ``staging`` must be on the same filesystem (a folder inside ``out``).

    Returns
    -------
    list of Path
        The published files.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / last).unlink(missing_ok=True)
    for pattern in owned:
        for old in out.glob(pattern):
            if old.is_file() and old.parent == out:
                old.unlink()
    published = []
    new = sorted(p for p in staging.iterdir() if p.is_file())
    for path in [p for p in new if p.name != last] + [p for p in new if p.name == last]:
        target = out / path.name
        os.replace(path, target)
        published.append(target)
    return published
