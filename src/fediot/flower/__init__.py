"""Flower ClientApp/ServerApp adapters over the same client/strategy code (needs the ``[flower]`` extra)."""

from fediot.flower.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from fediot.flower.client_app import DEFAULT_QUERIES, make_client_app, sufficient_stats
from fediot.flower.server_app import ServerConfig, make_server_app, run_server

__all__ = [
    "DEFAULT_QUERIES",
    "Checkpoint",
    "ServerConfig",
    "load_checkpoint",
    "make_client_app",
    "make_server_app",
    "run_server",
    "save_checkpoint",
    "sufficient_stats",
]
