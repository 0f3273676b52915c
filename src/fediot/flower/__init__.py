"""Flower ClientApp/ServerApp adapters over the federation engine (needs the ``[flower]`` extra).

The names below are imported on first use (PEP 562), so ``fediot.flower.deploy`` (certificates and
command lines, used by ``fediot server``/``client``) loads without torch or the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fediot.flower.checkpoint import load_checkpoint, save_checkpoint, write_history
    from fediot.flower.client_app import QUERIES, make_client_app, node_client
    from fediot.flower.server_app import ServerResult, make_server_app, run_server
    from fediot.flower.transport import GridTransport

__all__ = [
    "QUERIES",
    "GridTransport",
    "ServerResult",
    "load_checkpoint",
    "make_client_app",
    "make_server_app",
    "node_client",
    "run_server",
    "save_checkpoint",
    "write_history",
]

_HOME = {
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "write_history": "checkpoint",
    "QUERIES": "client_app",
    "make_client_app": "client_app",
    "node_client": "client_app",
    "ServerResult": "server_app",
    "make_server_app": "server_app",
    "run_server": "server_app",
    "GridTransport": "transport",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'fediot.flower' has no attribute {name!r}")
    return getattr(importlib.import_module(f"fediot.flower.{home}"), name)
