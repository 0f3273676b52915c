"""Flower ServerApp adapter: our strategies and seeded selection over Flower's Grid/Message API."""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fediot.errors import ConfigError
from fediot.federated.selection import select_clients
from fediot.federated.strategy import Strategy, make_strategy
from fediot.federated.types import ClientUpdate, Scalar, Weights, weights_nbytes
from fediot.flower.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from fediot.flower.client_app import CLIENT_ID_KEY, IDENTIFY, SCALER_KIND_KEY
from fediot.flower.codec import (
    ARRAYS_KEY,
    CONFIG_KEY,
    config_to_configrecord,
    import_flwr,
    recorddict_to_statistics,
    recorddict_to_update,
    scaler_to_records,
    weights_to_arrayrecord,
)
from fediot.sim.runtime import RoundRecord, SimResult

if TYPE_CHECKING:
    from flwr.app import Context, Message, RecordDict
    from flwr.serverapp import Grid, ServerApp

    from fediot.data.scaling import Scaler, SufficientStats

__all__ = [
    "ServerConfig",
    "ServerResult",
    "discover_clients",
    "federated_scaler",
    "federated_threshold",
    "make_server_app",
    "query_statistics",
    "run_server",
    "save_detector",
    "send_and_receive",
    "write_history",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """What the ServerApp runs (the run config's kebab-case keys map to these fields).

    Parameters
    ----------
    num_rounds : int
        Rounds to reach (a resumed run continues up to this round).
    strategy : {"fedavg", "fedavgm"}
    server_learning_rate, server_momentum : float
        FedAvgM's ``eta`` and ``beta``.
    fraction_fit : float
        Fraction of known clients selected per round, in (0, 1].
    min_fit_clients : int
        At least this many are selected, and at least this many must reply for a round to count.
    min_available_clients : int
        Wait (up to ``connect_timeout``) until this many nodes have identified themselves.
    seed : int
        Seeds client selection (one ``np.random.Generator`` stream for the run).
    round_timeout : float
        Seconds to wait for the replies of one round; missing replies count as failures.
    connect_timeout : float
        Seconds to wait for ``min_available_clients`` nodes.
    poll_interval : float
        Seconds between two polls for replies (Flower's own ``send_and_receive`` waits 3 s).
    fit_config : mapping of str to scalar
        Sent to every selected client each round (plus ``server-round``).
    checkpoint_path : str or None
        ``.npz`` file written atomically after every round.
    resume : bool
        Continue from ``checkpoint_path`` when it exists.
    history_path : str or None
        JSON file rewritten atomically after every round: one entry per round (``server_round``,
        ``selected``, ``train_loss``, ``seconds``, ``failures``, bytes) and ``finished``.
    scaler : str or None
        Federated scaler kind (``fediot.data.scaling.SCALER_KINDS``, e.g. ``log-minmax``). When set,
        before round 1 every known node answers a ``feature_stats`` query for this kind; the merged
        statistics give the scaler (``make_scaler``), sent with every ``train`` and ``error_stats``
        message; after the last round every node answers an ``error_stats`` query under the final
        weights and the merged statistics give the threshold. None: clients scale as they were built.
    threshold_k : float
        The threshold is ``mean + threshold_k * std`` of the opt-row reconstruction errors (N-BaIoT: 1).
    detector_path : str or None
        With ``scaler``: the final ``AnomalyDetector`` (global weights, federated scaler and threshold) is
        saved there (``.pt``, atomically) after the last round.
    feature_names : tuple of str or None
        Column names recorded in the saved detector (checked when it scores a DataFrame).
    """

    num_rounds: int
    strategy: str = "fedavgm"
    server_learning_rate: float = 1.0
    server_momentum: float = 0.9
    fraction_fit: float = 1.0
    min_fit_clients: int = 1
    min_available_clients: int = 1
    seed: int = 0
    round_timeout: float = 600.0
    connect_timeout: float = 300.0
    poll_interval: float = 0.2
    fit_config: Mapping[str, Scalar] = field(default_factory=dict)
    checkpoint_path: str | None = None
    resume: bool = False
    history_path: str | None = None
    scaler: str | None = None
    threshold_k: float = 1.0
    detector_path: str | None = None
    feature_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.num_rounds < 0:
            raise ConfigError(f"num-server-rounds must be >= 0, got {self.num_rounds}")
        if not 0.0 < self.fraction_fit <= 1.0:
            raise ConfigError(f"fraction-fit must be in (0, 1], got {self.fraction_fit}")
        if self.min_fit_clients < 1 or self.min_available_clients < self.min_fit_clients:
            raise ConfigError("need 1 <= min-fit-clients <= min-available-clients")
        if self.round_timeout <= 0 or self.connect_timeout <= 0 or self.poll_interval <= 0:
            raise ConfigError("round-timeout, connect-timeout and poll-interval must be > 0")
        if self.resume and not self.checkpoint_path:
            raise ConfigError("resume needs a checkpoint-path")
        if self.scaler is not None:
            from fediot.data.scaling import SCALER_KINDS

            if self.scaler not in SCALER_KINDS:
                raise ConfigError(
                    f"scaler must be one of {', '.join(SCALER_KINDS)} or empty, got {self.scaler!r}"
                )
        if self.detector_path and self.scaler is None:
            raise ConfigError('detector-path needs a scaler (e.g. scaler = "log-minmax")')
        if not self.threshold_k >= 0:
            raise ConfigError(f"threshold-k must be >= 0, got {self.threshold_k}")

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> ServerConfig:
        """Build from Flower's run config (``[tool.flwr.app.config]``, kebab-case keys).

        Keys not listed below are forwarded to clients as ``fit_config`` (e.g. ``local-epochs``, ``lr``).
        An empty ``scaler``, ``detector-path``, ``checkpoint-path`` or ``history-path`` means none;
        ``feature-names`` is ``"nbaiot"`` (the 115 N-BaIoT columns), a comma-separated list, or empty.
        """
        own: dict[str, tuple[str, Callable[[Any], Any]]] = {
            "num-server-rounds": ("num_rounds", int),
            "strategy": ("strategy", str),
            "server-lr": ("server_learning_rate", float),
            "server-momentum": ("server_momentum", float),
            "fraction-fit": ("fraction_fit", float),
            "min-fit-clients": ("min_fit_clients", int),
            "min-available-clients": ("min_available_clients", int),
            "seed": ("seed", int),
            "round-timeout": ("round_timeout", float),
            "connect-timeout": ("connect_timeout", float),
            "poll-interval": ("poll_interval", float),
            "checkpoint-path": ("checkpoint_path", str),
            "resume": ("resume", bool),
            "history-path": ("history_path", str),
            "scaler": ("scaler", str),
            "threshold-k": ("threshold_k", float),
            "detector-path": ("detector_path", str),
            "feature-names": ("feature_names", _feature_names),
        }
        kwargs: dict[str, Any] = {}
        fit_config: dict[str, Scalar] = {}
        for key, value in run_config.items():
            if key in own:
                name, cast = own[key]
                kwargs[name] = cast(value)
            elif key not in ("num-features", "model") and isinstance(value, bool | int | float | str):
                fit_config[key] = value
        for optional in ("checkpoint_path", "history_path", "scaler", "detector_path"):
            if kwargs.get(optional) == "":
                kwargs[optional] = None
        if "num_rounds" not in kwargs:
            raise ConfigError("run config needs num-server-rounds")
        return cls(**kwargs, fit_config=fit_config)


def _feature_names(value: Any) -> tuple[str, ...] | None:
    text = str(value).strip()
    if not text:
        return None
    if text == "nbaiot":
        from fediot.data.nbaiot import nbaiot_feature_names

        return nbaiot_feature_names()
    return tuple(name.strip() for name in text.split(","))


@dataclass(slots=True)
class ServerResult(SimResult):
    """:class:`SimResult` plus the federated scaler and threshold (None when ``scaler`` is not set)."""

    scaler: Scaler | None = None
    threshold: float | None = None
    detector_path: str | None = None


def _message(content: RecordDict, node_id: int, message_type: str, server_round: int) -> Message:
    import_flwr()
    from flwr.app import Message

    return Message(content, dst_node_id=node_id, message_type=message_type, group_id=str(server_round))


def send_and_receive(
    grid: Grid, messages: Sequence[Message], *, timeout: float, poll_interval: float = 0.2
) -> list[Message | None]:
    """Push ``messages``; collect their replies until all arrived or ``timeout`` seconds passed.

    Like ``Grid.send_and_receive``, but polls every ``poll_interval`` seconds instead of every 3 s
    (the SuperLink's HTTP grid), and returns the replies aligned with ``messages`` (None: no reply
    in time). The SuperLink answers for a node that went offline with an error reply
    (``NODE_UNAVAILABLE``, sent from the SuperLink's own node id, hence the alignment by message id).
    """
    sent = [str(i) for i in grid.push_messages(messages)]
    if len(sent) != len(messages):
        raise RuntimeError(f"pushed {len(messages)} messages, the SuperLink accepted {len(sent)}")
    pending = set(sent)
    deadline = time.monotonic() + timeout
    by_id: dict[str, Message] = {}
    while pending:
        for reply in grid.pull_messages(pending):
            by_id[reply.metadata.reply_to_message_id] = reply
        pending -= by_id.keys()
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(min(poll_interval, max(0.0, deadline - time.monotonic())))
    return [by_id.get(i) for i in sent]


def discover_clients(
    grid: Grid, known: Mapping[int, str], *, timeout: float, poll_interval: float = 0.2
) -> dict[int, str]:
    """Ask every connected node not in ``known`` for its client id; return ``{node_id: client_id}``.

    Nodes that are no longer connected are dropped; nodes that do not answer within ``timeout`` are
    skipped (asked again next time).
    """
    import_flwr()
    from flwr.app import RecordDict

    connected = list(grid.get_node_ids())
    found = {nid: cid for nid, cid in known.items() if nid in connected}
    new = [nid for nid in connected if nid not in found]
    if new:
        messages = [_message(RecordDict(), nid, f"query.{IDENTIFY}", 0) for nid in new]
        replies = send_and_receive(grid, messages, timeout=timeout, poll_interval=poll_interval)
        for nid, reply in zip(new, replies, strict=True):
            if reply is None:
                log.warning("node %d did not identify within %.0f s", nid, timeout)
            elif reply.has_error():
                log.warning("node %d failed to identify: %s", nid, reply.error.reason)
            else:
                found[nid] = str(reply.content.config_records[CONFIG_KEY][CLIENT_ID_KEY])
    ids = list(found.values())
    if len(set(ids)) != len(ids):
        raise ConfigError(f"two SuperNodes report the same client-id: {sorted(ids)}")
    return found


def write_history(path: str | Path, rounds: Sequence[RoundRecord], *, finished: bool) -> None:
    """Write the round records as JSON to ``path`` atomically (temp file in the same folder, then replace).

    ``{"finished": bool, "rounds": [{"server_round", "selected", "train_loss", "bytes_sent",
    "bytes_received", "seconds", "failures"}, ...]}``; a NaN loss is written as null.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    entries = [
        {**asdict(r), "train_loss": None if math.isnan(r.train_loss) else r.train_loss} for r in rounds
    ]
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"finished": finished, "rounds": entries}, f, indent=1)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _wait_for_clients(grid: Grid, config: ServerConfig) -> dict[int, str]:
    deadline = time.monotonic() + config.connect_timeout
    nodes: dict[int, str] = {}
    while True:
        nodes = discover_clients(
            grid, nodes, timeout=min(config.round_timeout, 60.0), poll_interval=config.poll_interval
        )
        if len(nodes) >= config.min_available_clients:
            return nodes
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"only {len(nodes)} clients connected within {config.connect_timeout:.0f} s, "
                f"need min-available-clients={config.min_available_clients}"
            )
        time.sleep(1.0)


def _train_round(
    grid: Grid,
    nodes: Mapping[int, str],
    selected: list[str],
    weights: Weights,
    config: ServerConfig,
    server_round: int,
    scaler: Scaler | None = None,
) -> tuple[list[ClientUpdate], int]:
    import_flwr()
    from flwr.app import RecordDict

    by_client = {cid: nid for nid, cid in nodes.items()}
    fit_config: dict[str, Scalar] = {**config.fit_config, "server-round": server_round}
    records: dict[str, Any] = {
        ARRAYS_KEY: weights_to_arrayrecord(weights),
        CONFIG_KEY: config_to_configrecord(fit_config),
    }
    if scaler is not None:
        records.update(scaler_to_records(scaler))
    content = RecordDict(records)
    messages = [_message(content, by_client[cid], "train", server_round) for cid in selected]
    replies = send_and_receive(
        grid, messages, timeout=config.round_timeout, poll_interval=config.poll_interval
    )
    updates: list[ClientUpdate] = []
    failures = 0
    for cid, reply in zip(selected, replies, strict=True):  # in selection order, as run_rounds does
        if reply is None:
            failures += 1
            log.warning(
                "round %d: client %s did not reply within %.0f s", server_round, cid, config.round_timeout
            )
        elif reply.has_error():
            failures += 1
            log.warning("round %d: client %s failed: %s", server_round, cid, reply.error.reason)
        else:
            updates.append(recorddict_to_update(reply.content))
    return updates, failures


def query_statistics(
    grid: Grid,
    nodes: Mapping[int, str],
    query: str,
    config: ServerConfig,
    *,
    weights: Weights | None = None,
    scaler: Scaler | None = None,
    query_config: Mapping[str, Scalar] | None = None,
) -> dict[str, SufficientStats]:
    """Send the statistics query ``query.<query>`` to every node in ``nodes``; return answers by client id.

    The message carries ``weights`` (``arrays``), ``scaler`` and ``query_config`` when given; the replies
    are sufficient statistics (per-feature or per-column arrays and a count), never rows. Nodes that do
    not answer within ``round_timeout`` or answer with an error are left out (logged).

    Raises
    ------
    RuntimeError
        If fewer than ``min_fit_clients`` nodes answered.
    """
    import_flwr()
    from flwr.app import RecordDict

    from fediot.data.scaling import SufficientStats

    records: dict[str, Any] = {}
    if weights is not None:
        records[ARRAYS_KEY] = weights_to_arrayrecord(weights)
    if query_config:
        records[CONFIG_KEY] = config_to_configrecord(dict(query_config))
    if scaler is not None:
        records.update(scaler_to_records(scaler))
    order = sorted(nodes, key=lambda nid: nodes[nid])
    messages = [_message(RecordDict(records), nid, f"query.{query}", 0) for nid in order]
    replies = send_and_receive(
        grid, messages, timeout=config.round_timeout, poll_interval=config.poll_interval
    )
    out: dict[str, SufficientStats] = {}
    for nid, reply in zip(order, replies, strict=True):
        cid = nodes[nid]
        if reply is None:
            log.warning("%s: client %s did not reply within %.0f s", query, cid, config.round_timeout)
        elif reply.has_error():
            log.warning("%s: client %s failed: %s", query, cid, reply.error.reason)
        else:
            arrays, count = recorddict_to_statistics(reply.content)
            out[cid] = SufficientStats.from_dict({**arrays, "count": count})
    if len(out) < config.min_fit_clients:
        raise RuntimeError(
            f"{query}: only {len(out)} of {len(nodes)} clients replied, "
            f"fewer than min-fit-clients={config.min_fit_clients}"
        )
    return out


def _merge(stats: Mapping[str, SufficientStats]) -> SufficientStats:
    """Merge in sorted client-id order (deterministic rounding, as the in-process reference can repeat)."""
    ids = sorted(stats)
    merged = stats[ids[0]]
    for cid in ids[1:]:
        merged = merged.merge(stats[cid])
    return merged


def federated_scaler(grid: Grid, nodes: Mapping[int, str], config: ServerConfig) -> Scaler:
    """Fit the ``config.scaler`` scaler from every node's ``feature_stats`` (merged in client-id order)."""
    from fediot.data.scaling import make_scaler

    if config.scaler is None:
        raise ConfigError("federated_scaler needs ServerConfig.scaler")
    stats = query_statistics(
        grid, nodes, "feature_stats", config, query_config={SCALER_KIND_KEY: config.scaler}
    )
    return make_scaler(config.scaler, _merge(stats))


def federated_threshold(
    grid: Grid, nodes: Mapping[int, str], weights: Weights, scaler: Scaler, config: ServerConfig
) -> float:
    """``mean + k * std`` of the reconstruction errors from every node's ``error_stats`` under ``weights``."""
    from fediot.detect.threshold import threshold_from_stats

    stats = query_statistics(grid, nodes, "error_stats", config, weights=weights, scaler=scaler)
    return threshold_from_stats(_merge(stats), k=config.threshold_k)


def save_detector(
    path: str | Path,
    weights: Weights,
    scaler: Scaler,
    threshold: float,
    *,
    feature_names: Sequence[str] | None = None,
    threshold_k: float = 1.0,
) -> Path:
    """Assemble the federated ``AnomalyDetector`` and save it to ``path`` atomically; return the path.

    The autoencoder has the default N-BaIoT ratios and ``scaler.num_features`` inputs (as the ServerApp's
    initial model).
    """
    from fediot.detect.detector import AnomalyDetector
    from fediot.detect.threshold import ThresholdRule
    from fediot.models.autoencoder import AutoencoderConfig

    detector = AnomalyDetector.from_parts(
        weights,
        scaler,
        threshold,
        config=AutoencoderConfig(scaler.num_features),
        feature_names=feature_names,
        threshold_rule=ThresholdRule(k=threshold_k),
    )
    return detector.save(path)


def run_server(
    grid: Grid,
    config: ServerConfig,
    initial_weights: Weights,
    *,
    on_round: Callable[[RoundRecord], None] | None = None,
) -> ServerResult:
    """Run ``config.num_rounds`` rounds over ``grid`` with our strategy and our seeded client selection.

    With ``config.scaler`` set, first fit the federated scaler (:func:`federated_scaler`) from the nodes
    known then. Each round: refresh the known clients, select ``select_clients(rng, sorted client ids,
    ...)``, send ``train`` messages (with the scaler), wait up to ``round_timeout``, aggregate the replies
    that arrived (in selection order) if at least ``min_fit_clients`` did, and checkpoint. With
    ``config.scaler`` set, finally fit the federated threshold (:func:`federated_threshold`) under the
    final weights and, with ``config.detector_path``, save the detector (:func:`save_detector`).

    Returns
    -------
    ServerResult
        Final weights, the records of the rounds run by this call, and the scaler and threshold.
    """
    strategy: Strategy = make_strategy(
        config.strategy,
        server_learning_rate=config.server_learning_rate,
        server_momentum=config.server_momentum,
    )
    rng = np.random.default_rng(config.seed)
    weights = [w.copy() for w in initial_weights]
    start = 1
    if config.resume and config.checkpoint_path and Path(config.checkpoint_path).exists():
        ckpt = load_checkpoint(config.checkpoint_path)
        if ckpt.strategy != strategy.name:
            raise ConfigError(
                f"checkpoint holds strategy {ckpt.strategy!r}, run config says {strategy.name!r}"
            )
        weights = ckpt.weights
        strategy.load_state_dict(ckpt.strategy_state)
        rng.bit_generator.state = ckpt.rng_state
        start = ckpt.server_round + 1
        log.info("resuming after round %d from %s", ckpt.server_round, config.checkpoint_path)
    result = ServerResult(weights=weights)
    nodes = _wait_for_clients(grid, config)
    scaler: Scaler | None = None
    if config.scaler is not None:
        scaler = federated_scaler(grid, nodes, config)
        result.scaler = scaler
        log.info("federated %s scaler from %d clients", config.scaler, len(nodes))
    for server_round in range(start, config.num_rounds + 1):
        t0 = time.perf_counter()
        nodes = discover_clients(
            grid, nodes, timeout=min(config.round_timeout, 60.0), poll_interval=config.poll_interval
        )
        ids = sorted(nodes.values())
        selected = select_clients(rng, ids, config.fraction_fit, config.min_fit_clients)
        updates, failures = _train_round(grid, nodes, selected, weights, config, server_round, scaler)
        if len(updates) < config.min_fit_clients:
            raise RuntimeError(
                f"round {server_round}: only {len(updates)} of {len(selected)} clients replied, "
                f"fewer than min-fit-clients={config.min_fit_clients}"
            )
        sent = weights_nbytes(weights) * len(selected)
        weights = strategy.aggregate(server_round, weights, updates)
        losses = [
            (float(u.metrics["train_loss"]), u.num_examples) for u in updates if "train_loss" in u.metrics
        ]
        total = sum(n for _, n in losses)
        record = RoundRecord(
            server_round=server_round,
            selected=selected,
            train_loss=float("nan") if total == 0 else sum(v * n for v, n in losses) / total,
            bytes_sent=sent,
            bytes_received=sum(weights_nbytes(u.weights) for u in updates),
            seconds=time.perf_counter() - t0,
            failures=failures,
        )
        result.rounds.append(record)
        if config.checkpoint_path:
            save_checkpoint(
                config.checkpoint_path,
                Checkpoint(
                    server_round, weights, strategy.state_dict(), dict(rng.bit_generator.state), strategy.name
                ),
            )
        if config.history_path:
            write_history(config.history_path, result.rounds, finished=server_round == config.num_rounds)
        log.info(
            "round %d: %d/%d replies, loss %.6g", server_round, len(updates), len(selected), record.train_loss
        )
        if on_round is not None:
            on_round(record)
    result.weights = weights
    if scaler is not None:
        nodes = discover_clients(
            grid, nodes, timeout=min(config.round_timeout, 60.0), poll_interval=config.poll_interval
        )
        result.threshold = federated_threshold(grid, nodes, weights, scaler, config)
        log.info("federated threshold %.6g (k=%g)", result.threshold, config.threshold_k)
        if config.detector_path:
            saved = save_detector(
                config.detector_path,
                weights,
                scaler,
                result.threshold,
                feature_names=config.feature_names,
                threshold_k=config.threshold_k,
            )
            result.detector_path = str(saved)
            log.info("saved the federated detector to %s", saved)
    return result


def make_server_app(
    config_fn: Callable[[Context], ServerConfig],
    initial_weights_fn: Callable[[Context], Weights],
    *,
    on_result: Callable[[SimResult], None] | None = None,
) -> ServerApp:
    """Build a Flower ``ServerApp`` whose main runs :func:`run_server`.

    Parameters
    ----------
    config_fn : callable
        ``Context -> ServerConfig`` (e.g. ``lambda c: ServerConfig.from_run_config(c.run_config)``).
    initial_weights_fn : callable
        ``Context -> Weights``: the global model before round 1.
    on_result : callable, optional
        Receives the final :class:`SimResult` (tests, benchmarks, saving the model).
    """
    import_flwr()
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        result = run_server(grid, config_fn(context), initial_weights_fn(context))
        if on_result is not None:
            on_result(result)

    return app


def _initial_weights(context: Context) -> Weights:
    from fediot.models.autoencoder import Autoencoder, AutoencoderConfig
    from fediot.models.weights import get_weights, init_module

    run = context.run_config
    model = Autoencoder(AutoencoderConfig(int(run.get("num-features", 115))))
    return get_weights(init_module(model, int(run.get("seed", 0))))


def __getattr__(name: str) -> Any:
    """Build the module-level ``app`` (for ``flwr run``) on first access: an N-BaIoT autoencoder run."""
    if name == "app":
        return make_server_app(lambda c: ServerConfig.from_run_config(c.run_config), _initial_weights)
    raise AttributeError(name)
