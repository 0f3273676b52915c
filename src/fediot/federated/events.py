"""Structured events of a federation: one log call gives the human line and a JSON line.

The engine, the transports and the ServerApp log what happens (rounds, failed or rejected gateways, lost
nodes, the federated scaler and threshold, the saved detector) through :mod:`logging`, with the event's
fields attached by :func:`event`. :class:`JsonLinesHandler` writes every fediot record it receives as one
JSON object per line: ``time`` (ISO 8601, UTC), ``level``, ``event`` (``log`` for a line without fields),
the event's fields, and ``message`` (the human line). The file is opened for append and flushed after every
line, so a supervisor can follow it (``tail -f``) and a crash loses at most the line being written.

Event names and their fields (besides ``time``, ``level``, ``message``):

``run_start``
    ``rounds``, ``strategy``, ``fraction_fit``, ``seed``, ``resume_after`` (0 for a fresh run).
``scaler``
    ``scaler`` (kind), ``clients`` (how many sent statistics).
``round``
    ``server_round``, ``rounds``, ``selected`` (client ids), ``failed`` (client ids), ``rejected``,
    ``replies``, ``secure_aggregation``, ``train_loss`` (None when no reply reported one), ``seconds``,
    ``bytes_sent``, ``bytes_received``.
``client_failed`` / ``update_rejected``
    ``server_round``, ``client``, ``reason`` (a secure-aggregation round: ``clients``, the dropped ones).
``statistics_left_out``
    ``query``, ``client``, ``reason``.
``threshold``
    ``threshold``, ``clients``.
``node_lost``
    ``client``, ``node_id``, ``reason``.
``node_unidentified``
    ``node_id`` and ``reason`` (an error reply), or ``nodes`` (how many have not answered yet) and ``reason``.
``detector_saved``
    ``path``.
``run_end``
    ``seconds``.
``run_failed``
    ``error`` (the one-line reason), ``seconds``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
from pathlib import Path
from typing import IO, Any

__all__ = ["EVENT_ATTR", "JsonLinesHandler", "event"]

EVENT_ATTR = "fediot_event"
"""The ``LogRecord`` attribute that carries an event's name and fields."""


def event(name: str, **fields: Any) -> dict[str, Any]:
    """Return the ``extra=`` mapping that attaches event ``name`` with ``fields`` to a log call."""
    return {EVENT_ATTR: {"event": name, **fields}}


def _plain(value: Any) -> Any:
    """JSON-ready ``value``: non-finite floats become None (JSON has no NaN), tuples lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


class JsonLinesHandler(logging.Handler):
    """A logging handler that appends every record as one JSON line to ``path`` (flushed per line).

    The parent folder must exist; the file is created (following the umask) or appended to.
    """

    def __init__(self, path: str | Path, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.path = Path(path)
        self._stream: IO[str] | None = open(  # noqa: SIM115 - closed in close()
            self.path, "a", encoding="utf-8", buffering=1
        )

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record`` as one JSON line."""
        stream = self._stream
        if stream is None:
            return
        try:
            fields = dict(getattr(record, EVENT_ATTR, None) or {"event": "log"})
            when = _dt.datetime.fromtimestamp(record.created, tz=_dt.UTC)
            doc = {
                "time": when.isoformat(timespec="microseconds").replace("+00:00", "Z"),
                "level": record.levelname.lower(),
                "event": fields.pop("event"),
                **{k: _plain(v) for k, v in fields.items()},
                "message": record.getMessage(),
            }
            stream.write(json.dumps(doc, allow_nan=False) + "\n")
            stream.flush()
        except Exception:  # a log line must never break a round; logging reports it on stderr
            self.handleError(record)

    def close(self) -> None:
        """Flush and close the file (fsync: the last lines survive a power cut)."""
        self.acquire()
        try:
            if self._stream is not None:
                self._stream.flush()
                os.fsync(self._stream.fileno())
                self._stream.close()
                self._stream = None
        finally:
            self.release()
        super().close()
