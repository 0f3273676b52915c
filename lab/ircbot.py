"""A minimal IRC bot for the lab's C&C capture: joins a channel and beacons, for a bounded time.

It stands in for the IRC client of a BASHLITE-style bot: it registers (NICK/USER), joins ``#cc``, answers
the server's PINGs, sends its own keep-alive PING every ``--ping`` seconds and a status line to the
channel every ``--status`` seconds, then QUITs after ``--seconds``. Run inside the lab's attacker
namespace only (lab/capture.py does): the server address must be a lab address.

    python lab/ircbot.py 10.77.1.1 6667 --seconds 120 --ping 10 --status 30
"""

from __future__ import annotations

import argparse
import ipaddress
import select
import socket
import sys
import time

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Connect, join, beacon until the time is up, quit."""
    parser = argparse.ArgumentParser(description="lab IRC bot (C&C beacon)")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--ping", type=float, default=10.0)
    parser.add_argument("--status", type=float, default=30.0)
    parser.add_argument("--nick", default="iot0002")
    args = parser.parse_args(argv)
    if ipaddress.ip_address(args.host) not in ipaddress.ip_network("10.77.0.0/16"):
        parser.error("the server must be a lab address (10.77.0.0/16)")
    start = time.monotonic()
    with socket.create_connection((args.host, args.port), timeout=10) as sock:
        def send(line: str) -> None:
            sock.sendall(line.encode() + b"\r\n")

        send(f"NICK {args.nick}")
        send(f"USER {args.nick} 0 * :mips")
        joined = False
        next_ping = start + args.ping
        next_status = start + args.status
        buf = b""
        while (now := time.monotonic()) < start + args.seconds:
            ready, _, _ = select.select([sock], [], [], max(0.05, min(next_ping, next_status) - now))
            if ready:
                data = sock.recv(4096)
                if not data:
                    return 1
                buf += data
                *lines, buf = buf.split(b"\r\n")
                for raw in lines:
                    line = raw.decode(errors="replace")
                    if line.startswith("PING "):
                        send("PONG " + line[5:])
                    elif " 001 " in line and not joined:
                        send("JOIN #cc")
                        joined = True
            now = time.monotonic()
            if now >= next_ping:
                send(f"PING :{args.host}")
                next_ping += args.ping
            if now >= next_status and joined:
                send(f"PRIVMSG #cc :[BOT] {args.nick} idle uptime={int(now - start)}")
                next_status += args.status
        send("QUIT :bye")
    return 0


if __name__ == "__main__":
    sys.exit(main())
