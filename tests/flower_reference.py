"""Shared pieces of the reference tests against Flower's strategies: a node-listing Grid, a task identity."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import flwr.serverapp.grid as flwr_grid


@contextmanager
def task_identity() -> Iterator[None]:
    """Flower stamps new messages with the process's task identity (set by its runtimes); set one here."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    try:
        yield
    finally:
        TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


class FixedNodesGrid(flwr_grid.Grid):  # type: ignore[misc, name-defined]
    """A Grid that only knows a fixed set of node ids; the strategies under test only ask for those.

    Flower's ``configure_train`` needs a Grid to sample nodes; no message is ever pushed through it.
    """

    def __init__(self, node_ids: list[int]) -> None:
        self._node_ids = node_ids

    def set_run(self, run: Any) -> None:
        raise NotImplementedError

    @property
    def run(self) -> Any:
        raise NotImplementedError

    def create_message(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        return list(self._node_ids)

    def push_messages(self, messages: Any) -> Iterable[str]:
        raise NotImplementedError

    def pull_messages(self, message_ids: Any) -> Iterable[Any]:
        raise NotImplementedError

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> Iterable[Any]:
        raise NotImplementedError
