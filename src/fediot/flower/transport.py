"""The federation engine's transport over Flower's ``Grid``: messages to SuperNodes, replies back.

:class:`GridTransport` implements :class:`fediot.federated.engine.Transport` for ``flwr run`` (simulation
and deployment). Clients are known by the client id each SuperNode reports (``query.identify``), so client
selection is the same as in process whatever node ids Flower assigns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fediot.config import ServerConfig
from fediot.errors import ConfigError
from fediot.federated.engine import TRAIN, ClientFailure, Reply, Request, RoundFailedError, SecureAggregate
from fediot.federated.events import event
from fediot.flower.codec import (
    ARRAYS_KEY,
    CONFIG_KEY,
    SUMMARY_KEY,
    config_to_configrecord,
    import_flwr,
    recorddict_to_update,
    records_to_plain,
    scaler_to_records,
    weights_to_arrayrecord,
)

if TYPE_CHECKING:
    from flwr.app import Message, RecordDict
    from flwr.serverapp import Grid

__all__ = ["CLIENT_ID_KEY", "IDENTIFY", "GridTransport", "discover_clients", "send_and_receive"]

log = logging.getLogger(__name__)

CLIENT_ID_KEY = "client-id"
"""Node-config and reply key naming the client (a gateway id; the server selects by it)."""
IDENTIFY = "identify"
"""The query that asks a node for its client id (no data, no counts)."""


def _message(content: RecordDict, node_id: int, message_type: str, server_round: int) -> Message:
    import_flwr()
    from flwr.app import Message

    return Message(content, dst_node_id=node_id, message_type=message_type, group_id=str(server_round))


def _pull(
    grid: Grid, message_ids: Sequence[str], *, timeout: float, poll_interval: float
) -> dict[str, Message]:
    """Collect replies to ``message_ids`` until all arrived or ``timeout`` passed; ``{message id: reply}``."""
    pending = set(message_ids)
    deadline = time.monotonic() + timeout
    by_id: dict[str, Message] = {}
    while pending:
        for reply in grid.pull_messages(pending):
            by_id[reply.metadata.reply_to_message_id] = reply
        pending -= by_id.keys()
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(min(poll_interval, max(0.0, deadline - time.monotonic())))
    return by_id


def send_and_receive(
    grid: Grid, messages: Sequence[Message], *, timeout: float, poll_interval: float = 0.2
) -> list[Message | None]:
    """Push ``messages``; collect their replies until all arrived or ``timeout`` seconds passed.

    Like ``Grid.send_and_receive``, but polls every ``poll_interval`` seconds instead of every 3 s, and
    returns the replies aligned with ``messages`` (None: no reply in time). The SuperLink answers for a
    node that went offline with an error reply (``NODE_UNAVAILABLE``, hence the alignment by message id).
    """
    sent = [str(i) for i in grid.push_messages(messages)]
    if len(sent) != len(messages):
        raise RuntimeError(f"pushed {len(messages)} messages, the SuperLink accepted {len(sent)}")
    by_id = _pull(grid, sent, timeout=timeout, poll_interval=poll_interval)
    return [by_id.get(i) for i in sent]


def discover_clients(
    grid: Grid,
    known: Mapping[int, str],
    *,
    timeout: float,
    poll_interval: float = 0.2,
    pending: dict[int, str] | None = None,
) -> dict[int, str]:
    """Ask every connected node not in ``known`` for its client id; return ``{node_id: client_id}``.

    Nodes no longer connected are dropped. A node has at most one ``identify`` request outstanding:
    ``pending`` (``{node_id: message id}``, updated in place; pass the same dict to every call) keeps the
    requests not answered within ``timeout``, and a later call waits for those replies instead of sending
    new requests, so a slow federation (1,000 simulated nodes) is not flooded with repeats.

    Raises
    ------
    ConfigError
        If two nodes report the same client id.
    """
    import_flwr()
    from flwr.app import RecordDict

    pending = {} if pending is None else pending
    connected = set(grid.get_node_ids())
    found = {nid: cid for nid, cid in known.items() if nid in connected}
    for nid in known:
        if nid not in found:
            log.warning(
                "client %s (node %d) is gone",
                known[nid],
                nid,
                extra=event("node_lost", client=known[nid], node_id=nid, reason="no longer connected"),
            )
    for nid in [n for n in pending if n not in connected]:
        del pending[nid]
    new = sorted(nid for nid in connected if nid not in found and nid not in pending)
    if new:
        messages = [_message(RecordDict(), nid, f"query.{IDENTIFY}", 0) for nid in new]
        sent = [str(i) for i in grid.push_messages(messages)]
        if len(sent) != len(messages):
            raise RuntimeError(f"pushed {len(messages)} messages, the SuperLink accepted {len(sent)}")
        pending.update(zip(new, sent, strict=True))
    replies = _pull(grid, list(pending.values()), timeout=timeout, poll_interval=poll_interval)
    for nid, message_id in sorted(pending.items()):
        reply = replies.get(message_id)
        if reply is None:
            continue  # still outstanding: waited for again on the next call, not asked again
        del pending[nid]
        if reply.has_error():
            log.warning(
                "node %d failed to identify: %s",
                nid,
                reply.error.reason,
                extra=event("node_unidentified", node_id=nid, reason=str(reply.error.reason)),
            )
        else:
            found[nid] = str(reply.content.config_records[CONFIG_KEY][CLIENT_ID_KEY])
    if pending:
        log.warning(
            "%d node(s) did not identify within %.0f s (still waiting for their replies)",
            len(pending),
            timeout,
            extra=event("node_unidentified", nodes=len(pending), reason=f"no reply within {timeout:.0f} s"),
        )
    ids = list(found.values())
    if len(set(ids)) != len(ids):
        raise ConfigError(f"two SuperNodes report the same client-id: {sorted(ids)}")
    return found


class GridTransport:
    """The engine's transport over a Flower ``Grid``.

    Parameters
    ----------
    grid : flwr.serverapp.Grid
    server : ServerConfig
        Timeouts, poll interval and ``min_available_clients`` (waited for on the first request).
    """

    def __init__(self, grid: Grid, server: ServerConfig) -> None:
        self.grid = grid
        self.server = server
        self.nodes: dict[int, str] = {}
        self._identifying: dict[int, str] = {}  # node id -> its outstanding identify request
        self._connected = False

    def _discover(self) -> None:
        self.nodes = discover_clients(
            self.grid,
            self.nodes,
            timeout=min(self.server.round_timeout, 60.0),
            poll_interval=self.server.poll_interval,
            pending=self._identifying,
        )

    def available(self) -> list[str]:
        """Client ids of the connected nodes, sorted; the first call waits for ``min_available_clients``."""
        if self._connected:
            self._discover()
        else:
            deadline = time.monotonic() + self.server.connect_timeout
            while True:
                self._discover()
                if len(self.nodes) >= self.server.min_available_clients:
                    break
                if time.monotonic() > deadline:
                    raise RoundFailedError(
                        f"only {len(self.nodes)} gateways connected within "
                        f"{self.server.connect_timeout:.0f} s, "
                        f"need server.min_available_clients={self.server.min_available_clients}"
                    )
                time.sleep(min(1.0, self.server.poll_interval * 5))
            self._connected = True
        return sorted(self.nodes.values())

    def send_secure(self, client_ids: Sequence[str], request: Request) -> SecureAggregate:
        """Run the training ``request`` as one SecAgg+ round (:mod:`fediot.flower.secagg`); the mean."""
        from fediot.flower.secagg import secure_train_round

        by_client = {cid: nid for nid, cid in self.nodes.items()}
        nodes = {cid: by_client[cid] for cid in client_ids}
        return secure_train_round(self.grid, self.server, nodes, request)

    def send(self, client_ids: Sequence[str], request: Request) -> list[Reply]:
        """Send ``train`` or ``query.<kind>`` messages (weights, config, scaler) and decode the replies."""
        import_flwr()
        from flwr.app import RecordDict

        records: dict[str, Any] = {CONFIG_KEY: config_to_configrecord(request.config)}
        if request.weights is not None:
            records[ARRAYS_KEY] = weights_to_arrayrecord(request.weights)
        if request.scaler is not None:
            records.update(scaler_to_records(request.scaler))
        training = request.kind == TRAIN
        message_type = TRAIN if training else f"query.{request.kind}"
        by_client = {cid: nid for nid, cid in self.nodes.items()}
        content = RecordDict(records)
        messages = [
            _message(content, by_client[cid], message_type, request.server_round) for cid in client_ids
        ]
        replies = send_and_receive(
            self.grid, messages, timeout=self.server.round_timeout, poll_interval=self.server.poll_interval
        )
        out: list[Reply] = []
        for reply in replies:
            if reply is None:
                out.append(ClientFailure(f"no reply within {self.server.round_timeout:.0f} s"))
            elif reply.has_error():
                out.append(ClientFailure(str(reply.error.reason)))
            else:
                try:
                    out.append(
                        recorddict_to_update(reply.content)
                        if training
                        else records_to_plain(reply.content, SUMMARY_KEY)
                    )
                except (KeyError, TypeError, ValueError) as exc:
                    out.append(ClientFailure(f"malformed reply: {exc}"))
        return out
