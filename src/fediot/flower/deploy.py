"""Deployment helpers: TLS and SuperNode-auth keys, and the SuperLink/SuperNode command lines."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import ipaddress
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FLOWER_ENV",
    "CertPaths",
    "add_node_keys",
    "check_tls",
    "flower_env",
    "format_config",
    "generate_certs",
    "register_command",
    "run_command",
    "run_foreground",
    "run_foreground_all",
    "start_process",
    "stop_process",
    "submit",
    "submit_config",
    "superexec_command",
    "superlink_command",
    "supernode_command",
    "wait_for_tls",
    "write_app",
    "write_connection",
]

FLOWER_ENV: Mapping[str, str] = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
}
"""Environment every Flower process gets: no telemetry, no update check, no per-run env builds."""

_MISSING = "generating certificates needs `cryptography`; install it with: pip install 'fediot[flower]'"


@dataclass(frozen=True, slots=True)
class CertPaths:
    """The files :func:`generate_certs` writes.

    Attributes
    ----------
    ca_cert, ca_key : Path
        The certificate authority (keep ``ca_key`` offline in production).
    server_cert, server_key : Path
        The SuperLink's TLS certificate (SANs: the given hosts/IPs) and key.
    node_keys : list of Path
        One SuperNode private key per node (OpenSSH format, EC P-384), each with a ``.pub`` beside it.
    """

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    node_keys: list[Path]

    @property
    def node_public_keys(self) -> list[Path]:
        """The ``.pub`` files to register with the SuperLink."""
        return [p.with_suffix(".pub") for p in self.node_keys]


def _write_private(path: Path, data: bytes) -> None:
    from fediot.fileio import atomic_write

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    atomic_write(path, write, mode=0o600)


def _write_public(path: Path, data: bytes) -> None:
    from fediot.fileio import atomic_write

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    atomic_write(path, write)  # the umask's mode, as any new file


def _node_key_pair(key_path: Path) -> None:
    """Write a new SuperNode auth key pair: ``key_path`` (OpenSSH EC P-384, 0600) and its ``.pub``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    node_key = ec.generate_private_key(ec.SECP384R1())
    private = node_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = node_key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    _write_private(key_path, private)
    _write_public(key_path.with_suffix(".pub"), public)


def _node_index(path: Path) -> int:
    try:
        return int(path.stem.removeprefix("supernode-"))
    except ValueError:
        return 0


def generate_certs(
    out: str | Path,
    *,
    num_nodes: int = 3,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    days: int = 365,
    force: bool = False,
) -> CertPaths:
    """Create a CA, a server certificate for ``hosts`` and ``num_nodes`` SuperNode auth key pairs.

    Private keys get mode 0600; certificates and public keys the umask's mode.

    Parameters
    ----------
    out : str or Path
        Folder to write into (created).
    num_nodes : int
        SuperNode key pairs to create (``supernode-1.key`` / ``.pub``, ...).
    hosts : sequence of str
        IP addresses and DNS names the SuperLink is reached at (subject alternative names).
    days : int
        Validity of the certificates.
    force : bool
        Replace an existing CA, server certificate and node keys in ``out`` (and remove the old node
        keys). Without it existing material is refused (:func:`add_node_keys` adds keys to it).

    Returns
    -------
    CertPaths

    Raises
    ------
    FediotError
        If ``out`` already holds certificates or keys and ``force`` is false.
    """
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(_MISSING) from exc
    if num_nodes < 0:
        raise ValueError(f"num_nodes must be >= 0, got {num_nodes}")
    from fediot.errors import FediotError

    folder = Path(out)
    existing = [
        p for p in (folder / n for n in ("ca.crt", "ca.key", "server.pem", "server.key")) if p.exists()
    ] + sorted(folder.glob("supernode-*.key"))
    if existing and not force:
        raise FediotError(
            f"{existing[0]} exists: refusing to replace the CA and keys in {folder} (add gateway keys "
            f"under this CA with `fediot certs --out {folder} --add-nodes N`, or replace all with --force)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("supernode-*.key"):
        old.with_suffix(".pub").unlink(missing_ok=True)
        old.unlink()
    now = dt.datetime.now(dt.UTC)
    pem = serialization.Encoding.PEM
    no_pass = serialization.NoEncryption()

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fediot CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    sans: list[x509.GeneralName] = []
    # loopback always: `fediot server` binds the SuperLink's Control API to 127.0.0.1, and the fleet gate
    # and the operator's `flwr` CLI verify it there
    for host in dict.fromkeys([*hosts, "127.0.0.1", "localhost"]):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    server_key = ec.generate_private_key(ec.SECP384R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else "superlink")])
        )
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    paths = CertPaths(
        ca_cert=folder / "ca.crt",
        ca_key=folder / "ca.key",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        node_keys=[folder / f"supernode-{i}.key" for i in range(1, num_nodes + 1)],
    )
    _write_private(paths.ca_key, ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, no_pass))
    _write_private(
        paths.server_key, server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, no_pass)
    )
    _write_public(paths.server_cert, server_cert.public_bytes(pem))
    for key_path in paths.node_keys:
        _node_key_pair(key_path)
    _write_public(paths.ca_cert, ca_cert.public_bytes(pem))  # last: its presence marks a complete folder
    return paths


def add_node_keys(out: str | Path, num_nodes: int) -> list[Path]:
    """Add ``num_nodes`` SuperNode auth key pairs to a folder written by :func:`generate_certs`.

    The existing CA and server certificate are kept (gateways keep trusting the same ``ca.crt``); the new
    keys are numbered after the highest existing ``supernode-N.key``. Register each new ``.pub`` with
    the SuperLink (``flwr supernode register``) before its gateway joins.

    Returns
    -------
    list of Path
        The new private keys (each with a ``.pub`` beside it).

    Raises
    ------
    FediotError
        If ``out`` holds no ``ca.crt`` (create the folder with :func:`generate_certs` first).
    """
    from fediot.errors import FediotError

    folder = Path(out)
    if num_nodes < 1:
        raise FediotError(f"the number of node keys to add must be >= 1, got {num_nodes}")
    if not (folder / "ca.crt").is_file():
        raise FediotError(f"{folder / 'ca.crt'} not found; create the CA with `fediot certs --out {folder}`")
    start = max((_node_index(p) for p in folder.glob("supernode-*.key")), default=0) + 1
    keys = [folder / f"supernode-{i}.key" for i in range(start, start + num_nodes)]
    for key_path in keys:
        _node_key_pair(key_path)
    return keys


def _executable(name: str) -> str:
    """Find a Flower script on PATH, else beside this interpreter (an unactivated virtual environment)."""
    import sys

    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise FileNotFoundError(
            f"{name} not found on PATH; install the extra with: pip install 'fediot[flower]'"
        )
    return found


def superlink_command(
    certs: CertPaths | None,
    *,
    host: str = "127.0.0.1",
    port: int = 9093,
    database: str | Path | None = None,
    node_auth: bool = True,
) -> list[str]:
    """Return the ``flower-superlink`` command line (TLS unless ``certs`` is None, then ``--insecure``).

    Flower 1.41 serves the Fleet, Control and Runtime APIs over HTTP(S) on ``host:port``: keep ``host``
    on loopback and let gateways in through the fleet gate (:mod:`fediot.flower.gate`), as ``fediot
    server`` does.
    """
    cmd = [_executable("flower-superlink"), "--host", host, "--port", str(port)]
    cmd += ["--disable-runtime-dependency-installation"]
    if certs is None:
        cmd.append("--insecure")
    else:
        cmd += ["--ssl-ca-certfile", str(certs.ca_cert), "--ssl-certfile", str(certs.server_cert)]
        cmd += ["--ssl-keyfile", str(certs.server_key)]
        if node_auth:
            cmd.append("--enable-supernode-auth")
    if database is not None:
        cmd += ["--database", str(database)]
    return cmd


def supernode_command(
    superlink: str,
    *,
    root_cert: str | Path | None,
    auth_key: str | Path | None,
    node_config: Mapping[str, str | int | float],
    port: int = 9094,
    isolation: str = "subprocess",
) -> list[str]:
    """Return the ``flower-supernode`` command line.

    Parameters
    ----------
    superlink : str
        ``host:port`` of the SuperLink.
    root_cert : path or None
        CA certificate that signed the SuperLink's certificate (None: ``--insecure``).
    auth_key : path or None
        This node's private key (OpenSSH, EC) for node authentication.
    node_config : mapping
        Passed as ``--node-config`` (e.g. ``data-path``, ``client-id``).
    port : int
        This SuperNode's local Runtime API port (must differ between nodes on one host).
    isolation : {"subprocess", "process"}
        How the ClientApp runs (``process``: a separately started SuperExec).
    """
    cmd = [_executable("flower-supernode"), "--superlink", superlink, "--port", str(port)]
    cmd += ["--isolation", isolation, "--node-config", format_config(node_config)]
    cmd += ["--insecure"] if root_cert is None else ["--root-certificates", str(root_cert)]
    if auth_key is not None:
        cmd += ["--auth-supernode-private-key", str(auth_key)]
    return cmd


def superexec_command(runtime_api_address: str) -> list[str]:
    """Return the ``flower-superexec`` command for a SuperNode started with ``--isolation process``.

    It connects (on this host, without TLS) to the SuperNode's local Runtime API (``--port``) and
    launches one ClientApp process per message, as the SuperNode's own SuperExec does with
    ``--isolation subprocess``.
    """
    return [_executable("flower-superexec"), "--insecure", "--runtime-api-address", runtime_api_address]


def format_config(config: Mapping[str, str | int | float | bool]) -> str:
    """Format ``config`` as Flower's ``--node-config`` / ``--run-config`` value (TOML-like ``k=v`` pairs).

    Examples
    --------
    >>> format_config({"data-path": "/d/gw1.npy", "num-server-rounds": 3, "resume": False})
    'data-path="/d/gw1.npy" num-server-rounds=3 resume=false'
    """

    def value(v: str | int | float | bool) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            if '"' in v or "\\" in v:
                raise ValueError(f"config value {v!r} may not contain quotes or backslashes")
            return f'"{v}"'
        return repr(v)

    return " ".join(f"{k}={value(v)}" for k, v in config.items())


def write_connection(
    flwr_home: str | Path,
    name: str,
    *,
    address: str,
    root_cert: str | Path | None,
    default: bool = True,
) -> Path:
    """Add (or replace) the SuperLink connection ``name`` in ``$FLWR_HOME/config.toml``; return the file.

    The Flower CLI (``flwr run``, ``flwr supernode register``, ``flwr ls``) reads its SuperLink
    connections from that file. ``root_cert`` None writes ``insecure = true``. Other connections in an
    existing file are kept.
    """
    import tomllib

    import tomli_w  # a dependency of flwr

    path = Path(flwr_home) / "config.toml"
    config: dict[str, object] = tomllib.loads(path.read_text()) if path.exists() else {}
    superlink = config.setdefault("superlink", {})
    if not isinstance(superlink, dict):
        raise ValueError(f"{path}: [superlink] is not a table")
    entry: dict[str, object] = {"address": address}
    if root_cert is None:
        entry["insecure"] = True
    else:
        entry["root-certificates"] = str(Path(root_cert).resolve())
    superlink[name] = entry
    if default or "default" not in superlink:
        superlink["default"] = name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(config))
    return path


def write_app(
    folder: str | Path,
    run_config: Mapping[str, str | int | float | bool],
    *,
    name: str = "fediot-deploy",
    version: str = "0.1.0",
) -> Path:
    """Write a minimal Flower app (a ``pyproject.toml``) running fediot's ServerApp and ClientApp.

    ``flwr run FOLDER CONNECTION`` ships it to the SuperLink as a tiny FAB; the components are
    imported from the installed ``fediot`` on the SuperLink and SuperNodes. ``run_config`` becomes
    ``[tool.flwr.app.config]``: only keys listed there can be overridden with ``--run-config``.

    Returns
    -------
    Path
        The written ``pyproject.toml``.
    """
    import tomli_w

    project = {
        "project": {
            "name": name,
            "version": version,
            "description": "fediot's ServerApp and ClientApp",
            "license": "Apache-2.0",
            "dependencies": [],
        },
        "tool": {
            "flwr": {
                "app": {
                    "publisher": "fediot",
                    "components": {
                        "serverapp": "fediot.flower.server_app:app",
                        "clientapp": "fediot.flower.client_app:app",
                    },
                    "config": dict(run_config),
                }
            }
        },
    }
    path = Path(folder) / "pyproject.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(project))
    return path


def register_command(public_key: str | Path, connection: str) -> list[str]:
    """Return the ``flwr supernode register`` command that allows the SuperNode with ``public_key``.

    Needs a SuperLink started with ``--enable-supernode-auth`` and the connection ``connection`` in
    ``$FLWR_HOME/config.toml`` (see :func:`write_connection`).
    """
    return [_executable("flwr"), "supernode", "register", str(public_key), connection]


def run_command(
    app: str | Path,
    connection: str,
    *,
    run_config: Mapping[str, str | int | float | bool] | None = None,
    stream: bool = True,
) -> list[str]:
    """Return the ``flwr run`` command that submits the Flower app in folder ``app`` to ``connection``.

    With ``stream`` the command prints the run's logs and returns when the run has finished.
    """
    cmd = [_executable("flwr"), "run", str(app), connection]
    if run_config:
        cmd += ["--run-config", format_config(run_config)]
    if stream:
        cmd.append("--stream")
    return cmd


def submit_config(app: str | Path, run_config: Sequence[str]) -> dict[str, str | int | float | bool]:
    """Return the run config ``flwr run APP --run-config ...`` would give the ServerApp, checked by fediot.

    ``run_config`` holds ``--run-config`` strings (``"key=value key2=value2"``, TOML values, or one
    ``.toml`` file) as the Flower CLI reads them. The app's defaults (``[tool.flwr.app.config]`` of
    ``APP/pyproject.toml``) are overlaid with them and the result read strictly by
    :func:`fediot.config.fl_config_from_run_config`, so a wrong key or value is refused here, before
    anything is submitted.

    Raises
    ------
    ConfigError
        If ``app`` is not a Flower app folder, a string cannot be parsed, a key is not one of the app's
        (Flower would reject it after the upload) or a value is refused by fediot's schema.
    """
    import click
    from flwr.common.config import flatten_dict, get_project_config, parse_config_args

    from fediot.config import fl_config_from_run_config
    from fediot.errors import ConfigError

    folder = Path(app)
    if not (folder / "pyproject.toml").is_file():
        raise ConfigError(f"{folder}: not a Flower app folder (no pyproject.toml)")
    try:
        project = get_project_config(folder)
        defaults = flatten_dict(project["tool"]["flwr"]["app"].get("config", {}))
        overrides = parse_config_args(list(run_config))
    except click.ClickException as exc:
        raise ConfigError(f"--run-config: {exc.format_message()}") from None
    except (KeyError, ValueError, OSError) as exc:
        raise ConfigError(f"{folder}/pyproject.toml: not a Flower app config ({exc})") from None
    fused = {**defaults, **overrides}
    fl_config_from_run_config(fused)  # unknown keys (with the closest valid one), types, ranges
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:  # a key fediot knows but this app's pyproject.toml lacks: Flower would refuse it
        raise ConfigError(
            f"--run-config: key {unknown[0]!r} is not in [tool.flwr.app.config] of {folder}/pyproject.toml"
        )
    return fused


def submit(app: str | Path, connection: str, run_config: Sequence[str], *, echo: bool = True) -> str | None:
    """Check the run config, ``flwr run --stream`` the app, and tell whether the ServerApp succeeded.

    Flower 1.41 lists a run whose ServerApp raised as ``finished:completed`` and exits ``flwr run`` with
    0; fediot's ServerApp ends every run with one line (:data:`fediot.flower.server_app.RUN_FINISHED`
    or :data:`~fediot.flower.server_app.RUN_FAILED` and the reason), which this reads from the stream.
    The stream is echoed to stdout as it arrives (``echo``). On Ctrl-C or SIGTERM ``flwr run`` is stopped
    (the run itself goes on on the SuperLink; ``flwr stop`` ends it).

    Returns
    -------
    str or None
        None when the run finished; else the one-line reason it failed.
    """
    import sys

    from fediot.flower.server_app import RUN_FAILED, RUN_FINISHED

    submit_config(app, run_config)  # refused before anything is uploaded
    cmd = [_executable("flwr"), "run", str(app), connection, "--stream"]
    for text in run_config:
        cmd += ["--run-config", text]
    outcome: str | None = "the run's log ended without fediot's last line (see `flwr log RUN_ID`)"
    last = ""

    def read(line: str) -> None:
        nonlocal outcome, last
        if echo:
            sys.stdout.write(line)
            sys.stdout.flush()
        last = line.strip() or last
        if f"fediot INFO: {RUN_FINISHED}" in line:
            outcome = None
        _, marker, rest = line.partition(f"fediot ERROR: {RUN_FAILED}")
        if marker:
            outcome = rest.strip() or "the ServerApp failed"

    code = run_foreground(cmd, on_line=read)
    if code != 0:
        return f"flwr run exited with status {code}" + (f": {last}" if last else "")
    return outcome


def wait_for_tls(
    host: str,
    port: int,
    ca_cert: str | Path,
    *,
    timeout: float = 60.0,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait until ``host:port`` completes a TLS handshake verified against ``ca_cert``.

    Raises
    ------
    TimeoutError
        If no verified handshake succeeded within ``timeout`` seconds.
    RuntimeError
        If ``proc`` (the server being waited for) exits first.
    """
    import socket
    import ssl
    import time

    context = ssl.create_default_context(cafile=str(ca_cert))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before serving TLS")
        try:
            with (
                socket.create_connection((host, port), timeout=2) as sock,
                context.wrap_socket(sock, server_hostname=host),
            ):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"no TLS server at {host}:{port} after {timeout:.0f} s")


def check_tls(host: str, port: int, ca_cert: str | Path, *, timeout: float = 5.0) -> bool:
    """Try one TLS handshake with ``host:port`` verified against ``ca_cert``.

    Returns
    -------
    bool
        True if the handshake verified; False if nothing answered (refused, unreachable, timed out:
        the server may simply not be up yet).

    Raises
    ------
    FediotError
        If a server answered but its certificate does not verify against ``ca_cert`` (wrong CA, wrong
        host name) or it does not speak TLS, or ``ca_cert`` is not a readable PEM certificate.
    """
    import socket
    import ssl

    from fediot.errors import FediotError

    try:
        context = ssl.create_default_context(cafile=str(ca_cert))
    except (OSError, ssl.SSLError) as exc:
        raise FediotError(f"{ca_cert}: not a readable PEM CA certificate ({exc})") from exc
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=host),
        ):
            return True
    except ssl.SSLCertVerificationError as exc:
        raise FediotError(
            f"the server at {host}:{port} is not trusted by {ca_cert}: {exc.verify_message} (is it the CA "
            "that signed the SuperLink's certificate, and is the host one of the certificate's --host names?)"
        ) from exc
    except ssl.SSLError as exc:
        raise FediotError(f"TLS handshake with {host}:{port} failed: {exc.reason or exc}") from exc
    except OSError:
        return False


def _die_with_parent(parent: int) -> None:  # pragma: no cover - runs in the child between fork and exec
    """``preexec_fn``: ask Linux to send SIGTERM to this child when its parent dies (even by SIGKILL)."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)


def flower_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return ``os.environ`` plus :data:`FLOWER_ENV` (plus ``extra``).

    This interpreter's script folder goes first on ``PATH``: the SuperLink and SuperNode start
    ``flower-superexec`` by name, and must find the one of this (maybe unactivated) environment.
    """
    import sys

    env = dict(os.environ)
    env.update(FLOWER_ENV)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if extra:
        env.update(extra)
    return env


def start_process(
    cmd: Sequence[str], *, log_path: str | Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own process group (so :func:`stop_process` stops its children too)."""
    log_file = Path(log_path).open("ab")  # noqa: SIM115 - the child inherits it; ours is closed below
    try:
        return subprocess.Popen(
            list(cmd),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=dict(env or flower_env()),
            start_new_session=True,
        )
    finally:
        log_file.close()


def _descendants(pid: int) -> list[int]:
    """PIDs of all live descendants of ``pid`` (Linux ``/proc``; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_process(proc: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    """Stop ``proc``'s process group and every descendant: SIGTERM, then SIGKILL after ``timeout`` s.

    The group is signalled even if ``proc`` itself already exited (its children may not have).
    Descendants that started their own session (the SuperLink starts ``flower-superexec`` so) are
    found through ``/proc`` before anything is signalled, and stopped as well.
    """
    import signal
    import time

    escaped = [p for p in _descendants(proc.pid) if _pgid(p) not in (None, proc.pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        for pid in escaped:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
        deadline = time.monotonic() + timeout
        while escaped and time.monotonic() < deadline:
            escaped = [p for p in escaped if _alive(p)]
            time.sleep(0.05)
        if proc.poll() is not None and not escaped and _pgid_gone(proc.pid):
            return
    proc.wait(timeout=timeout)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _alive(pid: int) -> bool:
    """Return whether ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _pgid_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def run_foreground(cmd: Sequence[str], *, on_line: Callable[[str], None] | None = None) -> int:
    """Run ``cmd`` with :func:`flower_env` in the foreground; return its exit code.

    With ``on_line`` the child's stdout and stderr are read here, each line passed to it as it arrives
    (text, newline kept); otherwise the child writes to this process's own streams. On Ctrl-C or SIGTERM
    (or any error) its process group and descendants are stopped before this returns (SIGTERM is turned
    into ``KeyboardInterrupt`` meanwhile). If this process is killed outright (SIGKILL), Linux sends the
    child SIGTERM (parent-death signal), and the Flower process stops its own children as on Ctrl-C.
    """
    import signal
    import threading

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    piped = subprocess.PIPE if on_line is not None else None
    proc = subprocess.Popen(
        list(cmd),
        stdout=piped,
        stderr=subprocess.STDOUT if piped else None,
        env=flower_env(),
        start_new_session=True,
        preexec_fn=functools.partial(_die_with_parent, os.getpid()),
    )
    try:
        if on_line is not None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                on_line(raw.decode(errors="replace"))
        return proc.wait()
    finally:
        stop_process(proc)
        if main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def run_foreground_all(cmds: Sequence[Sequence[str]]) -> tuple[int, int]:
    """Run ``cmds`` side by side in the foreground until one exits; stop all; return (index, exit code).

    Each runs as :func:`run_foreground`'s child does (own process group, parent-death signal,
    :func:`flower_env`). When any of them exits, or on Ctrl-C / SIGTERM, the others are stopped with
    their descendants before this returns.
    """
    import signal
    import threading
    import time

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for cmd in cmds:
            procs.append(
                subprocess.Popen(
                    list(cmd),
                    env=flower_env(),
                    start_new_session=True,
                    preexec_fn=functools.partial(_die_with_parent, os.getpid()),
                )
            )
        while True:
            for i, proc in enumerate(procs):
                code = proc.poll()
                if code is not None:
                    return i, code
            time.sleep(0.2)
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        if main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
