"""Exceptions raised by fediot; each names what was wrong and where."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CaptureError", "ConfigError", "DataError", "FediotError"]


class FediotError(Exception):
    """Base class of every error fediot raises on purpose (the CLI prints it as one line)."""


class ConfigError(FediotError, ValueError):
    """An experiment or runtime configuration value is invalid."""


class DataError(FediotError, ValueError):
    """Input data is missing, malformed or inconsistent.

    Parameters
    ----------
    message : str
        What was expected and what was found.
    path : str or Path, optional
        The file the problem is in.
    line : int, optional
        1-based line number in that file (for text formats).
    column : str or int, optional
        Column name or 1-based column number.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        column: str | int | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.column = column
        where = []
        if self.path is not None:
            where.append(self.path)
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class CaptureError(DataError):
    """A packet capture (pcap/pcapng, maybe gzipped) cannot be read past a point.

    The message reads ``"<file>, byte offset <n>: <what was expected and found>"``; for a gzipped capture
    the offset counts bytes of the decompressed stream.

    Parameters
    ----------
    message : str
        What was expected and what was found.
    path : str or Path, optional
        The capture.
    offset : int, optional
        0-based byte offset of the damaged structure (record header, block, gzip stream position).
    """

    def __init__(self, message: str, *, path: str | Path | None = None, offset: int | None = None) -> None:
        self.path = None if path is None else str(path)
        self.line = None
        self.column = None
        self.offset = offset
        where = [w for w in (self.path, None if offset is None else f"byte offset {offset}") if w is not None]
        ValueError.__init__(self, f"{', '.join(where)}: {message}" if where else message)
