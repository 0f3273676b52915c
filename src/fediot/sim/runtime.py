"""The in-process transport of the federation engine: clients are objects in this process.

:class:`InProcessTransport` carries :mod:`fediot.federated.engine`'s requests to :class:`Client` objects,
training each round's selected clients with an :class:`Executor` (one after another, or all at once with
``fediot.sim.batched.BatchedAutoencoderExecutor``). :func:`run_rounds` is the engine's round loop over it,
for runs without statistics rounds (e.g. the KDD classifier experiment).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from fediot.data.scaling import Scaler
from fediot.errors import ConfigError
from fediot.federated import engine
from fediot.federated.client import Client, answer_query
from fediot.federated.engine import TRAIN, Reply, Request, RoundHistory, RoundRecord
from fediot.federated.privacy import apply_local_dp
from fediot.federated.strategy import Strategy
from fediot.federated.types import ClientUpdate, Config, Weights

__all__ = ["Executor", "InProcessTransport", "RoundRecord", "SequentialExecutor", "SimResult", "run_rounds"]


@dataclass(slots=True)
class SimResult(RoundHistory):
    """The outcome of :func:`run_rounds`: final global weights and the per-round history."""

    weights: Weights
    rounds: list[RoundRecord] = field(default_factory=list)
    rng_state: dict[str, Any] | None = None
    """Client-selection generator state after the last round (pass it back to resume)."""


class Executor(Protocol):
    """Runs the ``fit`` calls of one round's selected clients."""

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


class InProcessTransport:
    """The engine's transport to client objects in this process.

    Parameters
    ----------
    clients : mapping of str to Client
        Available clients by id; iteration order is the order selection draws from.
    executor : Executor, optional
        Runs each round's ``fit`` calls (default :class:`SequentialExecutor`).
    fail_fast : bool
        Let a client's exception propagate at once (the engine raises it anyway without tolerance).
    """

    def __init__(
        self, clients: Mapping[str, Client], executor: Executor | None = None, *, fail_fast: bool = False
    ) -> None:
        if not clients:
            raise ConfigError("no clients to train")
        self.clients = dict(clients)
        self.executor: Executor = SequentialExecutor() if executor is None else executor
        self.fail_fast = fail_fast
        self._scaled_with: dict[str, int] = {}

    def available(self) -> list[str]:
        """Every client, in the mapping's order."""
        return list(self.clients)

    def _apply(self, client_ids: Sequence[str], scaler: Scaler | None) -> None:
        """Give each client the server's scaler once (what Flower sends with every message)."""
        if scaler is None:
            return
        for cid in client_ids:
            if self._scaled_with.get(cid) != id(scaler):
                set_scaler = getattr(self.clients[cid], "set_scaler", None)
                if not callable(set_scaler):
                    raise TypeError(f"client {cid!r} cannot apply a scaler")
                set_scaler(scaler)
                self._scaled_with[cid] = id(scaler)

    def send(self, client_ids: Sequence[str], request: Request) -> list[Reply]:
        """Train the selected clients with the executor, or answer a statistics query on each."""
        self._apply(client_ids, request.scaler)
        clients = [self.clients[cid] for cid in client_ids]
        if request.kind == TRAIN:
            if request.weights is None:
                raise ValueError("a training request needs the global weights")
            replies = list(
                self.executor.fit_round(clients, request.weights, request.config, fail_fast=self.fail_fast)
            )
            # local DP (privacy.mechanism='local'): each client privatises its own reply, with its own noise
            return [
                apply_local_dp(reply, request.weights, request.config, _local_noise(c, request.server_round))
                for c, reply in zip(clients, replies, strict=True)
            ]
        out: list[Reply] = []
        for client in clients:
            try:
                out.append(answer_query(client, request.kind, request.weights, request.config))
            except Exception as exc:
                if self.fail_fast:
                    raise
                out.append(exc)
        return out


def _local_noise(client: Client, server_round: int) -> np.random.Generator:
    """Return one client's local-DP noise for one round, seeded by the client's seed (not the server's)."""
    seed = getattr(client, "seed", 0)
    digest = zlib.crc32(client.client_id.encode())
    return np.random.default_rng(np.random.SeedSequence([int(seed), digest, server_round, 15]))


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
    """Run ``num_rounds`` federated rounds in this process with the engine's round loop.

    Each round: select clients with a generator seeded by ``seed`` (one stream for the whole run),
    call ``fit`` on each with the current global weights and ``fit_config(server_round)`` (plus
    ``server-round``), and let ``strategy`` aggregate the accepted replies.

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
        At least this many are selected and must reply.
    seed : int
        Seeds client selection.
    fit_config : callable, optional
        ``server_round -> Config`` sent to every selected client.
    on_round : callable, optional
        Called with each finished :class:`RoundRecord` (progress reporting).
    tolerate_failures : bool
        If True, a client that raises (or sends a non-finite or wrongly shaped update) is logged and
        counted, and the round aggregates the others; if False the error propagates.
    start_round : int
        First round to run (resume: the last finished round + 1, with ``initial_weights`` and the
        strategy's state restored from that round).
    rng_state : mapping, optional
        ``SimResult.rng_state`` of the run being resumed (replaces the state seeded by ``seed``).
    executor : Executor, optional
        Runs each round's ``fit`` calls; default :class:`SequentialExecutor`.

    Returns
    -------
    SimResult
    """
    if num_rounds < 0:
        raise ConfigError(f"num_rounds must be >= 0, got {num_rounds}")
    if start_round < 1:
        raise ConfigError(f"start_round must be >= 1, got {start_round}")
    transport = InProcessTransport(clients, executor, fail_fast=not tolerate_failures)
    rng = np.random.default_rng(seed)
    if rng_state is not None:
        rng.bit_generator.state = dict(rng_state)
    plan = engine.RoundPlan(fraction_fit, min_fit_clients, fit_config, tolerate_failures)
    weights, records = engine.run_rounds(
        transport,
        strategy,
        [w.copy() for w in initial_weights],
        plan,
        rng=rng,
        first_round=start_round,
        last_round=num_rounds,
        on_round=None if on_round is None else (lambda record, _w: on_round(record)),
    )
    return SimResult(weights=weights, rounds=records, rng_state=dict(rng.bit_generator.state))
