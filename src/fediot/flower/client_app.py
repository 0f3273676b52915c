"""Flower ClientApp adapter: decode a message, call the client code, encode only weights/statistics back.

The client side of the engine is :mod:`fediot.federated.client` (``fit`` and
:func:`~fediot.federated.client.answer_query`); this module only translates Flower messages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

from fediot.federated.client import AutoencoderClient, Client, answer_query
from fediot.federated.privacy import apply_local_dp
from fediot.federated.statistics import ERROR_STATS, FEATURE_STATS
from fediot.federated.types import ClientUpdate, Config, Weights
from fediot.flower.codec import (
    ARRAYS_KEY,
    CONFIG_KEY,
    METRICS_KEY,
    SUMMARY_KEY,
    arrayrecord_to_weights,
    configrecord_to_config,
    import_flwr,
    plain_to_records,
    records_to_scaler,
    update_to_recorddict,
)
from fediot.flower.transport import CLIENT_ID_KEY, IDENTIFY

if TYPE_CHECKING:
    from flwr.app import Context, Message, RecordDict
    from flwr.clientapp import ClientApp

__all__ = [
    "CLIENT_ID_KEY",
    "IDENTIFY",
    "QUERIES",
    "ClientFn",
    "apply_scaler",
    "fit_on_gateway",
    "handle_query",
    "handle_train",
    "load_rows",
    "make_client_app",
    "node_client",
]

QUERIES = (FEATURE_STATS, ERROR_STATS)
"""Statistics queries every fediot ClientApp answers (message type ``query.<name>``)."""
ClientFn: TypeAlias = Callable[["Context"], Client]
"""Builds this node's client from the Flower ``Context`` (node config, run config)."""


def _reply(message: Message, content: RecordDict) -> Message:
    import_flwr()
    from flwr.app import Message

    return Message(content, reply_to=message)


def apply_scaler(content: Any, client: Client) -> None:
    """Apply a server-sent scaler (sent with every message: each may run in a fresh process)."""
    scaler = records_to_scaler(content)
    if scaler is None:
        return
    set_scaler = getattr(client, "set_scaler", None)
    if not callable(set_scaler):
        raise TypeError(f"client {client.client_id!r} cannot apply a scaler")
    set_scaler(scaler)


def handle_train(message: Message, client: Client) -> Message:
    """Decode global weights, config and scaler, run ``client.fit``, reply with weights, count and metrics."""
    content = message.content
    apply_scaler(content, client)
    weights = arrayrecord_to_weights(content.array_records[ARRAYS_KEY])
    config = configrecord_to_config(content.config_records[CONFIG_KEY]) if CONFIG_KEY in content else {}
    return _reply(message, update_to_recorddict(fit_on_gateway(client, weights, config)))


def fit_on_gateway(client: Client, weights: Weights, config: Config) -> ClientUpdate:
    """``client.fit``, then local DP when the config asks for it (plain and SecAgg+ training alike).

    Local DP (``privacy.mechanism='local'``) privatises the update here, before it leaves the gateway,
    with fresh OS entropy.
    """
    update = client.fit(weights, config)
    private = apply_local_dp(update, weights, config, np.random.default_rng())
    assert isinstance(private, ClientUpdate)
    return private


def handle_query(message: Message, client: Client, name: str) -> Message:
    """Answer the statistics query ``name`` with its encoded summary (never rows)."""
    import_flwr()
    from flwr.app import RecordDict

    content = message.content
    apply_scaler(content, client)
    weights = arrayrecord_to_weights(content.array_records[ARRAYS_KEY]) if ARRAYS_KEY in content else None
    config = configrecord_to_config(content.config_records[CONFIG_KEY]) if CONFIG_KEY in content else {}
    summary = answer_query(client, name, weights, config)
    return _reply(message, RecordDict(plain_to_records(summary, SUMMARY_KEY)))


def _identify(message: Message, client_id: str) -> Message:
    import_flwr()
    from flwr.app import ConfigRecord, MetricRecord, RecordDict

    content = RecordDict(
        {CONFIG_KEY: ConfigRecord({CLIENT_ID_KEY: client_id}), METRICS_KEY: MetricRecord({})}
    )
    return _reply(message, content)


def make_client_app(client_fn: ClientFn) -> ClientApp:
    """Build a Flower ``ClientApp`` that serves ``train``, ``query.identify`` and the statistics queries.

    Parameters
    ----------
    client_fn : callable
        ``Context -> Client``: builds this node's client (called per message; Flower may run each
        message in a fresh process, so it must load its state from the node config).

    Returns
    -------
    flwr.clientapp.ClientApp
    """
    import_flwr()
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.train()
    def _train(message: Message, context: Context) -> Message:
        from fediot.flower.secagg import is_secagg_message, secure_train

        if is_secagg_message(message):  # server.secure-aggregation: one stage of a SecAgg+ round
            return secure_train(message, context, client_fn)
        return handle_train(message, client_fn(context))

    @app.query(IDENTIFY)
    def _query_identify(message: Message, context: Context) -> Message:
        return _identify(message, client_fn(context).client_id)

    for name in QUERIES:

        def _query(message: Message, context: Context, name: str = name) -> Message:
            return handle_query(message, client_fn(context), name)

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


def node_client(node: Mapping[str, Any], run: Mapping[str, Any]) -> AutoencoderClient:
    """Build the deployment client: an N-BaIoT gateway from its node config and the run config.

    The default ClientApp calls this with the SuperNode's ``--node-config`` and the run config; the
    in-process runtime can call it with the same two mappings to get the very same client.

    Parameters
    ----------
    node : mapping
        ``data-path`` (benign rows in time order, ``.npy``/``.csv``, as the gateway stores them) and
        ``client-id``. The rows are split in time order into thirds: train / opt / (test, unused here).
    run : mapping
        Flower's run config (:func:`fediot.config.fl_config_from_run_config`): the model's ``train.ratios``
        and the local training defaults (the server sends the per-round values with every message).

    Returns
    -------
    AutoencoderClient
        Its rows are scaled by the federated scaler each message carries.
    """
    from fediot.config import fl_config_from_run_config
    from fediot.federated.settings import local_train_config
    from fediot.models.autoencoder import Autoencoder, AutoencoderConfig

    if "data-path" not in node:
        raise ValueError("this SuperNode needs --node-config 'data-path=... client-id=...'")
    cfg = fl_config_from_run_config(run)
    x = load_rows(str(node["data-path"]))
    client_id = str(node.get(CLIENT_ID_KEY, Path(str(node["data-path"])).stem))
    third = x.shape[0] // 3
    num_features = x.shape[1]
    ratios = cfg.train.ratios
    return AutoencoderClient(
        client_id,
        lambda: Autoencoder(AutoencoderConfig(num_features, ratios=ratios)),
        x[:third] if third else x,
        x[third : 2 * third],
        local_train_config(cfg.train, cfg.federated.local_epochs),
        seed=cfg.seed,
        retrain_every=cfg.federated.retrain_every,
        retrain_fraction=cfg.federated.retrain_fraction,
    )


def _node_client(context: Context) -> Client:
    return node_client(context.node_config, context.run_config)


def __getattr__(name: str) -> Any:
    """Build the module-level ``app`` (for ``flwr run`` / ``flower-supernode``) on first access."""
    if name == "app":
        return make_client_app(_node_client)
    raise AttributeError(name)
