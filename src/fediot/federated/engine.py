"""The one federation engine: statistics rounds (scaler, threshold) and the round loop, over any transport.

Pure: no ``flwr``, no file I/O. A :class:`Transport` carries the engine's requests to clients — in this
process (``fediot.sim.runtime.InProcessTransport``: sequential or batched executors) or over Flower's
``Grid`` (``fediot.flower.transport.GridTransport``: ``flwr run`` simulation and real deployments). Both
run exactly this code, so they give the same weights, scaler and threshold for the same configuration.

One run (:func:`run_federation`):

1. **Scaler round**: every available client answers ``feature_stats`` (per-feature sufficient statistics
   of its benign training rows); merged in client-id order they give the federated scaler.
2. **Rounds** (:func:`run_rounds`, the only round loop in fediot): select a seeded random subset of the
   available clients; send them the global weights, the training config and the scaler; validate each
   reply (finite, same shapes as the global model, ``num_examples >= 1``) — a failed or rejected reply is
   counted and left out; aggregate with the strategy; record the round; hand the new state to
   ``on_state`` (the caller checkpoints it).
3. **Threshold round**: every available client answers ``error_stats`` under the final weights; the merged
   summaries give the global threshold, each client's own summary its local threshold.

Randomness: client selection draws from one ``np.random.Generator`` seeded by ``seed``; its state is part of
:class:`EngineState`, so a resumed run selects exactly what an uninterrupted one would.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from fediot.config import FLConfig
from fediot.data.scaling import Scaler, make_scaler, scaler_from_dict
from fediot.detect.threshold import ErrorSummary, ThresholdRule, threshold_from_summaries
from fediot.errors import ConfigError, FediotError
from fediot.federated.events import event
from fediot.federated.privacy import PrivateFederation
from fediot.federated.selection import select_clients
from fediot.federated.statistics import (
    ERROR_STATS,
    FEATURE_STATS,
    decode_summary,
    encode_summary,
    merge_summaries,
    threshold_rule_config,
)
from fediot.federated.strategy import Strategy
from fediot.federated.types import ClientUpdate, Config, Scalar, Weights, weights_nbytes

__all__ = [
    "TRAIN",
    "ClientFailure",
    "EngineState",
    "FederationResult",
    "Reply",
    "Request",
    "RoundFailedError",
    "RoundRecord",
    "SecureAggregate",
    "SecureTransport",
    "Transport",
    "check_update",
    "collect_summaries",
    "run_federation",
    "run_fl",
    "run_rounds",
]

log = logging.getLogger(__name__)


class RoundFailedError(FediotError, RuntimeError):
    """Too few clients replied (or their replies were rejected) for a round or statistics query to count."""


class ClientFailure(Exception):
    """A client did not reply in time, replied with an error, or sent a reply that was rejected."""


TRAIN = "train"
"""The kind of a training request (every other kind names a statistics query)."""


@dataclass(frozen=True, slots=True)
class Request:
    """What the server sends to every addressed client in one exchange.

    Attributes
    ----------
    kind : str
        :data:`TRAIN`, or a statistics query (``feature_stats``, ``error_stats``).
    server_round : int
        The round (0 for the statistics rounds).
    weights : Weights or None
        The global weights (training, ``error_stats``).
    config : Config
        Training instructions, or the query's parameters.
    scaler : Scaler or None
        The federated scaler the client scales its rows with (sent every time: a Flower message may run in
        a fresh process).
    """

    kind: str
    server_round: int
    weights: Weights | None
    config: Config
    scaler: Scaler | None = None


Reply = ClientUpdate | dict[str, Any] | Exception
"""A client's answer: an update (training), an encoded summary (query), or why it failed."""


class Transport(Protocol):
    """Carries the engine's requests to clients and brings their replies back, in request order."""

    def available(self) -> list[str]:
        """Return the ids of the clients that can be asked now, in the order selection draws from."""
        ...

    def send(self, client_ids: Sequence[str], request: Request) -> list[Reply]:
        """Send ``request`` to each of ``client_ids``; return each one's reply or failure, in order."""
        ...


@dataclass(frozen=True, slots=True)
class SecureAggregate:
    """What a secure-aggregation round gives the server: the weighted mean, nothing per client.

    Attributes
    ----------
    weights : Weights
        ``sum_k n_k w_k / sum_k n_k`` over the contributing clients (within the protocol's quantisation).
    contributors : list of str
        The selected clients whose update is in the mean.
    dropped : list of str
        The selected clients whose update is not (they dropped out or failed).
    train_loss : float
        The example-weighted mean of the contributors' training losses (aggregated the same way).
    why_dropped : str
        What the protocol reported about the dropped clients ("" if nothing).
    """

    weights: Weights
    contributors: list[str]
    dropped: list[str]
    train_loss: float
    why_dropped: str = ""


class SecureTransport(Transport, Protocol):
    """A transport that can run a training request as one secure-aggregation round."""

    def send_secure(self, client_ids: Sequence[str], request: Request) -> SecureAggregate:
        """Send the training ``request`` to ``client_ids``; return only the mean of their updates."""
        ...


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
        Example-weighted mean of the accepted replies' ``train_loss`` (NaN if none reported it).
    bytes_sent : int
        Weight payload sent by the server (global weights times selected clients).
    bytes_received : int
        Weight payload of the accepted replies.
    seconds : float
        Wall time of the round.
    failures : int
        Selected clients that failed, timed out, or whose reply was rejected.
    rejected : list of str
        The clients among ``failures`` whose reply arrived but was rejected (non-finite, wrong shape).
    """

    server_round: int
    selected: list[str]
    train_loss: float
    bytes_sent: int
    bytes_received: int
    seconds: float
    failures: int = 0
    rejected: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready values (a NaN loss becomes None)."""
        return {
            "server_round": self.server_round,
            "selected": list(self.selected),
            "train_loss": None if math.isnan(self.train_loss) else self.train_loss,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "seconds": self.seconds,
            "failures": self.failures,
            "rejected": list(self.rejected),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RoundRecord:
        """Inverse of :meth:`to_dict`."""
        loss = d.get("train_loss")
        return cls(
            server_round=int(d["server_round"]),
            selected=[str(s) for s in d["selected"]],
            train_loss=float("nan") if loss is None else float(loss),
            bytes_sent=int(d["bytes_sent"]),
            bytes_received=int(d["bytes_received"]),
            seconds=float(d["seconds"]),
            failures=int(d.get("failures", 0)),
            rejected=[str(s) for s in d.get("rejected", [])],
        )


@dataclass(frozen=True, slots=True)
class EngineState:
    """Everything needed to continue a federation exactly: what a checkpoint holds.

    Attributes
    ----------
    server_round : int
        The last finished round (0: only the scaler round has run).
    weights : Weights
        Global weights after that round.
    strategy : str
        The strategy's name.
    strategy_state : dict
        ``Strategy.state_dict()`` (e.g. the FedAvgM momentum buffer).
    rng_state : dict
        The client-selection generator's ``bit_generator.state``.
    scaler : dict or None
        The federated scaler (``to_dict()``), None when the run has none.
    history : list of RoundRecord
        Every round finished so far (a resumed run appends to it).
    threshold_summaries : dict or None
        After the threshold round: each client's encoded error summary.
    threshold : float or None
        After the threshold round: the global threshold.
    """

    server_round: int
    weights: Weights
    strategy: str
    strategy_state: dict[str, Any]
    rng_state: dict[str, Any]
    scaler: dict[str, Any] | None = None
    history: tuple[RoundRecord, ...] = ()
    threshold_summaries: dict[str, dict[str, Any]] | None = None
    threshold: float | None = None


class RoundHistory:
    """Totals over a run's :class:`RoundRecord` s (``rounds``), shared by every result type."""

    rounds: list[RoundRecord]

    @property
    def bytes_sent(self) -> int:
        """Total weight payload sent by the server."""
        return sum(r.bytes_sent for r in self.rounds)

    @property
    def bytes_received(self) -> int:
        """Total weight payload received from accepted replies."""
        return sum(r.bytes_received for r in self.rounds)


@dataclass(frozen=True, slots=True)
class RoundPlan:
    """How every round selects clients and treats their replies.

    Attributes
    ----------
    fraction_fit : float
        Selection size ``max(min_fit_clients, ceil(fraction_fit * available))``.
    min_fit_clients : int
        A round (and a statistics query) needs at least this many accepted replies.
    fit_config : callable or None
        ``server_round -> Config`` sent to every selected client (``server-round`` is added).
    tolerate_failures : bool
        If False, the first failed or rejected reply raises; if True it is counted and left out.
    secure_aggregation : bool
        Train through ``transport.send_secure`` (:class:`SecureTransport`): the strategy folds the one
        weighted mean it returns (a single update; only strategies that start from the FedAvg mean give
        the same result as on the individual replies, see ``fediot.config.SECURE_STRATEGIES``).
    """

    fraction_fit: float = 1.0
    min_fit_clients: int = 1
    fit_config: Callable[[int], Config] | None = None
    tolerate_failures: bool = False
    secure_aggregation: bool = False


@dataclass(frozen=True, slots=True)
class FederationResult(RoundHistory):
    """The outcome of :func:`run_federation`.

    Attributes
    ----------
    weights : Weights
        Final global weights.
    scaler : Scaler or None
    threshold : float or None
        Global threshold (rule ``rule``) from all clients' summaries.
    local_thresholds : dict of str to float
        Each client's threshold from its own summary (same rule).
    rule : ThresholdRule or None
    rounds : list of RoundRecord
        The whole history (including rounds run before a resume).
    state : EngineState
        The final state (what was last passed to ``on_state``).
    privacy : dict or None
        Differential privacy spent (:meth:`fediot.federated.privacy.PrivacyAccountant.to_dict`), if on.
    """

    weights: Weights
    scaler: Scaler | None
    threshold: float | None
    local_thresholds: dict[str, float]
    rule: ThresholdRule | None
    rounds: list[RoundRecord]
    state: EngineState
    privacy: dict[str, Any] | None = None


def check_update(update: ClientUpdate, reference: Weights) -> str | None:
    """Return why ``update`` must be rejected (shapes, dtype kind, finiteness, count), or None if it is fine.

    Examples
    --------
    >>> w = [np.zeros(2, np.float32)]
    >>> check_update(ClientUpdate([np.ones(2, np.float32)], 3, {}), w) is None
    True
    >>> check_update(ClientUpdate([np.array([1.0, np.nan], np.float32)], 3, {}), w)
    'tensor 0 holds non-finite values'
    """
    if update.num_examples < 1:
        return f"num_examples must be >= 1, got {update.num_examples}"
    if len(update.weights) != len(reference):
        return f"{len(update.weights)} tensors, the global model has {len(reference)}"
    for i, (w, ref) in enumerate(zip(update.weights, reference, strict=True)):
        a = np.asarray(w)
        if a.shape != ref.shape:
            return f"tensor {i} has shape {a.shape}, expected {ref.shape}"
        if a.dtype.kind != "f":
            return f"tensor {i} has dtype {a.dtype}, expected floating point"
        if not np.isfinite(a).all():
            return f"tensor {i} holds non-finite values"
    return None


def _weighted_loss(updates: Sequence[ClientUpdate]) -> float:
    pairs = [(float(u.metrics["train_loss"]), u.num_examples) for u in updates if "train_loss" in u.metrics]
    total = sum(n for _, n in pairs)
    return float("nan") if total == 0 else sum(loss * n for loss, n in pairs) / total


def _new_rng(seed: int, rng_state: Mapping[str, Any] | None) -> np.random.Generator:
    rng = np.random.default_rng(seed)
    if rng_state is not None:
        rng.bit_generator.state = dict(rng_state)
    return rng


def run_rounds(
    transport: Transport,
    strategy: Strategy,
    weights: Weights,
    plan: RoundPlan,
    *,
    rng: np.random.Generator,
    first_round: int,
    last_round: int,
    scaler: Scaler | None = None,
    on_round: Callable[[RoundRecord, Weights], None] | None = None,
) -> tuple[Weights, list[RoundRecord]]:
    """Run rounds ``first_round..last_round``: the one federated round loop.

    Parameters
    ----------
    transport : Transport
    strategy : Strategy
        Holds the server state; ``aggregate`` folds the accepted replies (in selection order).
    weights : Weights
        Global weights before ``first_round``.
    plan : RoundPlan
        Selection size, replies needed, training config, failure tolerance.
    rng : numpy.random.Generator
        Client selection (advanced once per round).
    first_round, last_round : int
        1-based, inclusive.
    scaler : Scaler, optional
        Sent with every training request (clients scale their rows with it).
    on_round : callable, optional
        ``(record, new_weights)`` after each round (progress, checkpoints).

    Returns
    -------
    (Weights, list of RoundRecord)

    Raises
    ------
    RoundFailedError
        If a round gets fewer than ``min_fit_clients`` accepted replies.
    """
    records: list[RoundRecord] = []
    for server_round in range(first_round, last_round + 1):
        t0 = time.perf_counter()
        ids = transport.available()
        if not ids:
            raise RoundFailedError(f"round {server_round}: no clients available")
        selected = select_clients(rng, ids, plan.fraction_fit, min(plan.min_fit_clients, len(ids)))
        config: dict[str, Scalar] = dict(plan.fit_config(server_round) if plan.fit_config else {})
        config["server-round"] = server_round
        request = Request(TRAIN, server_round, weights, config, scaler)
        updates: list[ClientUpdate] = []
        failed: list[str] = []  # no update (failed, timed out, dropped out of a secure round)
        rejected: list[str] = []  # an update that check_update refused
        reasons: list[str] = []
        if plan.secure_aggregation:
            mean, failed = _secure_round(transport, selected, request, weights, plan)
            updates = [mean]
        replies = [] if plan.secure_aggregation else transport.send(selected, request)
        for cid, reply in zip([] if plan.secure_aggregation else selected, replies, strict=True):
            if not isinstance(reply, ClientUpdate):
                failure = reply if isinstance(reply, Exception) else ClientFailure("replied with statistics")
                if not plan.tolerate_failures:
                    raise failure
                failed.append(cid)
                reasons.append(f"{cid}: {failure}")
                log.warning(
                    "round %d: client %s failed: %s",
                    server_round,
                    cid,
                    failure,
                    extra=event("client_failed", server_round=server_round, client=cid, reason=str(failure)),
                )
                continue
            why = check_update(reply, weights)
            if why is not None:
                if not plan.tolerate_failures:
                    raise RoundFailedError(
                        f"round {server_round}: client {cid!r} sent a rejected update: {why}"
                    )
                rejected.append(cid)
                reasons.append(f"{cid}: rejected, {why}")
                log.warning(
                    "round %d: rejected the update of client %s: %s",
                    server_round,
                    cid,
                    why,
                    extra=event("update_rejected", server_round=server_round, client=cid, reason=why),
                )
                continue
            updates.append(reply)
        failures = len(failed) + len(rejected)
        accepted = len(selected) - failures
        if accepted < plan.min_fit_clients:
            raise RoundFailedError(
                f"round {server_round}: only {accepted} of {len(selected)} clients replied with an "
                f"accepted update, fewer than federated.min_fit_clients={plan.min_fit_clients}"
                + (f" (first failure: {reasons[0]})" if reasons else "")
            )
        sent = weights_nbytes(weights) * len(selected)
        weights = strategy.aggregate(server_round, weights, updates)
        record = RoundRecord(
            server_round=server_round,
            selected=selected,
            train_loss=_weighted_loss(updates),
            bytes_sent=sent,
            bytes_received=sum(weights_nbytes(u.weights) for u in updates)
            * (accepted if plan.secure_aggregation else 1),
            seconds=time.perf_counter() - t0,
            failures=failures,
            rejected=rejected,
        )
        records.append(record)
        log.info(
            "round %d/%d: %d/%d replies%s, loss %.6g, %.2f s (selected %s%s)",
            server_round,
            last_round,
            accepted,
            len(selected),
            " (securely aggregated)" if plan.secure_aggregation else "",
            record.train_loss,
            record.seconds,
            ", ".join(selected),
            f"; failed {', '.join(failed + rejected)}" if failed or rejected else "",
            extra=event(
                "round",
                server_round=server_round,
                rounds=last_round,
                selected=selected,
                failed=failed + rejected,
                rejected=rejected,
                replies=accepted,
                secure_aggregation=plan.secure_aggregation,
                train_loss=record.train_loss,
                seconds=record.seconds,
                bytes_sent=record.bytes_sent,
                bytes_received=record.bytes_received,
            ),
        )
        if on_round is not None:
            on_round(record, weights)
    return weights, records


def _secure_round(
    transport: Transport, selected: list[str], request: Request, weights: Weights, plan: RoundPlan
) -> tuple[ClientUpdate, list[str]]:
    """Run ``request`` as one secure-aggregation round; return the mean as one update, and the dropped."""
    send_secure = getattr(transport, "send_secure", None)
    if not callable(send_secure):
        raise ConfigError(
            f"server.secure_aggregation needs the Flower transport; {type(transport).__name__} has none"
        )
    try:
        summed: SecureAggregate = send_secure(selected, request)
    except ClientFailure as exc:
        raise RoundFailedError(f"round {request.server_round}: {exc}") from None
    if summed.dropped:
        detail = f" ({summed.why_dropped})" if summed.why_dropped else ""
        failure = ClientFailure(f"dropped out of the secure aggregation: {', '.join(summed.dropped)}{detail}")
        if not plan.tolerate_failures:
            raise failure
        log.warning(
            "round %d: %s",
            request.server_round,
            failure,
            extra=event(
                "client_failed",
                server_round=request.server_round,
                clients=summed.dropped,
                reason=str(failure),
            ),
        )
    update = ClientUpdate(summed.weights, max(1, len(summed.contributors)), {"train_loss": summed.train_loss})
    why = check_update(update, weights)
    if why is not None:
        raise RoundFailedError(f"round {request.server_round}: the securely aggregated mean is bad: {why}")
    return update, summed.dropped


def collect_summaries(
    transport: Transport,
    name: str,
    *,
    weights: Weights | None,
    scaler: Scaler | None,
    config: Config,
    min_replies: int,
    tolerate_failures: bool,
) -> dict[str, ErrorSummary]:
    """Ask every available client for the statistics ``name``; return the valid summaries by client id.

    Raises
    ------
    RoundFailedError
        If fewer than ``min_replies`` valid summaries arrive (or, without ``tolerate_failures``, any fails).
    """
    ids = transport.available()
    replies = transport.send(ids, Request(name, 0, weights, config, scaler))
    out: dict[str, ErrorSummary] = {}
    reasons: list[str] = []
    for cid, reply in zip(ids, replies, strict=True):
        try:
            if isinstance(reply, Exception):
                raise reply
            if not isinstance(reply, dict):
                raise ClientFailure("replied with an update instead of statistics")
            out[cid] = decode_summary(reply)
        except Exception as exc:
            if not tolerate_failures:
                raise RoundFailedError(f"{name}: client {cid!r} failed: {exc}") from None
            reasons.append(f"{cid}: {exc}")
            log.warning(
                "%s: client %s left out: %s",
                name,
                cid,
                exc,
                extra=event("statistics_left_out", query=name, client=cid, reason=str(exc)),
            )
    if len(out) < min_replies:
        raise RoundFailedError(
            f"{name}: only {len(out)} of {len(ids)} clients sent valid statistics, "
            f"fewer than federated.min_fit_clients={min_replies}"
            + (f" (first failure: {reasons[0]})" if reasons else "")
        )
    return out


def _threshold_of(summary: ErrorSummary, rule: ThresholdRule) -> float:
    try:
        return threshold_from_summaries([summary], rule)
    except FediotError:
        return float("nan")


def run_federation(
    transport: Transport,
    strategy: Strategy,
    initial_weights: Weights,
    plan: RoundPlan,
    *,
    seed: int,
    rounds: int,
    scaler_kind: str | None = None,
    threshold_rule: ThresholdRule | None = None,
    statistics_rule: str = "sum",
    statistics_trim: float = 0.2,
    state: EngineState | None = None,
    on_round: Callable[[RoundRecord], None] | None = None,
    on_state: Callable[[EngineState], None] | None = None,
    privacy: PrivateFederation | None = None,
) -> FederationResult:
    """Run a whole federation: scaler round, ``rounds`` training rounds, threshold round.

    Parameters
    ----------
    transport : Transport
    strategy : Strategy
    initial_weights : Weights
        The global model before round 1 (ignored when resuming from ``state``).
    plan : RoundPlan
        As in :func:`run_rounds`; ``min_fit_clients`` also bounds the statistics rounds' replies.
    seed : int
        Seeds client selection.
    rounds : int
        The round to reach (a resumed run continues from ``state.server_round + 1``).
    scaler_kind : str, optional
        Federated scaler kind (``fediot.data.scaling.SCALER_KINDS``); None: clients scale as built.
    threshold_rule : ThresholdRule, optional
        Set the federated threshold after the last round; None: no threshold round.
    statistics_rule, statistics_trim : str, float
        How the scaler's and the threshold's per-client statistics are combined
        (:func:`fediot.federated.statistics.merge_summaries`: ``sum``, ``trimmed``, ``median``).
    state : EngineState, optional
        Resume from this state (a checkpoint); its strategy must be ``strategy.name``.
    on_round : callable, optional
        Each finished :class:`RoundRecord` (progress).
    on_state : callable, optional
        Each new :class:`EngineState`: after the scaler round, after every round and after the threshold
        round (the caller writes checkpoints and history).
    privacy : PrivateFederation, optional
        Differential privacy (``strategy`` is already wrapped by it): merges the statistics rounds.

    Returns
    -------
    FederationResult
    """

    # privacy hook: the statistics rounds are merged privately (and charged) when it asks for it
    def merge(name: str, summaries: Mapping[str, ErrorSummary]) -> ErrorSummary:
        if privacy is not None:
            return privacy.merge(name, summaries)
        return merge_summaries(summaries, statistics_rule, statistics_trim)

    if rounds < 0:
        raise ConfigError(f"federated.rounds must be >= 0, got {rounds}")
    if state is not None:
        if state.strategy != strategy.name:
            raise ConfigError(
                f"the checkpoint holds strategy {state.strategy!r}, the configuration says {strategy.name!r}"
            )
        if state.server_round > rounds:
            raise ConfigError(
                f"the checkpoint is at round {state.server_round}, past federated.rounds={rounds}"
            )
        strategy.load_state_dict(state.strategy_state)
        rng = _new_rng(seed, state.rng_state)
        weights = [np.array(w, dtype=np.float32) for w in state.weights]
        scaler = None if state.scaler is None else scaler_from_dict(state.scaler)
        if _scaler_name(state.scaler) != scaler_kind:
            raise ConfigError(f"the checkpoint's scaler does not match train.scaler={scaler_kind!r}")
        current = state
    else:
        rng = _new_rng(seed, None)
        weights = [np.array(w, dtype=np.float32) for w in initial_weights]
        scaler = None
        if scaler_kind is not None:
            stats = collect_summaries(
                transport,
                FEATURE_STATS,
                weights=None,
                scaler=None,
                config={"scaler": scaler_kind},
                min_replies=plan.min_fit_clients,
                tolerate_failures=plan.tolerate_failures,
            )
            merged = merge(FEATURE_STATS, stats)
            if not hasattr(merged, "mean"):
                raise RoundFailedError("feature_stats: clients sent histograms instead of feature statistics")
            scaler = make_scaler(scaler_kind, merged)  # type: ignore[arg-type]
            log.info(
                "federated %s scaler from %d clients",
                scaler_kind,
                len(stats),
                extra=event("scaler", scaler=scaler_kind, clients=len(stats)),
            )
        current = EngineState(
            server_round=0,
            weights=weights,
            strategy=strategy.name,
            strategy_state=strategy.state_dict(),
            rng_state=dict(rng.bit_generator.state),
            scaler=None if scaler is None else scaler.to_dict(),
        )
        if on_state is not None:
            on_state(current)
    history = list(current.history)

    def _after_round(record: RoundRecord, new_weights: Weights) -> None:
        nonlocal current
        history.append(record)
        current = replace(
            current,
            server_round=record.server_round,
            weights=new_weights,
            strategy_state=strategy.state_dict(),
            rng_state=dict(rng.bit_generator.state),
            history=tuple(history),
            threshold_summaries=None,  # a threshold belongs to the weights it was computed under
            threshold=None,
        )
        if on_state is not None:
            on_state(current)
        if on_round is not None:
            on_round(record)

    weights, _ = run_rounds(
        transport,
        strategy,
        weights,
        plan,
        rng=rng,
        first_round=current.server_round + 1,
        last_round=rounds,
        scaler=scaler,
        on_round=_after_round,
    )
    threshold: float | None = None
    local: dict[str, float] = {}
    if threshold_rule is not None:
        if current.threshold_summaries is not None and current.threshold is not None:
            summaries = {cid: decode_summary(d) for cid, d in current.threshold_summaries.items()}
            threshold = current.threshold
        else:
            summaries = collect_summaries(
                transport,
                ERROR_STATS,
                weights=weights,
                scaler=scaler,
                config=threshold_rule_config(threshold_rule),
                min_replies=plan.min_fit_clients,
                tolerate_failures=plan.tolerate_failures,
            )
            threshold = threshold_from_summaries([merge(ERROR_STATS, summaries)], threshold_rule)
            current = replace(
                current,
                strategy_state=strategy.state_dict(),  # privacy: the accountant charged the release
                threshold_summaries={cid: encode_summary(s) for cid, s in summaries.items()},
                threshold=threshold,
            )
            if on_state is not None:
                on_state(current)
            log.info(
                "federated threshold %.6g from %d clients",
                threshold,
                len(summaries),
                extra=event("threshold", threshold=threshold, clients=len(summaries)),
            )
        local = {cid: _threshold_of(s, threshold_rule) for cid, s in sorted(summaries.items())}
    return FederationResult(
        weights=weights,
        scaler=scaler,
        threshold=threshold,
        local_thresholds=local,
        rule=threshold_rule,
        rounds=history,
        state=current,
        privacy=None if privacy is None else privacy.accountant.to_dict(),
    )


def _scaler_name(d: Mapping[str, Any] | None) -> str | None:
    """``log-minmax`` etc. for a scaler's ``to_dict()`` form (None for no scaler)."""
    if d is None:
        return None
    return f"{'log-' if d.get('log') else ''}{d.get('kind')}"


def run_fl(
    transport: Transport,
    cfg: FLConfig,
    initial_weights: Weights,
    *,
    min_fit_clients: int | None = None,
    state: EngineState | None = None,
    on_round: Callable[[RoundRecord], None] | None = None,
    on_state: Callable[[EngineState], None] | None = None,
) -> FederationResult:
    """Run the federation that ``cfg`` describes (every transport calls this).

    The strategy, the per-round training config, the federated scaler (``train.scaler``) and the threshold
    rule (``detect``) all come from ``cfg`` through :mod:`fediot.federated.settings`. ``min_fit_clients``
    overrides ``federated.min_fit_clients`` (experiments with fewer clients than that).
    """
    from fediot.federated.settings import fit_config, strategy_for, threshold_rule

    fed = cfg.federated
    strategy, train_config = strategy_for(cfg), fit_config(cfg)
    privacy: PrivateFederation | None = None
    if cfg.privacy.enabled:  # privacy hook: wrap the strategy, add local-DP instructions
        from fediot.federated.privacy import setup_privacy

        privacy = setup_privacy(
            cfg,
            population=len(transport.available()),
            min_fit_clients=fed.min_fit_clients if min_fit_clients is None else min_fit_clients,
            statistics_rounds=int(cfg.train.scaler is not None) + 1,
        )
        strategy, base_config = privacy.wrap(strategy), train_config
        train_config = lambda r: privacy.fit_config(base_config(r))  # noqa: E731
    plan = RoundPlan(
        fraction_fit=fed.fraction_fit,
        min_fit_clients=fed.min_fit_clients if min_fit_clients is None else min_fit_clients,
        fit_config=train_config,
        tolerate_failures=fed.tolerate_failures,
        secure_aggregation=cfg.server.secure_aggregation,
    )
    return run_federation(
        transport,
        strategy,
        initial_weights,
        plan,
        seed=cfg.seed,
        rounds=fed.rounds,
        scaler_kind=cfg.train.scaler,
        threshold_rule=threshold_rule(cfg.detect),
        statistics_rule=fed.statistics,
        statistics_trim=fed.statistics_trim,
        state=state,
        on_round=on_round,
        on_state=on_state,
        privacy=privacy,
    )
