"""A minimal progress interface so library code can report long work without knowing about Rich."""

from __future__ import annotations

from typing import Protocol

__all__ = ["NullProgress", "Progress"]


class Progress(Protocol):
    """Receives progress of long work (the CLI renders it as Rich progress bars)."""

    def task(self, description: str, total: int) -> None:
        """Begin a new task of ``total`` steps."""
        ...

    def advance(self, steps: int = 1, *, info: str = "") -> None:
        """Mark ``steps`` steps of the current task done; ``info`` is a short status (e.g. a loss)."""
        ...


class NullProgress:
    """A :class:`Progress` that reports nothing."""

    def task(self, description: str, total: int) -> None:
        """Ignore the task."""
        del description, total

    def advance(self, steps: int = 1, *, info: str = "") -> None:
        """Ignore the step."""
        del steps, info
