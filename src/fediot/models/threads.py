"""One place that picks the thread count of fediot's small-model training and scoring (torch intra-op).

fediot's networks are tiny (the N-BaIoT autoencoder has ~36k weights): one thread runs them at the speed of
the machine, while torch's default (one OpenMP thread per core) spin-waits on every small matrix product and
becomes many times slower as soon as another process holds a core (measured: ``benchmarks/bench_threads.py``,
BENCHMARKS.md). So importing :mod:`fediot.models` sets torch to :data:`DEFAULT_THREADS` threads, unless the
environment variable ``FEDIOT_THREADS`` says otherwise (``0``: leave torch's own default); the CLI's global
``--threads`` option and :func:`set_threads` override it. The thread count changes training results at most
in the last float32 bits (bit-identical on some CPUs, 1.5e-8 on an AMD EPYC host; benchmark and test).
"""

from __future__ import annotations

import os

import torch

from fediot.errors import ConfigError

__all__ = ["DEFAULT_THREADS", "THREADS_ENV", "apply_default_threads", "get_threads", "set_threads"]

DEFAULT_THREADS = 1
"""Threads used when neither ``FEDIOT_THREADS`` nor :func:`set_threads` says otherwise."""

THREADS_ENV = "FEDIOT_THREADS"
"""Environment variable read by :func:`apply_default_threads` (an integer >= 0; 0 = torch's default)."""


def set_threads(n: int) -> int:
    """Set the threads torch uses for fediot's training and scoring; return the previous count.

    Parameters
    ----------
    n : int
        Threads, >= 1. The ONNX Runtime scorer (``AutoencoderScorer(backend="onnxruntime")``) takes this
        count when it is built.

    Raises
    ------
    ConfigError
        If ``n`` is not a positive integer.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"threads must be a positive integer, got {n!r}")
    previous = torch.get_num_threads()
    if n != previous:
        torch.set_num_threads(n)
    return previous


def get_threads() -> int:
    """Return the threads torch uses now."""
    return torch.get_num_threads()


def apply_default_threads() -> int:
    """Apply ``FEDIOT_THREADS`` (or :data:`DEFAULT_THREADS` when unset); return the count in use.

    Raises
    ------
    ConfigError
        If ``FEDIOT_THREADS`` is set to anything but an integer >= 0.
    """
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        set_threads(DEFAULT_THREADS)
    else:
        try:
            n = int(raw)
        except ValueError:
            raise ConfigError(f"{THREADS_ENV} must be an integer >= 0, got {raw!r}") from None
        if n < 0:
            raise ConfigError(f"{THREADS_ENV} must be an integer >= 0, got {raw!r}")
        if n > 0:
            set_threads(n)
    return torch.get_num_threads()
