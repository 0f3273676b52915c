"""Flower ClientApp adapter: decode a message, call our ``Client``, encode only weights/statistics back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

from fediot.federated.client import AutoencoderClient, Client
from fediot.federated.types import Config, Weights
from fediot.flower.codec import (
    ARRAYS_KEY,
    CONFIG_KEY,
    METRICS_KEY,
    SCALER_KEY,
    arrayrecord_to_weights,
    configrecord_to_config,
    import_flwr,
    records_to_scaler,
    statistics_to_recorddict,
    update_to_recorddict,
)

if TYPE_CHECKING:
    from flwr.app import Context, Message, RecordDict
    from flwr.clientapp import ClientApp

__all__ = [
    "CLIENT_ID_KEY",
    "DEFAULT_QUERIES",
    "IDENTIFY",
    "SCALER_KEY",
    "SCALER_KIND_KEY",
    "ClientFn",
    "QueryFn",
    "Statistics",
    "as_statistics",
    "error_stats",
    "feature_stats",
    "handle_query",
    "handle_train",
    "load_rows",
    "make_client_app",
    "node_client",
    "sufficient_stats",
]

CLIENT_ID_KEY = "client-id"
"""Node-config and reply key naming the client (a gateway id; the server selects by it)."""
SCALER_KIND_KEY = "scaler"
"""Config key of a ``feature_stats`` query naming the scaler kind the statistics are for."""
IDENTIFY = "identify"
"""The query that asks a node for its client id (no data, no counts)."""

Statistics: TypeAlias = tuple[dict[str, NDArray[Any]], int]
"""A statistics query's answer: named sufficient-statistic arrays and the number of rows behind them."""
QueryFn: TypeAlias = Callable[[Client, "Weights | None", Config], Statistics]
"""``(client, global weights or None, config) -> Statistics``; runs on the client, returns no rows."""
ClientFn: TypeAlias = Callable[["Context"], Client]
"""Builds this node's client from the Flower ``Context`` (node config, run config)."""


def sufficient_stats(x: NDArray[Any]) -> dict[str, NDArray[np.float64]]:
    """Per-column sufficient statistics of ``x``: ``sum``, ``sum_sq``, ``min``, ``max``.

    Parameters
    ----------
    x : ndarray of shape (n_samples,) or (n_samples, n_features)

    Returns
    -------
    dict of str to ndarray of shape () or (n_features,)
        Accumulated in float64; ``min``/``max`` are ``+inf``/``-inf`` for zero rows.

    Examples
    --------
    >>> import numpy as np
    >>> s = sufficient_stats(np.array([[1.0, 2.0], [3.0, 4.0]]))
    >>> s["sum"].tolist(), s["sum_sq"].tolist(), s["min"].tolist()
    ([4.0, 6.0], [10.0, 20.0], [1.0, 2.0])
    """
    a = np.asarray(x, dtype=np.float64)
    if a.shape[0] == 0:
        shape = a.shape[1:]
        return {
            "sum": np.zeros(shape),
            "sum_sq": np.zeros(shape),
            "min": np.full(shape, np.inf),
            "max": np.full(shape, -np.inf),
        }
    return {"sum": a.sum(axis=0), "sum_sq": (a * a).sum(axis=0), "min": a.min(axis=0), "max": a.max(axis=0)}


def as_statistics(value: Any) -> Statistics:
    """Normalise a client's statistics object to :data:`Statistics` (``(arrays by name, count)``).

    Accepts a ``(dict, count)`` pair, or a dataclass of sufficient statistics (e.g.
    ``fediot.data.scaling.SufficientStats``): its integer field ``count`` (or ``n``) becomes the count and
    every other numeric/array field an array.
    """
    import dataclasses

    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], Mapping):
        return {str(k): np.asarray(v) for k, v in value[0].items()}, int(value[1])
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        arrays: dict[str, NDArray[Any]] = {}
        count: int | None = None
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if f.name in ("count", "n", "num_samples"):
                count = int(v)
            elif isinstance(v, np.ndarray | float | int) and not isinstance(v, bool):
                arrays[f.name] = np.asarray(v)
        if count is None:
            raise TypeError(f"{type(value).__name__} has no count field")
        return arrays, count
    raise TypeError(f"cannot encode statistics of type {type(value).__name__}")


def _takes_argument(fn: Callable[..., Any]) -> bool:
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params)


def feature_stats(client: Client, weights: Weights | None, config: Config) -> Statistics:
    """Sufficient statistics of the client's raw training rows (for a federated scaler).

    The query's config may name the scaler kind (``scaler``, e.g. ``log-minmax``): it is passed to the
    client's ``feature_stats(kind)`` when that takes an argument (``AutoencoderClient``), so ``log-*``
    statistics are of the log-compressed rows. Clients without ``feature_stats`` (``ClassifierClient``)
    answer from their ``x`` rows (log-compressed likewise for ``log-*``).
    """
    del weights
    kind = config.get(SCALER_KIND_KEY)
    kind = str(kind) if kind else None
    own = getattr(client, "feature_stats", None)
    if callable(own):
        return as_statistics(own(kind) if kind is not None and _takes_argument(own) else own())
    rows = getattr(client, "x", None)
    if rows is None:
        raise TypeError(f"client {client.client_id!r} exposes no training rows for feature statistics")
    x = np.asarray(rows)
    if kind is not None:
        from fediot.data.scaling import scaler_inputs

        x = scaler_inputs(kind, x)
    return sufficient_stats(x), int(x.shape[0])


def error_stats(client: Client, weights: Weights | None, config: Config) -> Statistics:
    """Sufficient statistics of the reconstruction errors of the client's opt rows under ``weights``.

    For the federated threshold (N-BaIoT: ``mean + std``); uses the client's ``error_stats(weights)``.
    """
    del config
    if weights is None:
        raise ValueError("error_stats needs the global weights in the query message")
    own = getattr(client, "error_stats", None)
    if not callable(own):
        raise TypeError(f"client {client.client_id!r} cannot compute reconstruction-error statistics")
    return as_statistics(own(weights))


DEFAULT_QUERIES: Mapping[str, QueryFn] = {"feature_stats": feature_stats, "error_stats": error_stats}
"""Statistics queries every fediot ClientApp answers (message type ``query.<name>``)."""


def _reply(message: Message, content: RecordDict) -> Message:
    import_flwr()
    from flwr.app import Message

    return Message(content, reply_to=message)


def _apply_scaler(content: Any, client: Client) -> None:
    """Apply a server-sent scaler to a client that takes one (``set_scaler``).

    The federated scaler comes as :func:`fediot.flower.codec.scaler_to_records` records (a
    ``fediot.data.scaling`` scaler, e.g. ``log-minmax``); a bare ``scaler`` ArrayRecord with ``offset``
    and ``scale`` arrays is applied as ``(x - offset) / scale``.
    """
    if SCALER_KEY not in content.array_records:
        return
    set_scaler = getattr(client, "set_scaler", None)
    if not callable(set_scaler):
        raise TypeError(f"client {client.client_id!r} cannot apply a scaler")
    record = content.array_records[SCALER_KEY]
    if "offset" in record:
        set_scaler(_AffineScaler(record["offset"].numpy(), record["scale"].numpy()))
    else:
        set_scaler(records_to_scaler(content))


def handle_train(message: Message, client: Client) -> Message:
    """Decode global weights + config, run ``client.fit``, reply with weights, count and metrics only.

    A scaler in the message (see :func:`_apply_scaler`) is applied first with ``client.set_scaler`` (the
    federated scaler is sent with every message: each message may run in a fresh process).
    """
    content = message.content
    _apply_scaler(content, client)
    weights = arrayrecord_to_weights(content.array_records[ARRAYS_KEY])
    config = configrecord_to_config(content.config_records[CONFIG_KEY]) if CONFIG_KEY in content else {}
    update = client.fit(weights, config)
    return _reply(message, update_to_recorddict(update))


def handle_query(message: Message, client: Client, query: QueryFn) -> Message:
    """Run one statistics query and reply with its arrays and row count."""
    content = message.content
    _apply_scaler(content, client)
    weights = arrayrecord_to_weights(content.array_records[ARRAYS_KEY]) if ARRAYS_KEY in content else None
    config = configrecord_to_config(content.config_records[CONFIG_KEY]) if CONFIG_KEY in content else {}
    stats, count = query(client, weights, config)
    return _reply(message, statistics_to_recorddict(stats, count))


def _identify(message: Message, client_id: str) -> Message:
    import_flwr()
    from flwr.app import ConfigRecord, MetricRecord, RecordDict

    content = RecordDict(
        {CONFIG_KEY: ConfigRecord({CLIENT_ID_KEY: client_id}), METRICS_KEY: MetricRecord({})}
    )
    return _reply(message, content)


def make_client_app(client_fn: ClientFn, queries: Mapping[str, QueryFn] | None = None) -> ClientApp:
    """Build a Flower ``ClientApp`` that serves ``train``, ``query.identify`` and each statistics query.

    Parameters
    ----------
    client_fn : callable
        ``Context -> Client``: builds this node's client (called per message; Flower may run each
        message in a fresh process, so it must load its state from the node config).
    queries : mapping of str to QueryFn, optional
        Statistics queries by name (a Python identifier); default :data:`DEFAULT_QUERIES`.

    Returns
    -------
    flwr.clientapp.ClientApp
    """
    import_flwr()
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.train()
    def _train(message: Message, context: Context) -> Message:
        return handle_train(message, client_fn(context))

    @app.query(IDENTIFY)
    def _query_identify(message: Message, context: Context) -> Message:
        return _identify(message, client_fn(context).client_id)

    for name, query in (DEFAULT_QUERIES if queries is None else queries).items():

        def _query(message: Message, context: Context, query: QueryFn = query) -> Message:
            return handle_query(message, client_fn(context), query)

        app.query(name)(_query)
    return app


def load_rows(path: str | Path) -> NDArray[np.float32]:
    """Read a client's numeric rows from ``.npy`` or ``.csv``/``.csv.gz`` (header row, numeric columns).

    Returns
    -------
    ndarray of shape (n_samples, n_features)
    """
    p = Path(path)
    if p.suffix == ".npy":
        return np.asarray(np.load(p, allow_pickle=False), dtype=np.float32)
    import pandas as pd

    frame = pd.read_csv(p)
    return frame.select_dtypes("number").to_numpy(dtype=np.float32)


class _AffineScaler:
    """``(x - offset) / scale`` with per-feature arrays sent by the server (identity when none)."""

    def __init__(self, offset: NDArray[np.float32], scale: NDArray[np.float32]) -> None:
        self.offset = offset
        self.scale = np.where(scale == 0, np.float32(1.0), scale).astype(np.float32)

    def transform(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        return ((x - self.offset) / self.scale).astype(np.float32)


def node_client(node: Mapping[str, Any], run: Mapping[str, Any]) -> AutoencoderClient:
    """Build the deployment client: an N-BaIoT gateway from its node config and the run config.

    The default ClientApp calls this with the SuperNode's ``--node-config`` and the run config; the
    in-process runtime can call it with the same two mappings to get the very same client.

    Parameters
    ----------
    node : mapping
        ``data-path`` (benign rows in time order, ``.npy``/``.csv``) and ``client-id``. The rows are
        split in time order into thirds: train / opt / (test, unused here).
    run : mapping
        ``seed``, ``lr``, ``batch-size``, ``local-epochs`` (defaults 0, 0.01, 64, 1).

    Returns
    -------
    AutoencoderClient
        Rows are used as stored (identity scaling) unless a message carries a ``scaler`` record
        (see :func:`handle_train`).
    """
    from fediot.models.autoencoder import Autoencoder, AutoencoderConfig
    from fediot.models.train import TrainConfig

    if "data-path" not in node:
        raise ValueError("this SuperNode needs --node-config 'data-path=... client-id=...'")
    x = load_rows(str(node["data-path"]))
    client_id = str(node.get(CLIENT_ID_KEY, Path(str(node["data-path"])).stem))
    third = x.shape[0] // 3
    num_features = x.shape[1]
    client = AutoencoderClient(
        client_id,
        lambda: Autoencoder(AutoencoderConfig(num_features)),
        x[:third] if third else x,
        x[third : 2 * third],
        TrainConfig(
            epochs=int(run.get("local-epochs", 1)),
            batch_size=int(run.get("batch-size", 64)),
            lr=float(run.get("lr", 0.01)),
        ),
        seed=int(run.get("seed", 0)),
    )
    zeros = np.zeros(num_features, np.float32)
    client.set_scaler(_AffineScaler(zeros, np.ones(num_features, np.float32)))
    return client


def _node_client(context: Context) -> Client:
    return node_client(context.node_config, context.run_config)


def __getattr__(name: str) -> Any:
    """Build the module-level ``app`` (for ``flwr run`` / ``flower-supernode``) on first access."""
    if name == "app":
        return make_client_app(_node_client)
    raise AttributeError(name)
