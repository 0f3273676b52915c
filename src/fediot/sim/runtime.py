"""The in-process federated runtime: one round loop for every strategy, deterministic for a seed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from fediot.errors import ConfigError
from fediot.federated.client import Client
from fediot.federated.selection import select_clients
from fediot.federated.strategy import Strategy
from fediot.federated.types import ClientUpdate, Config, Weights, weights_nbytes

__all__ = ["Executor", "RoundRecord", "SequentialExecutor", "SimResult", "run_rounds"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RoundRecord:
    """What happened in one round.

    Attributes
    ----------
    server_round : int
        1-based round number.
    selected : list of str
        The clients asked to train.
    train_loss : float
        Example-weighted mean of the clients' ``train_loss`` (NaN if none reported it).
    bytes_sent : int
        Weight payload sent by the server (global weights times selected clients).
    bytes_received : int
        Weight payload received from the clients.
    seconds : float
        Wall time of the round.
    failures : int
        Selected clients that raised instead of replying.
    """

    server_round: int
    selected: list[str]
    train_loss: float
    bytes_sent: int
    bytes_received: int
    seconds: float
    failures: int = 0


@dataclass(slots=True)
class SimResult:
    """The outcome of :func:`run_rounds`: final global weights and the per-round history."""

    weights: Weights
    rounds: list[RoundRecord] = field(default_factory=list)
    rng_state: dict[str, Any] | None = None
    """Client-selection generator state after the last round (pass it back to resume)."""

    @property
    def bytes_sent(self) -> int:
        """Total weight payload sent by the server."""
        return sum(r.bytes_sent for r in self.rounds)

    @property
    def bytes_received(self) -> int:
        """Total weight payload received by the server."""
        return sum(r.bytes_received for r in self.rounds)


class Executor(Protocol):
    """Runs the ``fit`` calls of one round's selected clients; :func:`run_rounds` does the rest."""

    def fit_round(
        self, clients: Sequence[Client], weights: Weights, config: Config, *, fail_fast: bool
    ) -> list[ClientUpdate | Exception]:
        """Return, per client in order, what ``client.fit(weights, config)`` returns or raises.

        With ``fail_fast`` a client's exception may propagate at once instead of being returned.
        """
        ...


class SequentialExecutor:
    """The reference executor: ``client.fit`` for one client after another."""

    def fit_round(
        self, clients: Sequence[Client], weights: Weights, config: Config, *, fail_fast: bool
    ) -> list[ClientUpdate | Exception]:
        """Call ``fit`` on each client in order (see :meth:`Executor.fit_round`)."""
        out: list[ClientUpdate | Exception] = []
        for client in clients:
            try:
                out.append(client.fit(weights, config))
            except Exception as exc:
                if fail_fast:
                    raise
                out.append(exc)
        return out


def _weighted_loss(updates: list[ClientUpdate]) -> float:
    pairs = [(float(u.metrics["train_loss"]), u.num_examples) for u in updates if "train_loss" in u.metrics]
    total = sum(n for _, n in pairs)
    return float("nan") if total == 0 else sum(loss * n for loss, n in pairs) / total


def run_rounds(
    clients: Mapping[str, Client],
    strategy: Strategy,
    initial_weights: Weights,
    *,
    num_rounds: int,
    fraction_fit: float = 1.0,
    min_fit_clients: int = 1,
    seed: int = 0,
    fit_config: Callable[[int], Config] | None = None,
    on_round: Callable[[RoundRecord], None] | None = None,
    tolerate_failures: bool = False,
    start_round: int = 1,
    rng_state: Mapping[str, Any] | None = None,
    executor: Executor | None = None,
) -> SimResult:
    """Run ``num_rounds`` federated rounds in this process.

    Each round: select clients with a generator seeded by ``seed`` (one stream for the whole run),
    call ``fit`` on each with the current global weights and ``fit_config(server_round)`` (plus
    ``server-round``), and let ``strategy`` aggregate the replies.

    Parameters
    ----------
    clients : mapping of str to Client
        Available clients by id (iteration order is the selection order).
    strategy : Strategy
        Holds the server state (e.g. FedAvgM momentum).
    initial_weights : Weights
        The global model before round 1.
    num_rounds : int
    fraction_fit : float
        Fraction of clients selected per round, in (0, 1].
    min_fit_clients : int
        At least this many are selected.
    seed : int
        Seeds client selection.
    fit_config : callable, optional
        ``server_round -> Config`` sent to every selected client.
    on_round : callable, optional
        Called with each finished :class:`RoundRecord` (progress reporting).
    tolerate_failures : bool
        If True, a client that raises is logged and counted, and the round aggregates the others
        (it fails if fewer than ``min_fit_clients`` reply); if False the exception propagates.
    start_round : int
        First round to run (resume: the last finished round + 1, with ``initial_weights`` and the
        strategy's state restored from that round); runs rounds ``start_round..num_rounds``.
    rng_state : mapping, optional
        ``SimResult.rng_state`` of the run being resumed (replaces the state seeded by ``seed``).
    executor : Executor, optional
        Runs each round's ``fit`` calls; default :class:`SequentialExecutor`. Use
        ``fediot.sim.batched.BatchedAutoencoderExecutor`` to train all selected autoencoder clients at
        once (same results up to float summation order, several times faster).

    Returns
    -------
    SimResult
    """
    if num_rounds < 0:
        raise ConfigError(f"num_rounds must be >= 0, got {num_rounds}")
    if not clients:
        raise ConfigError("no clients to train")
    if start_round < 1:
        raise ConfigError(f"start_round must be >= 1, got {start_round}")
    rng = np.random.default_rng(seed)
    if rng_state is not None:
        rng.bit_generator.state = dict(rng_state)
    run_fit = SequentialExecutor() if executor is None else executor
    ids = list(clients)
    weights = [w.copy() for w in initial_weights]
    result = SimResult(weights=weights)
    for server_round in range(start_round, num_rounds + 1):
        t0 = time.perf_counter()
        selected = select_clients(rng, ids, fraction_fit, min_fit_clients)
        config: dict[str, bool | int | float | str] = dict(fit_config(server_round) if fit_config else {})
        config["server-round"] = server_round
        replies = run_fit.fit_round(
            [clients[cid] for cid in selected], weights, config, fail_fast=not tolerate_failures
        )
        updates: list[ClientUpdate] = []
        failures = 0
        for cid, reply in zip(selected, replies, strict=True):
            if isinstance(reply, Exception):
                if not tolerate_failures:
                    raise reply
                failures += 1
                log.warning("round %d: client %s failed: %s", server_round, cid, reply)
            else:
                updates.append(reply)
        if len(updates) < min_fit_clients:
            raise RuntimeError(
                f"round {server_round}: only {len(updates)} of {len(selected)} clients replied, "
                f"fewer than min_fit_clients={min_fit_clients}"
            )
        sent = weights_nbytes(weights) * len(selected)
        received = sum(weights_nbytes(u.weights) for u in updates)
        weights = strategy.aggregate(server_round, weights, updates)
        record = RoundRecord(
            server_round=server_round,
            selected=selected,
            train_loss=_weighted_loss(updates),
            bytes_sent=sent,
            bytes_received=received,
            seconds=time.perf_counter() - t0,
            failures=failures,
        )
        result.rounds.append(record)
        if on_round is not None:
            on_round(record)
    result.weights = weights
    result.rng_state = dict(rng.bit_generator.state)
    return result
