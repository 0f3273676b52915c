"""The fleet gate: the only SuperLink address gateways reach, serving the Fleet API and nothing else.

Flower 1.41 serves the Fleet API (SuperNodes), the Control API (``flwr run``, ``flwr supernode
register``) and the Runtime API (the ServerApp) over one HTTPS port, and the Control API has no operator
credential without Flower's enterprise extensions: whoever reaches that port with ``ca.crt`` can register
a key of their own. ``fediot server`` therefore binds the SuperLink to loopback and puts this gate on the
address gateways use. It terminates TLS with the SuperLink's own certificate, forwards ``POST
/v1/fleet/<name>`` requests unchanged (node authentication is in their headers, checked by the SuperLink)
to the SuperLink over TLS verified against ``ca.crt``, and answers everything else with 403.

Run as ``python -m fediot.flower.gate --listen HOST:PORT --upstream HOST:PORT [--certs DIR | --insecure]``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["FLEET_PATH", "FleetGate", "gate_command", "main"]

FLEET_PATH = re.compile(r"/v1/fleet/[a-z][a-z-]*")
"""The request paths the gate forwards (Flower 1.41's Fleet routes: ``/v1/fleet/pull-messages``, ...)."""

_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    }
)
_REFUSED = b"fediot fleet gate: only the Fleet API (POST /v1/fleet/...) is served on this address\n"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class FleetGate:
    """ASGI app forwarding Fleet API requests to ``upstream`` and refusing every other request (403).

    Parameters
    ----------
    upstream : str
        ``https://host:port`` (or ``http://`` without TLS) of the SuperLink.
    ca_cert : path or None
        CA that signed the SuperLink's certificate (None: plain HTTP upstream).
    timeout : float
        Seconds an upstream request may take.
    """

    def __init__(self, upstream: str, *, ca_cert: str | Path | None, timeout: float = 120.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.ca_cert = ca_cert
        self.timeout = timeout
        self._client: Any = None

    def _open(self) -> Any:
        import ssl

        import httpx

        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(self.ca_cert)) if self.ca_cert is not None else False
        )
        return httpx.AsyncClient(base_url=self.upstream, verify=verify, timeout=self.timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection (lifespan events, or one HTTP request)."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self._client = self._open()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self._client is not None:
                        await self._client.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if scope["method"] != "POST" or FLEET_PATH.fullmatch(path) is None or scope.get("query_string"):
            await _respond(send, 403, [(b"content-type", b"text/plain")], _REFUSED)
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP_BY_HOP]
        if self._client is None:  # a server run without lifespan events
            self._client = self._open()
        try:
            request = self._client.build_request("POST", path, headers=headers, content=bytes(body))
            response = await self._client.send(request, stream=True)
            try:
                content = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
        except Exception as exc:  # any upstream failure is the gateway's 502
            await _respond(send, 502, [(b"content-type", b"text/plain")], f"SuperLink: {exc}\n".encode())
            return
        out = [(k, v) for k, v in response.headers.raw if k.lower() not in _HOP_BY_HOP]
        await _respond(send, response.status_code, out, content)


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def gate_command(
    listen: str, upstream: str, *, certs_dir: str | Path | None, python: str | None = None
) -> list[str]:
    """Return the command that runs the gate on ``listen`` (``host:port``) in front of ``upstream``."""
    cmd = [python or sys.executable, "-m", "fediot.flower.gate", "--listen", listen, "--upstream", upstream]
    cmd += ["--insecure"] if certs_dir is None else ["--certs", str(certs_dir)]
    return cmd


def _split(address: str, option: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise SystemExit(f"error: {option} {address!r}: expected host:port")
    return host.strip("[]"), int(port)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the gate until SIGTERM / Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m fediot.flower.gate", description=__doc__)
    parser.add_argument("--listen", required=True, help="host:port gateways connect to")
    parser.add_argument("--upstream", required=True, help="host:port of the SuperLink (loopback)")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--certs", type=Path, help="folder written by `fediot certs`")
    group.add_argument("--insecure", action="store_true", help="plain HTTP on both sides (tests)")
    args = parser.parse_args(argv)
    host, port = _split(args.listen, "--listen")
    up_host, up_port = _split(args.upstream, "--upstream")
    up_host = f"[{up_host}]" if ":" in up_host else up_host
    import uvicorn

    if args.insecure:
        app = FleetGate(f"http://{up_host}:{up_port}", ca_cert=None)
        ssl: dict[str, str] = {}
    else:
        folder: Path = args.certs
        for name in ("ca.crt", "server.pem", "server.key"):
            if not (folder / name).is_file():
                print(f"error: {folder / name} not found", file=sys.stderr)
                return 2
        app = FleetGate(f"https://{up_host}:{up_port}", ca_cert=folder / "ca.crt")
        ssl = {"ssl_certfile": str(folder / "server.pem"), "ssl_keyfile": str(folder / "server.key")}
    print(f"fediot fleet gate: Fleet API on {host}:{port} -> SuperLink {up_host}:{up_port}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on", **ssl)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
