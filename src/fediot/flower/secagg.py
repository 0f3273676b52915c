"""Secure aggregation in deployment: each training round as one Flower SecAgg+ round.

With ``server.secure-aggregation`` (or ``fediot server --secure-aggregation``) the engine's training request
goes to the selected gateways through Flower's :class:`flwr.server.workflow.SecAggPlusWorkflow` (Bell et
al. 2020, SecAgg+) instead of fediot's plain ``train`` message:

1. *setup*, *share keys*: every selected gateway makes two key pairs and secret-shares (Shamir, over its
   neighbours) its mask seed and its pairwise-mask key;
2. *collect masked vectors*: each gateway trains (:func:`secure_fit`: the same ``client.fit`` and local DP
   as the plain path), appends its training loss to its weights, and Flower's ``secaggplus_mod`` uploads
   ``[n/W, (n/W) * (weights, loss)]`` quantised and masked with a private mask and pairwise masks (``n``
   its example count, ``W`` = ``server.secagg-max-weight``); its plain example count is zeroed;
3. *unmask*: the survivors send the shares that remove the masks of the survivors and of the gateways that
   dropped out after sharing their keys; the server obtains ``sum (n_k/W) (w_k, l_k) / sum n_k/W``.

The server thus sees only the example-weighted mean of the survivors' weights and losses, which the engine
folds with the (non-robust) strategy exactly like the plain FedAvg mean
(:class:`fediot.federated.engine.SecureAggregate`).
Quantisation: each coordinate of ``(n/W) w`` is stochastically rounded to a grid of step
``2 r / 2**22`` (``r`` = ``server.secagg-clipping-range``), so the mean is off by at most
``K * step / sum_k (n_k / W)`` (K gateways). Values outside ``[-r, r]`` would be clipped silently by
Flower; the gateway refuses to upload them instead (it drops out of the round, naming the key).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fediot.config import ServerConfig
from fediot.federated.engine import ClientFailure, Request, SecureAggregate
from fediot.federated.types import ClientUpdate, Weights
from fediot.flower.codec import CONFIG_KEY, config_to_configrecord, import_flwr, scaler_to_records

if TYPE_CHECKING:
    from flwr.app import Context, Message
    from flwr.serverapp import Grid

    from fediot.federated.client import Client

__all__ = [
    "SECURE_AGGREGATION_ENV",
    "is_secagg_message",
    "require_secure_aggregation",
    "secure_fit",
    "secure_train",
    "secure_train_round",
]

SECURE_AGGREGATION_ENV = "FEDIOT_SECURE_AGGREGATION"
"""Set to ``1`` by ``fediot server --secure-aggregation``: every ServerApp of that SuperLink runs SecAgg+."""
CLIPPING_KEY = "secagg-clipping-range"
"""Training-config key: the clipping range the gateway checks its weights against before masking."""
MAX_WEIGHT_KEY = "secagg-max-weight"
"""Training-config key: the largest example count the gateway may weigh its update with."""
_QUANTIZATION_RANGE = 4194304  # Flower's default 2**22 levels, with its default modulus 2**32


def require_secure_aggregation(cfg: Any) -> Any:
    """Return ``cfg`` with ``server.secure_aggregation`` on when the SuperLink was started with it.

    ``fediot server --secure-aggregation`` exports :data:`SECURE_AGGREGATION_ENV` to the SuperLink, whose
    ServerApp processes inherit it: a run cannot then opt out (an incompatible configuration is refused).
    """
    import dataclasses

    from fediot.config import FLConfig

    if os.environ.get(SECURE_AGGREGATION_ENV) != "1" or cfg.server.secure_aggregation:
        return cfg
    assert isinstance(cfg, FLConfig)
    server = dataclasses.replace(cfg.server, secure_aggregation=True)
    return dataclasses.replace(cfg, server=server)


# --- server side -----------------------------------------------------------------------------------------


class _FastGrid:
    """``Grid.send_and_receive`` polling every ``poll_interval`` s (Flower's polls every 3 s)."""

    def __init__(self, grid: Grid, poll_interval: float) -> None:
        self.grid = grid
        self.poll_interval = poll_interval

    def send_and_receive(self, messages: Sequence[Message], *, timeout: float | None = None) -> list[Message]:
        from fediot.flower.transport import send_and_receive

        replies = send_and_receive(
            self.grid, list(messages), timeout=3600.0 if timeout is None else timeout,
            poll_interval=self.poll_interval,
        )  # fmt: skip
        return [r for r in replies if r is not None]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.grid, name)


def secure_train_round(
    grid: Grid, server: ServerConfig, nodes: Mapping[str, int], request: Request
) -> SecureAggregate:
    """Run one SecAgg+ training round with the gateways ``nodes`` (client id -> node id); return the mean.

    Raises
    ------
    ClientFailure
        If the protocol halted (too few gateways left to reconstruct the masks, fewer than 2 selected).
    """
    import_flwr()
    from flwr.app import ArrayRecord, ConfigRecord, Context, RecordDict
    from flwr.common import FitIns, FitRes, Parameters, Scalar, parameters_to_ndarrays
    from flwr.server.client_manager import ClientManager, SimpleClientManager
    from flwr.server.client_proxy import ClientProxy
    from flwr.server.compat.grid_client_proxy import GridClientProxy
    from flwr.server.compat.legacy_context import LegacyContext
    from flwr.server.strategy import Strategy as LegacyStrategy
    from flwr.server.workflow import SecAggPlusWorkflow
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
    from flwr.server.workflow.constant import Key as WorkflowKey

    assert request.weights is not None
    config = dict(request.config)
    config[CLIPPING_KEY] = server.secagg_clipping_range
    config[MAX_WEIGHT_KEY] = server.secagg_max_weight
    by_node = {nid: cid for cid, nid in nodes.items()}
    extra = {CONFIG_KEY: config_to_configrecord(config)}
    if request.scaler is not None:
        extra.update(scaler_to_records(request.scaler))
    captured: dict[str, Any] = {}

    class _Selected(LegacyStrategy):
        """Hands the workflow exactly the engine-selected gateways; keeps the unmasked mean."""

        def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
            return None

        def configure_fit(
            self, server_round: int, parameters: Parameters, client_manager: ClientManager
        ) -> list[tuple[ClientProxy, FitIns]]:
            fit_config: dict[str, Scalar] = dict(config)
            return [(GridClientProxy(nid, grid, 0), FitIns(parameters, fit_config)) for nid in nodes.values()]

        def aggregate_fit(
            self,
            server_round: int,
            results: list[tuple[ClientProxy, FitRes]],
            failures: list[tuple[ClientProxy, FitRes] | BaseException],
        ) -> tuple[Parameters | None, dict[str, Scalar]]:
            captured["mean"] = parameters_to_ndarrays(results[0][1].parameters) if results else None
            return None, {}

        def configure_evaluate(self, *args: Any) -> list[Any]:
            return []

        def aggregate_evaluate(self, *args: Any) -> tuple[None, dict[str, Scalar]]:
            return None, {}

        def evaluate(self, *args: Any) -> None:
            return None

    class _Workflow(SecAggPlusWorkflow):
        """Flower's SecAgg+ workflow; adds fediot's scaler to the training message, notes the survivors."""

        def setup_stage(self, grid: Any, context: Any, state: Any) -> bool:
            ok = bool(super().setup_stage(grid, context, state))
            for content in state.nid_to_fitins.values():
                for key, record in extra.items():
                    content[key] = record
            return ok

        def unmask_stage(self, grid: Any, context: Any, state: Any) -> bool:
            captured["contributors"] = sorted(by_node[n] for n in state.active_node_ids)
            captured["failures"] = list(dict.fromkeys(str(f) for f in state.failures))
            return bool(super().unmask_stage(grid, context, state))

    shares = server.secagg_num_shares or 1.0  # Flower: a float is a fraction of the selected gateways
    threshold: int | float = server.secagg_reconstruction_threshold or 0.67
    workflow = _Workflow(
        shares,
        threshold,
        max_weight=server.secagg_max_weight,
        clipping_range=server.secagg_clipping_range,
        quantization_range=_QUANTIZATION_RANGE,
        timeout=server.round_timeout,
    )
    state = RecordDict(
        {
            MAIN_CONFIGS_RECORD: ConfigRecord({WorkflowKey.CURRENT_ROUND: request.server_round}),
            MAIN_PARAMS_RECORD: ArrayRecord([np.asarray(w, np.float32) for w in request.weights]),
        }
    )
    manager = SimpleClientManager()
    for nid in nodes.values():
        manager.register(GridClientProxy(nid, grid, 0))
    context = LegacyContext(
        Context(run_id=0, node_id=0, node_config={}, state=state, run_config={}),
        strategy=_Selected(),
        client_manager=manager,
    )
    workflow(_FastGrid(grid, server.poll_interval), context)  # type: ignore[arg-type]
    mean = captured.get("mean")
    contributors: list[str] = captured.get("contributors", [])
    if mean is None:
        raise ClientFailure(
            f"SecAgg+ round {request.server_round} halted: too few of the {len(nodes)} selected gateways "
            f"stayed to unmask (server.secagg-reconstruction-threshold="
            f"{server.secagg_reconstruction_threshold or '2/3 of the shares'})"
        )
    n = len(request.weights)
    if len(mean) != n + 1:
        raise ClientFailure(f"SecAgg+ round {request.server_round}: {len(mean)} tensors, expected {n + 1}")
    weights = [
        np.asarray(a, np.float32).reshape(np.shape(w)) for a, w in zip(mean[:n], request.weights, strict=True)
    ]
    loss = float(np.asarray(mean[n]).ravel()[0])
    dropped = [cid for cid in nodes if cid not in contributors]
    why = ("; ".join(captured.get("failures", [])) or "no reply") if dropped else ""
    return SecureAggregate(weights, contributors, dropped, loss, why)  # the engine logs the dropped


# --- client side -----------------------------------------------------------------------------------------


def is_secagg_message(message: Message) -> bool:
    """Whether ``message`` is a stage of a SecAgg+ round (rather than fediot's plain ``train``)."""
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

    return RECORD_KEY_CONFIGS in message.content.config_records


def secure_fit(client: Client, weights: Weights, config: Mapping[str, Any]) -> ClientUpdate:
    """Train as the plain path does, then check that the update can be quantised.

    Training is :func:`fediot.flower.client_app.fit_on_gateway` (``client.fit``, then local DP).

    Raises
    ------
    ValueError
        If a weight or the loss lies outside the clipping range, or the count exceeds the max weight
        (Flower would clip or overflow them silently).
    """
    from fediot.federated.types import Config
    from fediot.flower.client_app import fit_on_gateway

    fit_config: Config = {k: v for k, v in config.items() if k not in (CLIPPING_KEY, MAX_WEIGHT_KEY)}
    update = fit_on_gateway(client, weights, fit_config)
    clip, max_weight = float(config[CLIPPING_KEY]), float(config[MAX_WEIGHT_KEY])
    if update.num_examples > max_weight:
        raise ValueError(
            f"{update.num_examples} training examples exceed server.secagg-max-weight={max_weight:g}"
        )
    largest = max(float(np.abs(w).max(initial=0.0)) for w in update.weights)
    loss = float(update.metrics.get("train_loss", 0.0))
    if largest > clip or abs(loss) > clip or not np.isfinite(loss):
        raise ValueError(
            f"update outside server.secagg-clipping-range={clip:g} (largest |weight| {largest:.4g}, "
            f"loss {loss:.4g}): SecAgg+ would clip it"
        )
    return update


def secure_train(message: Message, context: Context, client_fn: Callable[[Context], Client]) -> Message:
    """Answer one SecAgg+ stage with Flower's ``secaggplus_mod``; train (only) in the masked-vector stage.

    The reply of the masked-vector stage carries the masked ``[n/W, (n/W) (weights, loss)]`` only: its
    legacy plain example count is zeroed and its metrics are empty.
    """
    import_flwr()
    import flwr.compat.common.recorddict_compat as compat
    from flwr.app import Message as FlowerMessage
    from flwr.app import MetricRecord
    from flwr.client.mod import secaggplus_mod
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays

    from fediot.flower.client_app import apply_scaler

    def fit(msg: Message, ctxt: Context) -> Message:
        client = client_fn(ctxt)
        apply_scaler(msg.content, client)
        fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
        weights = [np.asarray(a, np.float32) for a in parameters_to_ndarrays(fitins.parameters)]
        update = secure_fit(client, weights, fitins.config)
        loss = np.array([float(update.metrics.get("train_loss", 0.0))], dtype=np.float32)
        fitres = FitRes(
            Status(Code.OK, ""), ndarrays_to_parameters([*update.weights, loss]), update.num_examples, {}
        )
        return FlowerMessage(compat.fitres_to_recorddict(fitres, keep_input=True), reply_to=msg)

    reply = secaggplus_mod(message, context, fit)
    key = "fitres.num_examples"
    if key in reply.content.metric_records:
        reply.content.metric_records[key] = MetricRecord({"num_examples": 0})
    return reply
