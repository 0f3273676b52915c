"""Flower ClientApp/ServerApp adapters over the federation engine (needs the ``[flower]`` extra)."""

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
