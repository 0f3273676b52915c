"""The fediot lab: capture attack traffic of real tools against real services, in network namespaces.

Run as root (``sudo .venv/bin/python lab/capture.py --out data/lab``; ``--help`` lists the options,
``--list`` the captures). What it does, per run:

1. Creates two network namespaces, ``<prefix>-atk`` (the attacker: stands in for an infected IoT device)
   and ``<prefix>-vic`` (the victims), joined by one veth pair created inside them. Nothing links them to
   the host's network; neither has a default route. The attacker is 10.77.0.2, the victims 10.77.1.1 to
   10.77.1.32 (all 32 on the victim's interface: every address any tool targets is assigned here).
   Spoofed sources are drawn from 10.77.128.0/17, which the victim routes to a blackhole (its replies go
   nowhere, not even an ARP request). IPv6 is disabled in both.
2. Starts real services in the victim namespace, each with a config written to a temporary folder:
   busybox telnetd (port 23, a login program that accepts one Mirai default credential), OpenSSH sshd (22,
   password authentication for a user that does not exist, so every guess fails), nginx (80), dnsmasq (53,
   authoritative for ``iot.lab``, no upstream), mosquitto (MQTT, 1883) and ngircd (IRC, 6667).
3. For each capture: tcpdump on the attacker's interface (``-c`` packet cap), the tool(s) under a time
   limit (each process killed by its id when it runs over), then the capture is checked by
   ``lab/verify.py`` (only lab addresses and lab MACs) and written gzipped (``<family>.<variant>.pcap.gz``).
4. Writes ``MANIFEST.json`` (per capture: exact commands, tool package versions, date, packets, sha256).
5. Always (pass, fail, Ctrl-C or SIGTERM) kills every process it started, by id, and deletes both
   namespaces; ``--pid-log FILE`` records every process id it started, so a test can check none is left.

The dataset builder never runs this script: it reads the shipped captures in ``data/lab/``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gzip
import hashlib
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _load_verify() -> Any:
    spec = importlib.util.spec_from_file_location("fediot_lab_verify", Path(__file__).with_name("verify.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


check_capture = _load_verify().check_capture

__all__ = ["CAPTURES", "Capture", "Lab", "main"]

ATTACKER_IP = "10.77.0.2"
ATTACKER_MAC = "02:77:00:00:00:02"
VICTIM_IP = "10.77.1.1"
VICTIM_MAC = "02:77:00:00:01:01"
VICTIM_ADDRESSES = [f"10.77.1.{i}" for i in range(1, 33)]
SPOOF_NET = "10.77.128.0/17"
PREFIX_LEN = 16
ATK_IF, VIC_IF = "atk0", "vic0"
SNAPLEN = 256
"""tcpdump snap length: headers and the start of payloads (the wire length is kept in every record)."""

# Mirai's built-in telnet credential list (a subset, as in the leaked source's scanner table)
MIRAI_CREDENTIALS = [
    ("root", "xc3511"), ("root", "vizxv"), ("root", "admin"), ("admin", "admin"), ("root", "888888"),
    ("root", "xmhdipc"), ("root", "default"), ("root", "juantech"), ("root", "123456"), ("root", "54321"),
    ("support", "support"), ("root", ""), ("admin", "password"), ("root", "root"), ("root", "12345"),
    ("user", "user"), ("admin", ""), ("root", "pass"), ("admin", "admin1234"), ("root", "1111"),
    ("admin", "smcadmin"), ("admin", "1111"), ("root", "666666"), ("root", "password"), ("root", "1234"),
    ("root", "klv123"), ("Administrator", "admin"), ("service", "service"), ("supervisor", "supervisor"),
    ("guest", "guest"), ("guest", "12345"), ("admin1", "password"), ("administrator", "1234"),
    ("666666", "666666"), ("888888", "888888"), ("ubnt", "ubnt"), ("root", "klv1234"), ("root", "Zte521"),
    ("root", "hi3518"), ("root", "jvbzd"), ("root", "anko"), ("root", "zlxx."), ("root", "7ujMko0vizxv"),
    ("root", "7ujMko0admin"), ("root", "system"), ("root", "ikwb"), ("root", "dreambox"), ("root", "user"),
]  # fmt: skip
TELNET_ACCEPTS = ("root", "anko")
"""The one credential the lab's telnet login accepts (a Mirai default, near the end of the list)."""

PACKAGES = {
    "ip": "iproute2", "tcpdump": "tcpdump", "nmap": "nmap", "masscan": "masscan", "hping3": "hping3",
    "hydra": "hydra", "ab": "apache2-utils", "arp-scan": "arp-scan", "dnsperf": "dnsperf",
    "mosquitto_sub": "mosquitto-clients", "mosquitto_pub": "mosquitto-clients", "busybox": "busybox-static",
    "sshd": "openssh-server", "ssh-keygen": "openssh-client", "nginx": "nginx-light",
    "dnsmasq": "dnsmasq-base", "mosquitto": "mosquitto", "ngircd": "ngircd",
}  # fmt: skip
"""Every program the lab runs -> the Debian package that provides it (``.ci/run`` installs them)."""


class LabError(RuntimeError):
    """The lab cannot run (missing tool, not root, a service that does not start, a bad capture)."""


@dataclass(frozen=True)
class Capture:
    """One capture: ``steps`` run one after another; the commands of one step run at the same time.

    A command is ``(namespace, argv)`` with namespace ``"atk"`` or ``"vic"``; ``{out}``-free, fully
    spelled out, so the manifest records exactly what ran.
    """

    name: str
    description: str
    steps: list[list[tuple[str, list[str]]]]
    services: tuple[str, ...] = ()
    timeout_s: float = 60.0
    max_packets: int = 20_000
    ship: bool = True
    tools: tuple[str, ...] = field(default=())


def _atk(*argv: str) -> tuple[str, list[str]]:
    return ("atk", list(argv))


def _hping(flags: list[str], count: int, interval_us: int, source: str | None = None) -> list[str]:
    argv = ["hping3", "-q", *flags, "-c", str(count), "-i", f"u{interval_us}"]
    if source is not None:
        argv += ["-a", source]
    return [*argv, VICTIM_IP]


def _spoofed_steps(flags: list[str], *, seed: int, sources: int = 64, per_source: int = 60,
                   parallel: int = 8) -> list[list[tuple[str, list[str]]]]:  # fmt: skip
    """Return the steps of a spoofed hping3 flood: one hping3 per spoofed source, ``parallel`` at a time.

    hping3 has no "random source inside a range" option (``--rand-source`` draws from all of IPv4, which
    the lab may not use), so each hping3 gets one source (``-a``), drawn (seeded) from 10.77.128.0/17.
    """
    rng = random.Random(seed)
    picked = sorted(rng.sample(range(1, 32767), sources))
    addresses = [f"10.77.{128 + (k >> 8)}.{k & 0xFF}" for k in picked]
    rng.shuffle(addresses)
    return [
        [_atk(*_hping(flags, per_source, 1000, a)) for a in addresses[i : i + parallel]]
        for i in range(0, sources, parallel)
    ]


def _captures() -> dict[str, Capture]:
    targets = f"{VICTIM_ADDRESSES[0]}-{VICTIM_ADDRESSES[-1].rsplit('.', 1)[1]}"  # 10.77.1.1-32 (nmap)
    full_range = f"{VICTIM_ADDRESSES[0]}-{VICTIM_ADDRESSES[-1]}"  # 10.77.1.1-10.77.1.32
    mac = ["--router-mac", VICTIM_MAC, "--adapter-ip", ATTACKER_IP, "--adapter", ATK_IF]
    hydra = ["hydra", "-C", "{creds}", "-t", "4", "-I", "-o", "/dev/null", "-w", "5"]
    dns_names = "{dns_queries}"
    caps = [
        Capture("bruteforce.telnet", "hydra: Mirai's default credentials against busybox telnetd",
                [[_atk(*hydra, f"telnet://{VICTIM_IP}:23")]], ("telnet",), 180, 30_000),
        Capture("bruteforce.ssh", "hydra: Mirai's default credentials against OpenSSH",
                [[_atk(*hydra, f"ssh://{VICTIM_IP}:22")]], ("ssh",), 180, 30_000),
        Capture("scan.nmap_syn", "nmap SYN scan, 1000 ports, fast",
                [[_atk("nmap", "-n", "-Pn", "-sS", "-p", "1-1000", "--max-retries", "1", VICTIM_IP)]],
                ("ssh", "telnet", "http"), 60),
        Capture("scan.nmap_connect", "nmap connect scan, 1000 ports",
                [[_atk("nmap", "-n", "-Pn", "-sT", "-p", "1-1000", "--max-retries", "1", VICTIM_IP)]],
                ("ssh", "telnet", "http"), 60),
        Capture("scan.nmap_udp", "nmap UDP scan, 200 ports",
                [[_atk("nmap", "-n", "-Pn", "-sU", "-p", "1-200", "--max-retries", "1", VICTIM_IP)]],
                ("dns",), 90),
        Capture("scan.nmap_version", "nmap service/version scan of the victim's open ports",
                [[_atk("nmap", "-n", "-Pn", "-sV", "-p", "22,23,53,80,1883,6667", "--version-light",
                       VICTIM_IP)]], ("ssh", "telnet", "http", "dns", "mqtt", "irc"), 120),
        Capture("scan.nmap_syn_slow", "nmap SYN scan at 1 probe/s (100 ports, ~100 s)",
                [[_atk("nmap", "-n", "-Pn", "-sS", "-p", "1-100", "--max-retries", "0", "--max-rate", "1",
                       VICTIM_IP)]], ("ssh", "telnet", "http"), 150),
        # masscan 1.3.2 here finishes its probes but never leaves its --wait phase: the lab's time limit
        # stops it (the manifest records timed_out), a few seconds after its last probe
        Capture("scan.masscan", "masscan SYN scan, 250 ports x 32 hosts at 1000 probes/s",
                [[_atk("masscan", *mac, "-p", "1-250", "--rate", "1000", "--wait", "2", full_range)]],
                ("ssh", "telnet", "http"), 25, 30_000),
        Capture("scan.masscan_telnet_slow", "masscan telnet scan (port 23) of 32 hosts at 1 probe/s",
                [[_atk("masscan", *mac, "-p", "23", "--rate", "1", "--wait", "2", full_range)]],
                ("telnet",), 60),
        Capture("scan.icmp_sweep", "nmap ICMP echo sweep of 32 hosts at 1 probe/s",
                [[_atk("nmap", "-n", "-sn", "-PE", "--disable-arp-ping", "--max-rate", "1", targets)]],
                (), 90),
        Capture("scan.arp", "arp-scan of 32 hosts",
                [[_atk("arp-scan", "-I", ATK_IF, "--retry", "2", "--interval", "50", full_range)]],
                (), 30),
        Capture("flood.syn", "hping3 SYN flood to port 80, 4000 packets",
                [[_atk(*_hping(["-S", "-p", "80"], 4000, 250))]], ("http",), 30),
        Capture("flood.ack", "hping3 ACK flood to port 80, 4000 packets",
                [[_atk(*_hping(["-A", "-p", "80"], 4000, 250))]], ("http",), 30),
        Capture("flood.udp", "hping3 UDP flood (512-byte payload) to port 9999, 4000 packets",
                [[_atk(*_hping(["--udp", "-p", "9999", "-d", "512"], 4000, 250))]], (), 30),
        Capture("flood.icmp", "hping3 ICMP echo flood, 4000 packets",
                [[_atk(*_hping(["--icmp", "-d", "56"], 4000, 250))]], (), 30),
        Capture("flood.syn_spoofed", "hping3 SYN flood from 64 spoofed lab sources x 60 packets",
                _spoofed_steps(["-S", "-p", "80"], seed=1), ("http",), 60),
        Capture("flood.ack_spoofed", "hping3 ACK flood from 64 spoofed lab sources x 60 packets",
                _spoofed_steps(["-A", "-p", "80"], seed=2), ("http",), 60),
        Capture("flood.udp_spoofed", "hping3 UDP flood from 64 spoofed lab sources x 60 packets",
                _spoofed_steps(["--udp", "-p", "9999", "-d", "512"], seed=3), (), 60),
        Capture("flood.icmp_spoofed", "hping3 ICMP flood from 64 spoofed lab sources x 60 packets",
                _spoofed_steps(["--icmp", "-d", "56"], seed=4), (), 60),
        Capture("flood.http_get", "ab: 2000 HTTP GETs (new connection each), 20 at a time, to nginx",
                [[_atk("ab", "-n", "2000", "-c", "20", "-s", "5", "-r", f"http://{VICTIM_IP}/")]],
                ("http",), 60, 40_000),
        Capture("dns.random_subdomain", "dnsperf: 3000 queries for random names under iot.lab at 300/s",
                [[_atk("dnsperf", "-s", VICTIM_IP, "-d", dns_names, "-n", "1", "-Q", "300", "-c", "1",
                       "-l", "20")]], ("dns",), 40),
        Capture("cc.mqtt", "MQTT C&C: bot subscribes (keep-alive 10 s), reports every 15 s, one command",
                [[_atk("mosquitto_sub", "-h", VICTIM_IP, "-i", "bot-0002", "-t", "bots/cmd", "-k", "10",
                       "-W", "120", "-q", "1"),
                  _atk("sh", "-c", f"for i in 1 2 3 4 5 6 7 8; do sleep 15; mosquitto_pub -h {VICTIM_IP} "
                       "-i bot-0002-r -t bots/report -q 1 -m \"up id=0002 n=$i\"; done"),
                  ("vic", ["sh", "-c", f"sleep 50; mosquitto_pub -h {VICTIM_IP} -t bots/cmd -q 1 "
                           f"-m 'scan {targets}'"])]], ("mqtt",), 130),
        Capture("cc.irc", "IRC C&C: bot joins #cc, keep-alive PING every 10 s, status every 30 s",
                [[_atk(sys.executable, str(Path(__file__).with_name("ircbot.py")), VICTIM_IP, "6667",
                       "--seconds", "120", "--ping", "10", "--status", "30")]], ("irc",), 130),
        Capture("test.nmap_top100", "nmap SYN scan of the top 100 ports (the CI test's capture)",
                [[_atk("nmap", "-n", "-Pn", "-sS", "--top-ports", "100", "--max-retries", "1", VICTIM_IP)]],
                ("dns",), 60, 5_000, ship=False),
    ]  # fmt: skip
    return {c.name: c for c in caps}


CAPTURES = _captures()
"""Every capture the lab can make, by name (``family.variant``)."""


def _run(argv: list[str], *, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[:300]}")
    return proc


class Lab:
    """The namespaces, services and processes of one run; :meth:`close` removes them all."""

    def __init__(self, prefix: str, work: Path, pid_log: Path) -> None:
        self.ns = {"atk": f"{prefix}-atk", "vic": f"{prefix}-vic"}
        self.work = work
        self.pid_log = pid_log
        self.procs: list[subprocess.Popen[bytes]] = []
        self.services: set[str] = set()

    # --- processes ---
    def spawn(
        self, where: str, argv: list[str], *, log: str, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside namespace ``where`` in its own process group; its id is logged."""
        out = (self.work / f"{log}.log").open("ab")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[where], *argv], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=cwd or self.work, start_new_session=True,
        )  # fmt: skip
        out.close()
        self.procs.append(proc)
        with self.pid_log.open("a") as fh:
            fh.write(f"{proc.pid}\n")
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 3.0) -> None:
        """Signal ``proc``'s process group (its id), then SIGKILL it if it outlives ``grace`` seconds."""
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    # --- setup ---
    def create(self) -> None:
        """Create both namespaces and the veth pair between them (never in the host namespace)."""
        atk, vic = self.ns["atk"], self.ns["vic"]
        existing = _run(["ip", "netns", "list"]).stdout
        if atk in existing or vic in existing:
            raise LabError(f"namespace {atk} or {vic} already exists (an earlier run not cleaned up?)")
        _run(["ip", "netns", "add", atk])
        _run(["ip", "netns", "add", vic])
        _run(["ip", "-n", atk, "link", "add", ATK_IF, "type", "veth", "peer", "name", VIC_IF, "netns", vic])
        for ns in (atk, vic):
            for key in ("all", "default", "lo"):
                _run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        _run(["ip", "-n", atk, "link", "set", ATK_IF, "address", ATTACKER_MAC])
        _run(["ip", "-n", vic, "link", "set", VIC_IF, "address", VICTIM_MAC])
        for ns, ifname in ((atk, ATK_IF), (vic, VIC_IF)):
            _run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{ifname}.disable_ipv6=1"])
        _run(["ip", "-n", atk, "addr", "add", f"{ATTACKER_IP}/{PREFIX_LEN}", "dev", ATK_IF])
        for address in VICTIM_ADDRESSES:
            _run(["ip", "-n", vic, "addr", "add", f"{address}/{PREFIX_LEN}", "dev", VIC_IF])
        _run(["ip", "-n", vic, "route", "add", "blackhole", SPOOF_NET])
        for key in ("net.ipv4.icmp_ratelimit=0", "net.ipv4.conf.all.rp_filter=0"):
            _run(["ip", "netns", "exec", vic, "sysctl", "-qw", key])
        _run(["ip", "-n", atk, "link", "set", ATK_IF, "up"])
        _run(["ip", "-n", vic, "link", "set", VIC_IF, "up"])
        for ns in (atk, vic):
            routes = _run(["ip", "-n", ns, "route", "show", "default"]).stdout.strip()
            if routes:
                raise LabError(f"namespace {ns} has a default route ({routes}); refusing to run")
        time.sleep(1.0)  # let the veth carrier come up

    def start_services(self, names: tuple[str, ...]) -> None:
        """Start the victim services in ``names`` not yet running, and wait until each listens."""
        for name in names:
            if name in self.services:
                continue
            argv, port, proto = self._service(name)
            self.spawn("vic", argv, log=f"service-{name}")
            self._wait_listening(name, port, proto)
            self.services.add(name)

    def _service(self, name: str) -> tuple[list[str], int, str]:
        w = self.work
        if name == "telnet":
            login = w / "telnet-login.sh"
            user, password = TELNET_ACCEPTS
            login.write_text(
                "#!/bin/sh\n# The lab's telnet login: 3 tries, accepts one Mirai default credential.\n"
                "for try in 1 2 3; do\n  printf 'login: '; read -r u\n  printf 'Password: '\n"
                "  stty -echo 2>/dev/null; read -r p; stty echo 2>/dev/null; echo\n"
                "  u=$(printf %s \"$u\" | tr -d '\\r\\000'); p=$(printf %s \"$p\" | tr -d '\\r\\000')\n"
                f"  if [ \"$u\" = '{user}' ] && [ \"$p\" = '{password}' ]; then\n"
                "    printf '\\nBusyBox v1.35.0 built-in shell (ash)\\n\\n# '; sleep 1; exit 0\n  fi\n"
                "  echo 'Login incorrect'\ndone\n"
            )
            login.chmod(0o755)
            return ["busybox", "telnetd", "-F", "-K", "-b", f"{VICTIM_IP}:23", "-l", str(login)], 23, "tcp"
        if name == "ssh":
            key = w / "ssh_host_ed25519_key"
            if not key.exists():
                _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
            cfg = w / "sshd_config"
            cfg.write_text(
                f"ListenAddress {VICTIM_IP}\nPort 22\nHostKey {key}\nPidFile none\nUsePAM no\n"
                "PasswordAuthentication yes\nKbdInteractiveAuthentication no\nPermitRootLogin no\n"
                "AllowUsers fediot-lab-nobody\nMaxStartups 100\nMaxAuthTries 10\nLogLevel ERROR\n"
            )
            return ["/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)], 22, "tcp"
        if name == "http":
            (w / "www").mkdir(exist_ok=True)
            (w / "www" / "index.html").write_text("<html><body><h1>IP camera</h1>login</body></html>\n")
            cfg = w / "nginx.conf"
            cfg.write_text(
                f"daemon off;\nworker_processes 1;\npid {w}/nginx.pid;\nerror_log {w}/nginx-error.log;\n"
                "events { worker_connections 1024; }\n"
                f"http {{ access_log off; client_body_temp_path {w}/nb; proxy_temp_path {w}/np;\n"
                f"  fastcgi_temp_path {w}/nf; uwsgi_temp_path {w}/nu; scgi_temp_path {w}/ns;\n"
                f"  server {{ listen {VICTIM_IP}:80; root {w}/www; }} }}\n"
            )
            return ["nginx", "-c", str(cfg), "-p", str(w)], 80, "tcp"
        if name == "dns":
            argv = ["dnsmasq", "-k", "-C", "/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
                    f"--listen-address={VICTIM_IP}", "--port=53", "--local=/iot.lab/",
                    f"--address=/cnc.iot.lab/{VICTIM_IP}", "--pid-file=", "--cache-size=0"]  # fmt: skip
            return argv, 53, "udp"
        if name == "mqtt":
            cfg = w / "mosquitto.conf"
            cfg.write_text(f"listener 1883 {VICTIM_IP}\nallow_anonymous true\npersistence false\n"
                           "log_dest stderr\n")  # fmt: skip
            return ["mosquitto", "-c", str(cfg)], 1883, "tcp"
        if name == "irc":
            cfg = w / "ngircd.conf"
            motd = w / "ngircd.motd"
            motd.write_text("iot.lab C&C\n")
            cfg.write_text(
                f"[Global]\nName = irc.iot.lab\nInfo = lab\nListen = {VICTIM_IP}\nPorts = 6667\n"
                f"PidFile = {w}/ngircd.pid\nMotdFile = {motd}\n[Limits]\nPingTimeout = 30\n"
                "[Options]\nPAM = no\nDNS = no\nIdent = no\n"
            )
            return ["ngircd", "-n", "-f", str(cfg)], 6667, "tcp"
        raise LabError(f"unknown service {name!r}")

    def _wait_listening(self, name: str, port: int, proto: str) -> None:
        flag = "-Hltn" if proto == "tcp" else "-Hlun"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            out = _run(["ip", "netns", "exec", self.ns["vic"], "ss", flag]).stdout
            if f"{VICTIM_IP}:{port} " in out:
                return
            time.sleep(0.2)
        log = (self.work / f"service-{name}.log").read_text(errors="replace")[-400:]
        raise LabError(f"service {name} is not listening on {VICTIM_IP}:{port} after 15 s: {log}")

    # --- teardown ---
    def close(self) -> None:
        """Stop every started process (by id), kill anything left inside the namespaces, delete them."""
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                self.stop(proc, grace=2.0)
        for ns in self.ns.values():
            listed = _run(["ip", "netns", "list"], check=False).stdout.split()
            if ns not in listed:
                continue
            pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
            for pid in pids:  # only processes inside our own namespace: descendants of what we started
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _run(["ip", "netns", "del", ns], check=False)


def _substitute(argv: list[str], files: dict[str, str]) -> list[str]:
    return [files.get(a.strip("{}"), a) if a.startswith("{") and a.endswith("}") else a for a in argv]


def run_capture(lab: Lab, cap: Capture, out: Path, files: dict[str, str]) -> dict[str, Any]:
    """Make one capture: tcpdump around the tool(s), bounded in packets and seconds; verify; gzip."""
    lab.start_services(cap.services)
    raw = lab.work / f"{cap.name}.pcap"
    argv = ["tcpdump", "-i", ATK_IF, "-n", "-U", "-s", str(SNAPLEN), "-c", str(cap.max_packets),
            "-w", str(raw)]  # fmt: skip
    dump = lab.spawn("atk", argv, log=f"tcpdump-{cap.name}")
    dump_log = lab.work / f"tcpdump-{cap.name}.log"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "listening on" not in dump_log.read_text():
        if dump.poll() is not None:
            raise LabError(f"tcpdump exited early: {dump_log.read_text()[-300:]}")
        time.sleep(0.1)
    started = time.monotonic()
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    commands: list[str] = []
    timed_out = False
    end = started + cap.timeout_s
    for step in cap.steps:
        procs = []
        for where, argv in step:
            argv = _substitute(argv, files)
            commands.append(f"[{where}] " + " ".join(argv))
            procs.append(lab.spawn(where, argv, log=f"tool-{cap.name}"))
        for proc in procs:
            try:
                proc.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
                lab.stop(proc)
    time.sleep(1.5)  # trailing replies
    lab.stop(dump, signal.SIGINT, grace=5)
    seconds = time.monotonic() - started
    check = check_capture(raw)
    if not check.ok:
        tail = (lab.work / f"tool-{cap.name}.log").read_text(errors="replace")[-500:]
        problems = "; ".join(check.problems)
        raise LabError(f"capture {cap.name} failed the lab check: {problems}; tool output: {tail}")
    target = out / f"{cap.name}.pcap.gz"
    data = raw.read_bytes()
    with gzip.GzipFile(target, "wb", compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return {
        "description": cap.description,
        "commands": commands,
        "tools": sorted({_tool_of(c) for c in commands}),
        "date": date,
        "seconds": round(seconds, 1),
        "timed_out": timed_out,
        "packets": check.packets,
        "arp_packets": check.arp,
        "duration_s": round(check.last_time - check.first_time, 3),
        "max_packets": cap.max_packets,
        "timeout_s": cap.timeout_s,
        "bytes_gz": target.stat().st_size,
        "sha256_gz": hashlib.sha256(target.read_bytes()).hexdigest(),
        "sha256_pcap": hashlib.sha256(data).hexdigest(),
        "lab_check": "ok",
    }


def _tool_of(command: str) -> str:
    argv = command.split("] ", 1)[1].split()
    if argv[0] == "sh":
        return "mosquitto_pub"
    if argv[0].endswith("python3") or argv[0] == sys.executable:
        return "ircbot.py (python3)"
    return argv[0]


def tool_versions() -> dict[str, str]:
    """Return ``{program: "package version"}`` from dpkg for every program the lab runs."""
    out = {}
    for prog, pkg in sorted(PACKAGES.items()):
        proc = _run(["dpkg-query", "-W", "-f=${Version}", pkg], check=False)
        out[prog] = f"{pkg} {proc.stdout.strip()}" if proc.returncode == 0 else f"{pkg} (not installed)"
    return out


_SERVICE_PROGRAMS = {"telnet": ("busybox",), "ssh": ("sshd", "ssh-keygen"), "http": ("nginx",),
                     "dns": ("dnsmasq",), "mqtt": ("mosquitto",), "irc": ("ngircd",)}  # fmt: skip


def needed_programs(names: list[str]) -> list[str]:
    """Return the programs the captures ``names`` run (tools, their services, ip, tcpdump)."""
    progs = {"ip", "tcpdump", "sysctl", "ss"}
    for name in names:
        cap = CAPTURES[name]
        for service in cap.services:
            progs.update(_SERVICE_PROGRAMS[service])
        for step in cap.steps:
            for _, argv in step:
                if argv[0] == "sh":
                    progs.update(w for w in ("mosquitto_pub", "mosquitto_sub") if w in " ".join(argv))
                elif argv[0] != sys.executable:
                    progs.add(argv[0])
    return sorted(progs)


def check_ready(names: list[str]) -> None:
    """Raise :class:`LabError` naming what is missing if the captures ``names`` cannot run here."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, raw sockets): run it with sudo")
    packages = {**PACKAGES, "sysctl": "procps", "ss": "iproute2"}
    missing = sorted({packages[prog] for prog in needed_programs(names) if shutil.which(prog) is None
                      and not Path(f"/usr/sbin/{prog}").exists()})  # fmt: skip
    if missing:
        raise LabError("missing programs; install: apt-get install -y " + " ".join(missing))


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    """Command line: see ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "lab")
    parser.add_argument("--only", nargs="*", help="capture names (default: every shipped capture)")
    parser.add_argument("--list", action="store_true", help="list the captures and exit")
    parser.add_argument("--sources-md", action="store_true",
                        help="print the SOURCES.md table of <out>/MANIFEST.json and exit")  # fmt: skip
    parser.add_argument("--prefix", default=f"fediot-lab-{os.getpid()}", help="namespace name prefix")
    parser.add_argument("--seed", type=int, default=0, help="fixes the DNS query names")
    parser.add_argument("--pid-log", type=Path, help="append the id of every started process here")
    parser.add_argument("--keep-work", action="store_true", help="keep the temporary folder (logs)")
    parser.add_argument("--fail-after-setup", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.list:
        for cap in CAPTURES.values():
            print(f"{cap.name:28s} {'' if cap.ship else '(not shipped) '}{cap.description}")
        return 0
    if args.sources_md:
        print(sources_markdown(json.loads((args.out / "MANIFEST.json").read_text())), end="")
        return 0
    names = args.only or [c.name for c in CAPTURES.values() if c.ship]
    unknown = [n for n in names if n not in CAPTURES]
    if unknown:
        parser.error(f"unknown capture(s) {unknown}; see --list")
    try:
        check_ready(names + (["test.nmap_top100"] if args.fail_after_setup else []))
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fediot-lab-"))
    pid_log: Path = args.pid_log or work / "pids.txt"
    pid_log.touch()
    files = _write_inputs(work, args.seed)
    lab = Lab(args.prefix, work, pid_log)
    results: dict[str, dict[str, Any]] = {}
    status = 0
    with _signals_raise():
        try:
            lab.create()
            if args.fail_after_setup:
                lab.start_services(("dns",))
                raise LabError("--fail-after-setup: failing on purpose after setup")
            for name in names:
                print(f"lab: capturing {name} ...", file=sys.stderr, flush=True)
                try:
                    info = run_capture(lab, CAPTURES[name], out, files)
                except LabError as exc:  # the other captures still run; the exit status says it failed
                    print(f"lab: {exc}", file=sys.stderr, flush=True)
                    status = 1
                    continue
                results[name] = info
                print(f"lab: {name}: {info['packets']} packets, {info['bytes_gz']} bytes gz, "
                      f"{info['seconds']} s", file=sys.stderr, flush=True)  # fmt: skip
        except LabError as exc:
            print(f"lab: {exc}", file=sys.stderr)
            status = 1
        finally:
            lab.close()
            if args.keep_work:
                print(f"lab: logs kept in {work}", file=sys.stderr)
            else:
                shutil.rmtree(work, ignore_errors=True)
    if results:
        _write_manifest(out, results, args)
    return status


def _write_inputs(work: Path, seed: int) -> dict[str, str]:
    creds = work / "mirai-credentials.txt"
    creds.write_text("".join(f"{u}:{p}\n" for u, p in MIRAI_CREDENTIALS))
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    queries = work / "dns-queries.txt"
    queries.write_text("".join(f"{''.join(rng.choices(letters, k=12))}.iot.lab A\n" for _ in range(3000)))
    return {"creds": str(creds), "dns_queries": str(queries)}


def _write_manifest(out: Path, results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    path = out / "MANIFEST.json"
    manifest: dict[str, object] = {}
    if path.exists():
        manifest = json.loads(path.read_text())
    captures = dict(manifest.get("captures", {}))  # type: ignore[call-overload]
    captures.update(results)
    manifest = {
        "lab": "fediot lab (lab/capture.py): real tools against real services in network namespaces",
        "attacker": {"ip": ATTACKER_IP, "mac": ATTACKER_MAC},
        "victim": {"ips": f"{VICTIM_ADDRESSES[0]}-{VICTIM_ADDRESSES[-1]}", "mac": VICTIM_MAC},
        "spoofed_sources": SPOOF_NET,
        "snaplen": SNAPLEN,
        "seed": args.seed,
        "tool_versions": tool_versions(),
        "kernel": os.uname().release,
        "captures": dict(sorted(captures.items())),
    }
    path.write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")


def sources_markdown(manifest: dict[str, Any]) -> str:
    """Return the ``data/SOURCES.md`` rows (one per capture) and the tool versions, as Markdown."""
    versions = manifest["tool_versions"]
    lines = [
        "| file | family.variant | tool (Debian package version) | packets | duration (s) | date (UTC) "
        "| gz size | sha256 (gz) | sha256 (pcap) | command (namespace) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in manifest["captures"].items():
        tools = ", ".join(versions.get(t, t) for t in c["tools"])
        commands = c["commands"]
        shown = "<br>".join(f"`{x}`" for x in commands[:3])
        if len(commands) > 3:
            shown += f"<br>... {len(commands)} commands in all (MANIFEST.json)"
        lines.append(
            f"| lab/{name}.pcap.gz | {name} | {tools} | {c['packets']:,} | {c['duration_s']} | {c['date']} "
            f"| {c['bytes_gz']:,} | {c['sha256_gz']} | {c['sha256_pcap']} | {shown} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
