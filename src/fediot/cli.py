"""The ``fediot`` command line: parse, build a config, call the library. No logic lives here."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from fediot import __version__
from fediot.errors import ConfigError, FediotError

__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "app", "main", "run_cli"]

app = typer.Typer(
    name="fediot",
    help=(
        "Federated detection of botnet and attack traffic on IoT networks.\n\n"
        "Each IoT gateway trains a deep autoencoder on its own benign traffic; only weights and aggregate "
        "statistics leave it. Start with `fediot run` (the default experiment) or `fediot data list`."
    ),
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="List, inspect, verify, download and build datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console(stderr=False)
err_console = Console(stderr=True)
log = logging.getLogger(__name__)


class State:
    """Global CLI options shared by every command."""

    verbose: int = 0
    quiet: bool = False


state = State()


def _version(value: bool) -> None:
    if value:
        console.print(f"fediot {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output (-vv: debug).")
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and final results.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option("--threads", min=1, help="Torch threads for training and scoring (default 1)."),
    ] = None,
) -> None:
    if threads is not None:
        from fediot.models.threads import set_threads

        set_threads(threads)
    state.verbose = verbose
    state.quiet = quiet
    if quiet:
        level = logging.ERROR
    else:
        level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    handler = RichHandler(console=err_console, show_path=False)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler])


EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _print_error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def run_cli(args: list[str] | None = None) -> int:
    """Run the app on ``args`` (default: ``sys.argv[1:]``); return the process exit status.

    Every failure is one line on stderr, never a traceback: 2 for a usage or configuration error
    (:class:`~fediot.errors.ConfigError`, a click usage error), 1 for any other failure (another
    :class:`~fediot.errors.FediotError`, an OS error, a failed check, an unexpected exception), 130 with
    ``interrupted`` on Ctrl-C.
    """
    import click

    try:
        rv = app(args=args, standalone_mode=False)
    except ConfigError as exc:
        _print_error(_one_line(str(exc)))
        return EXIT_USAGE
    except FediotError as exc:
        _print_error(_one_line(str(exc)))
        return EXIT_FAILURE
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        _print_error(_one_line(exc.format_message()) + hint)
        return EXIT_USAGE
    except click.ClickException as exc:
        _print_error(_one_line(exc.format_message()))
        return exc.exit_code or EXIT_FAILURE
    except KeyboardInterrupt:  # outside a command (typer maps one inside a command to exit code 130)
        rv = EXIT_INTERRUPTED
    except click.Abort:
        _print_error("aborted")
        return EXIT_FAILURE
    except OSError as exc:
        _print_error(_one_line(str(exc)))
        return EXIT_FAILURE
    except Exception as exc:
        log.debug("unexpected error", exc_info=True)
        name = type(exc).__name__
        _print_error(f"unexpected {name}: {_one_line(str(exc))} (please report it; -vv logs the traceback)")
        return EXIT_FAILURE
    if rv == EXIT_INTERRUPTED:
        err_console.print("[bold red]interrupted[/]", highlight=False)
        return EXIT_INTERRUPTED
    return rv if isinstance(rv, int) and not isinstance(rv, bool) else EXIT_OK


def main() -> None:
    """Console-script entry point: exit with :func:`run_cli`'s status."""
    raise SystemExit(run_cli())


_OUT_HELP = "Folder for results.json, report.md and plots (created; existing files are replaced atomically)."
OutOption = Annotated[Path, typer.Option("--out", "-o", help=_OUT_HELP)]
SeedOption = Annotated[
    int, typer.Option("--seed", help="Fixes every random choice (sampling, partitions, init).")
]


class RichProgress:
    """Renders :class:`fediot.experiments.progress.Progress` calls as Rich progress bars."""

    def __init__(self, progress: Any) -> None:
        self._progress = progress
        self._task: Any = None

    def task(self, description: str, total: int) -> None:
        """Start a new bar (the previous one stays on screen, completed)."""
        self._task = self._progress.add_task(description, total=max(total, 1), info="")

    def advance(self, steps: int = 1, *, info: str = "") -> None:
        """Advance the current bar."""
        if self._task is not None:
            self._progress.update(self._task, advance=steps, info=info)


def _results_table(results: dict[str, Any]) -> Any:
    from rich.table import Table

    from fediot.report.summary_table import summary_rows
    from fediot.report.tables import seeds_note

    headers, rows = summary_rows(results)
    table = Table(
        title=f"{results['experiment']} (seeds {results['seeds']})",
        caption=seeds_note(results["seeds"]) if len(results["seeds"]) > 1 else None,
        show_lines=False,
    )
    for h in headers:
        table.add_column(h, justify="left" if h in ("model", "variant", "client") else "right")
    for row in rows:
        table.add_row(*row)
    return table


DEFAULT_EXPERIMENT = "fl-vs-centralized"


@app.command()
def run(
    experiment: Annotated[
        str,
        typer.Argument(help="Experiment name (see `fediot experiments`) or a TOML config path."),
    ] = DEFAULT_EXPERIMENT,
    out: OutOption = Path("out"),
    seed: SeedOption = 0,
    repeats: Annotated[
        int, typer.Option("--repeats", "-n", help="Run N seeds; report mean ± sample std (ddof=1).")
    ] = 1,
    data: Annotated[
        str | None,
        typer.Option(
            "--data", help="Dataset for experiments that take one (e.g. nsl-kdd, gateway, or a path)."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config value, e.g. --set train.lr=0.05 (repeatable)."),
    ] = None,
) -> None:
    """Run an experiment and write OUT/results.json, OUT/report.md (and plots)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from fediot.experiments.runner import load_experiment, run_experiment
    from fediot.fileio import check_output_dir

    overrides = list(set_ or [])
    if data is not None:
        overrides.append(
            f"data.source={data!r}" if not data.startswith(("'", '"')) else f"data.source={data}"
        )
    check_output_dir(out)
    load_experiment(experiment, overrides)  # a bad name, key or value fails before any output
    log.info("running %s (first seed %d, %d seed(s)) into %s", experiment, seed, repeats, out)
    columns = (
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, console=err_console, disable=state.quiet, transient=False) as bar:
        output = run_experiment(
            experiment, out=out, seed=seed, repeats=repeats, overrides=overrides, progress=RichProgress(bar)
        )
    console.print(_results_table(output.results))
    console.print(f"results: {output.results_path}\nreport:  {output.report_path}")


@app.command("experiments")
def list_experiments() -> None:
    """List the shipped experiment configs."""
    from fediot.experiments.config import available_configs, load_config

    for name in available_configs():
        console.print(f"[bold]{name}[/]: {load_config(name).get('description', '')}")


# --- fediot data: list / info / verify / download -------------------------------------------------------


@data_app.command("list")
def data_list() -> None:
    """List the shipped datasets with their rows, features, labels and files (recorded counts; instant)."""
    from rich.table import Table

    from fediot.data.catalog import DATASETS

    table = Table(title="Shipped datasets")
    for header in ("name", "rows", "features", "labels", "files (under data/)"):
        table.add_column(header, justify="right" if header in ("rows", "features", "labels") else "left",
                         no_wrap=header == "name")
    for info in DATASETS:
        table.add_row(info.name, f"{info.num_rows:,}", str(info.num_features), str(info.num_labels),
                      "\n".join(info.files))
    console.print(table)


@data_app.command("info")
def data_info(
    name: Annotated[str, typer.Argument(help="Dataset name (see `fediot data list`).")],
) -> None:
    """Read a dataset and show its row count, label counts, feature count and sha256 status."""
    import numpy as np
    from rich.table import Table

    from fediot.data.catalog import check_shipped_files, get_dataset

    info = get_dataset(name)
    checks = check_shipped_files(only=set(info.files))
    labels = info.read_labels()
    values, counts = np.unique(labels, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    console.print(f"[bold]{info.name}[/]: {info.description}")
    console.print(f"rows: {labels.shape[0]:,}   features: {info.num_features}   labels: {values.size}")
    for check in checks:
        colour = "green" if check.status == "ok" else "red"
        console.print(f"sha256 {check.name}: [{colour}]{check.status}[/]")
    table = Table(title=f"{info.name} labels")
    table.add_column("label")
    table.add_column("rows", justify="right")
    table.add_column("share", justify="right")
    for i in order.tolist():
        table.add_row(str(values[i]), f"{int(counts[i]):,}", f"{counts[i] / labels.shape[0]:.2%}")
    console.print(table)


@data_app.command("verify")
def data_verify() -> None:
    """Check every file listed in data/SHA256SUMS; exit 1 if any is missing or differs."""
    from rich.table import Table

    from fediot.data.catalog import check_shipped_files

    checks = check_shipped_files()
    table = Table(title="data/SHA256SUMS")
    table.add_column("file")
    table.add_column("status")
    for check in checks:
        colour = "green" if check.status == "ok" else "red"
        table.add_row(check.name, f"[{colour}]{check.status}[/]")
    console.print(table)
    bad = [c for c in checks if c.status != "ok"]
    if bad:
        err_console.print(f"[bold red]error:[/] {len(bad)} of {len(checks)} files missing or modified")
        raise typer.Exit(1)
    console.print(f"all {len(checks)} files ok")


@data_app.command("download")
def data_download(
    dataset: Annotated[str, typer.Argument(help="Dataset to download (only `nbaiot`).")],
    to: Annotated[Path, typer.Option("--to", help="Folder for the CSVs (Kaggle flat layout).")],
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="URL prefix serving each file (default: Kaggle's N-BaIoT)."),
    ] = None,
) -> None:
    """Download N-BaIoT's 89 CSVs, verify each (header, row count) and skip files already complete."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from fediot.data.download import NBAIOT_BASE_URL, DownloadEvent, download_nbaiot

    if dataset != "nbaiot":
        raise ConfigError(f"cannot download {dataset!r}: only 'nbaiot' is downloadable (the rest is shipped)")
    with Progress(
        TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), console=err_console, disable=state.quiet,
    ) as bar:
        files = bar.add_task("nbaiot", total=None, info="")

        def show(event: DownloadEvent) -> None:
            info = f"{event.name} {event.status} {event.bytes_done / 1e6:.1f} MB"
            bar.update(files, total=event.num_files, info=info, advance=event.status != "downloading")

        paths = download_nbaiot(to, base_url=base_url or NBAIOT_BASE_URL, progress=show)
    console.print(f"{len(paths)} verified files in {to}")


_FLOWER_EXTRA = "this command needs Flower; install it with: pip install 'fediot[flower]'"


def _deploy() -> Any:
    import importlib.util

    if importlib.util.find_spec("flwr") is None or importlib.util.find_spec("cryptography") is None:
        raise FediotError(_FLOWER_EXTRA)
    from fediot.flower import deploy

    return deploy


@app.command()
def certs(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the CA, server and SuperNode keys.")],
    nodes: Annotated[int, typer.Option("--nodes", "-n", help="SuperNode auth key pairs to create.")] = 3,
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host", help="IP or DNS name of the SuperLink (repeatable; default 127.0.0.1, localhost)."
        ),
    ] = None,
    days: Annotated[int, typer.Option("--days", help="Certificate validity in days.")] = 365,
    add_nodes: Annotated[
        int,
        typer.Option(
            "--add-nodes", help="Add this many SuperNode key pairs to an existing --out (same CA).", min=0
        ),
    ] = 0,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing CA, server certificate and all keys.")
    ] = False,
) -> None:
    """Create a CA, a SuperLink TLS certificate and SuperNode authentication key pairs."""
    deploy = _deploy()
    if nodes < 0:
        raise ConfigError(f"--nodes must be >= 0, got {nodes}")
    if add_nodes:
        if force:
            raise ConfigError("--add-nodes keeps the existing CA; it cannot be combined with --force")
        for key in deploy.add_node_keys(out, add_nodes):
            console.print(f"supernode key: {key} (public: {key.with_suffix('.pub')})")
        return
    paths = deploy.generate_certs(
        out, num_nodes=nodes, hosts=tuple(host or ("127.0.0.1", "localhost")), days=days, force=force
    )
    console.print(f"CA: {paths.ca_cert}\nserver: {paths.server_cert}, {paths.server_key}")
    for key in paths.node_keys:
        console.print(f"supernode key: {key} (public: {key.with_suffix('.pub')})")


@app.command()
def server(
    certs_dir: Annotated[
        Path | None, typer.Option("--certs", help="Folder written by `fediot certs` (omit with --insecure).")
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Address gateways reach (Fleet API, through the fleet gate).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Fleet API port (gateways).")] = 9092,
    control_host: Annotated[
        str,
        typer.Option(
            "--control-host",
            help="Address of the SuperLink itself: Control API (flwr CLI) and Runtime API. Keep it on "
            "loopback: whoever reaches it with ca.crt can register node keys.",
        ),
    ] = "127.0.0.1",
    control_port: Annotated[
        int, typer.Option("--control-port", help="SuperLink port (Control and Runtime APIs; flwr CLI).")
    ] = 9093,
    database: Annotated[
        Path | None, typer.Option("--database", help="SuperLink state file (default: in memory).")
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="No TLS, no node authentication (tests).")
    ] = False,
    secure_aggregation: Annotated[
        bool,
        typer.Option(
            "--secure-aggregation",
            help="Every run on this SuperLink trains with Flower's SecAgg+ (server.secure-aggregation=true "
            "forced): the server learns only the weighted mean of the gateways' updates.",
        ),
    ] = False,
) -> None:
    """Start a Flower SuperLink (TLS, SuperNode authentication) and its fleet gate (runs until Ctrl-C).

    The SuperLink listens on --control-host:--control-port (loopback by default); gateways reach only
    the Fleet API, through the gate on --host:--port. With --secure-aggregation its ServerApps run every
    training round as a SecAgg+ round (a run whose configuration cannot is refused).
    """
    deploy = _deploy()
    for option, value in (("--port", port), ("--control-port", control_port)):
        if not 1 <= value <= 65535:
            raise ConfigError(f"{option} must be 1-65535, got {value}")
    if database is not None and not database.parent.is_dir():
        raise ConfigError(f"--database {database}: folder {database.parent} does not exist")
    if database is not None and database.is_dir():
        raise ConfigError(f"--database {database}: is a folder (expected a state file path)")
    paths = None if insecure else _cert_paths(deploy, certs_dir)
    import contextlib
    import ipaddress
    import socket

    upstream = "127.0.0.1" if control_host in ("0.0.0.0", "::", "") else control_host
    with contextlib.suppress(ValueError):
        if not ipaddress.ip_address(control_host).is_loopback:
            err_console.print(
                f"warning: --control-host {control_host} is not loopback: anyone who reaches "
                f"{control_host}:{control_port} with ca.crt can register node keys and start runs",
                highlight=False,
                markup=False,
            )
    if paths is not None:
        _check_server_names(paths.server_cert, [host, upstream])
    with contextlib.ExitStack() as stack:  # taken ports are refused before anything starts
        for h, p in ((host, port), (control_host, control_port)):
            try:
                stack.enter_context(socket.create_server((h, p)))
            except OSError as exc:
                raise FediotError(f"cannot listen on {h}:{p}: {exc.strerror or exc}") from exc
    cmd = deploy.superlink_command(
        paths, host=control_host, port=control_port, database=database, node_auth=not insecure
    )
    from fediot.flower.gate import gate_command

    up = f"[{upstream}]" if ":" in upstream else upstream
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    gate = gate_command(listen, f"{up}:{control_port}", certs_dir=None if insecure else certs_dir)
    for c in (cmd, gate):
        err_console.print(" ".join(c), highlight=False, markup=False)
    if secure_aggregation:  # inherited by the SuperLink and the ServerApp processes it starts
        import os

        from fediot.flower.secagg import SECURE_AGGREGATION_ENV

        os.environ[SECURE_AGGREGATION_ENV] = "1"
    which, status = deploy.run_foreground_all([cmd, gate])
    name = ("flower-superlink", "the fleet gate")[which]
    what = f"SuperLink on {control_host}:{control_port}, Fleet API on {host}:{port}"
    how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
    raise FediotError(f"{name} {how} ({what}); its log is above")


def _check_server_names(cert: Path, hosts: list[str]) -> None:
    """Refuse a server certificate whose subject alternative names do not cover ``hosts``."""
    import contextlib
    import ipaddress

    from cryptography import x509

    try:
        parsed = x509.load_pem_x509_certificate(cert.read_bytes())
        sans = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound) as exc:
        raise FediotError(f"{cert}: not a PEM server certificate with subject alternative names") from exc
    names = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    names |= set(sans.get_values_for_type(x509.DNSName))
    for h in hosts:
        if h in ("0.0.0.0", "::"):
            continue
        with contextlib.suppress(ValueError):
            h = str(ipaddress.ip_address(h))
        if h not in names:
            raise FediotError(
                f"{cert} is not valid for {h} (names: {', '.join(sorted(names))}); recreate it with "
                f"`fediot certs --host {h} ...`"
            )


def _run_flower(deploy: Any, cmd: list[str], what: str) -> None:
    """Run a Flower process in the foreground; a non-zero exit becomes a one-line error (exit 1)."""
    err_console.print(" ".join(cmd), highlight=False, markup=False)
    status = deploy.run_foreground(cmd)
    if status != 0:
        name = Path(cmd[0]).name
        how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
        raise FediotError(f"{name} {how} ({what}); its log is above")


@app.command()
def client(
    superlink: Annotated[
        str, typer.Option("--superlink", help="The server's Fleet API address host:port.")
    ] = "127.0.0.1:9092",
    data: Annotated[
        Path | None, typer.Option("--data", help="This gateway's benign rows (.npy or .csv).")
    ] = None,
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="Gateway id (default: data file stem).")
    ] = None,
    root_cert: Annotated[
        Path | None, typer.Option("--root-cert", help="CA certificate of the SuperLink.")
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option("--key", help="This SuperNode's auth private key (required unless --no-auth)."),
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Join a SuperLink that does not authenticate nodes.")
    ] = False,
    port: Annotated[int, typer.Option("--port", help="Local ClientApp API port (unique per host).")] = 9094,
    insecure: Annotated[bool, typer.Option("--insecure", help="No TLS (tests).")] = False,
    connect_timeout: Annotated[
        float,
        typer.Option(
            "--connect-timeout",
            help="Give up (exit 1) after this many seconds without a connection to the SuperLink; 0: never.",
            min=0.0,
        ),
    ] = 300.0,
) -> None:
    """Start a Flower SuperNode serving this gateway's data (runs until Ctrl-C)."""
    deploy = _deploy()
    if data is None:
        raise ConfigError("--data is required: the gateway's benign rows")
    if not insecure and root_cert is None:
        raise ConfigError("--root-cert is required (or --insecure)")
    if key is None and not (insecure or no_auth):
        raise ConfigError(
            "--key is required: the SuperLink admits only registered node keys (--no-auth if it does not)"
        )
    for option, path in (("--data", data), ("--root-cert", root_cert), ("--key", key)):
        if path is not None and not path.is_file():
            raise ConfigError(f"{option} {path}: file not found")
    host, _, port_text = superlink.rpartition(":")
    if not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"--superlink {superlink!r}: expected host:port")
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be 1-65535, got {port}")
    if not insecure and root_cert is not None:  # a wrong CA is refused now, not after minutes of retries
        deploy.check_tls(host.strip("[]"), int(port_text), root_cert)
    node_config = {"data-path": str(data.resolve()), "client-id": client_id or data.name.split(".")[0]}
    cmd = deploy.supernode_command(
        superlink, root_cert=None if insecure else root_cert, auth_key=key, node_config=node_config, port=port
    )
    if connect_timeout > 0:
        cmd += ["--max-wait-time", f"{connect_timeout:g}"]
    _run_flower(deploy, cmd, f"SuperLink {superlink}")


@app.command()
def submit(
    app_dir: Annotated[Path, typer.Argument(help="The fediot Flower app folder (holds pyproject.toml).")],
    connection: Annotated[
        str, typer.Argument(help="The flwr connection (SuperLink) name, as for `flwr run`.")
    ] = "fediot",
    run_config: Annotated[
        list[str] | None,
        typer.Option(
            "--run-config",
            help='Overrides, as for `flwr run`: "key=value key2=value2" (TOML values) or one .toml file.',
        ),
    ] = None,
) -> None:
    """Start a federation run on the SuperLink and exit with its outcome (0 finished, 1 failed, 2 refused).

    The run config is checked against fediot's schema before anything is uploaded; the run's log is
    streamed as `flwr run --stream` shows it; the exit status comes from the ServerApp's last line
    (Flower 1.41 exits `flwr run` with 0 even when the ServerApp failed).
    """
    deploy = _deploy()
    failure = deploy.submit(app_dir, connection, run_config or [])
    if failure is not None:
        raise FediotError(f"the run failed: {failure}")


def _cert_paths(deploy: Any, folder: Path | None) -> Any:
    if folder is None:
        raise ConfigError("--certs is required (the folder written by `fediot certs`), or pass --insecure")
    paths = deploy.CertPaths(
        ca_cert=folder / "ca.crt",
        ca_key=folder / "ca.key",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        node_keys=sorted(folder.glob("supernode-*.key")),
    )
    for p in (paths.ca_cert, paths.server_cert, paths.server_key):
        if not p.exists():
            raise FediotError(f"{p} not found; create it with `fediot certs --out {folder}`")
    return paths


@app.command("extract")
def extract(
    pcaps: Annotated[list[Path], typer.Argument(help="Capture files (pcap/pcapng, optionally .gz).")],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output file: CSV with the N-BaIoT header, or .parquet (pyarrow)."),
    ],
    order: Annotated[
        str,
        typer.Option(
            "--order", help="time: merge the files, sort packets by timestamp; given: concatenate in order."
        ),
    ] = "time",
) -> None:
    """Compute the 115 N-BaIoT (Kitsune) features of every packet of the captures, as one stream."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from fediot.features import ReadSummary, extract_features, write_features

    if order not in ("time", "given"):
        raise typer.BadParameter(f"--order must be 'time' or 'given', got {order!r}")
    if out.exists() and any(out.resolve() == p.resolve() for p in pcaps):
        raise ConfigError(f"--out {out} is one of the input captures; refusing to overwrite it")
    with Progress(
        TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), console=err_console, disable=state.quiet,
    ) as bar:  # fmt: skip
        task = bar.add_task("reading", total=len(pcaps), info="")

        def show(summary: ReadSummary) -> None:
            bar.update(task, advance=1, info=f"{Path(summary.path).name}: {summary.num_packets} packets")

        if order == "time":
            features, summary = extract_features(pcaps, order="time", on_file=show)
        else:
            features, summary = extract_features(pcaps, order="given", on_file=show)
        bar.update(task, description="writing", info=f"{summary.num_packets} x {features.shape[1]}")
        write_features(out, features)
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(summary.skipped.items())) or "none"
    console.print(
        f"{summary.num_packets} packets from {len(summary.files)} files ({summary.num_records} records; "
        f"skipped: {skipped}) -> {out}"
    )


@data_app.command("build")
def data_build(
    name: Annotated[str, typer.Argument(help="Dataset to build: gateway.")],
    seed: SeedOption = 0,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Target folder (default: the cache, see FEDIOT_CACHE_DIR)."),
    ] = None,
    gateway_version: Annotated[
        int, typer.Option("--gateway-version", help="1: the 2 floods (default); 2: floods + 23 lab attacks.")
    ] = 1,
) -> None:
    """Build a derived dataset: gateway = IoT Sentinel pcaps + replayed attacks, in the N-BaIoT layout."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from fediot.data.gateway import GatewayConfig, build_gateway_dataset, gateway_dataset_path

    if name != "gateway":
        raise typer.BadParameter(f"unknown dataset {name!r}; buildable: gateway")
    config = GatewayConfig(seed=seed, version=gateway_version)
    with Progress(
        TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"), console=err_console, disable=state.quiet,
    ) as bar:  # fmt: skip
        task = bar.add_task("extracting features per device", total=None, info="")

        def show(device: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, info=device)

        if out is None:
            path = gateway_dataset_path(config, rebuild=True, progress=show)
        else:
            build_gateway_dataset(out, config, progress=show)
            path = out
    manifest = json.loads((path / "manifest.json").read_text())
    rows = sum(sum(d["rows"].values()) for d in manifest["devices"].values())
    console.print(f"gateway dataset: {len(manifest['devices'])} clients, {rows:,} rows -> {path}")


# --- fediot train / detect / calibrate / export: from a trained federation to alerts ----------------------


@app.command("train")
def train(
    experiment: Annotated[
        str, typer.Argument(help="Anomaly experiment name (see `fediot experiments`) or a TOML config path.")
    ] = DEFAULT_EXPERIMENT,
    out: Annotated[Path, typer.Option("--out", "-o", help="Detector file to write (atomically).")] = Path(
        "detector.npz"
    ),
    variant: Annotated[
        str | None,
        typer.Option("--variant", help="Variant to train: FL (default), centralized, local (with --client)."),
    ] = None,
    client_id: Annotated[
        str | None, typer.Option("--client", help="For --variant local: whose local model to save.")
    ] = None,
    seed: SeedOption = 0,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config value, e.g. --set federated.rounds=5 (repeatable)."),
    ] = None,
) -> None:
    """Train one variant of an experiment and save its detector (weights, scaler, thresholds, window)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from fediot.experiments.train import train_detector

    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder (expected the detector file to write)")
    with Progress(
        TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"), console=err_console, disable=state.quiet, transient=True,
    ) as bar:  # fmt: skip
        trained = train_detector(
            experiment, variant=variant, client=client_id, seed=seed, overrides=list(set_ or []),
            progress=RichProgress(bar),
        )  # fmt: skip
    path = trained.detector.save(out)
    macro = trained.results.get("macro", {})
    window = trained.results.get("window", {}).get("macro", {})
    det = trained.detector
    console.print(
        f"{trained.variant}: threshold {det.threshold_:.6g} ({len(det.device_thresholds_)} device "
        f"thresholds), window {det.window_}; macro TPR {macro.get('tpr', float('nan')):.3f} "
        f"FPR {macro.get('fpr', float('nan')):.3f}"
        + (f"; window TPR {window['tpr']:.3f} FPR {window['fpr']:.3f}" if "tpr" in window else "")
    )
    console.print(f"detector: {path}")


def _load_detector(model: Path) -> Any:
    from fediot.detect.detector import AnomalyDetector

    return AnomalyDetector.load(model)


class _StopFlag:
    """Set by SIGINT/SIGTERM; the detect loop checks it between batches."""

    def __init__(self) -> None:
        self.signal: str | None = None

    def __call__(self) -> bool:
        return self.signal is not None

    def handler(self, signum: int, _frame: Any) -> None:
        import signal

        self.signal = signal.Signals(signum).name


@app.command("detect")
def detect(
    model: Annotated[Path, typer.Argument(help="Detector file written by `fediot train` or `fediot run`.")],
    pcaps: Annotated[
        list[Path] | None,
        typer.Argument(help="Captures to score, in order, as one stream (pcap/pcapng/.gz)."),
    ] = None,
    interface: Annotated[
        str | None, typer.Option("--interface", "-i", help="Capture live from this interface (AF_PACKET).")
    ] = None,
    bpf: Annotated[
        str | None, typer.Option("--bpf", help="tcpdump filter for --interface, e.g. 'not port 22'.")
    ] = None,
    follow: Annotated[
        Path | None, typer.Option("--follow", help="Score a pcap file as it grows (tcpdump -w FILE -U).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Alerts as JSON lines (atomic for files; appended when live)."),
    ] = None,
    scores: Annotated[
        Path | None,
        typer.Option("--scores", help="Every packet's score and verdicts: CSV, or Parquet for .parquet."),
    ] = None,
    window: Annotated[
        int | None, typer.Option("--window", min=1, help="Vote window per device (default: the model's).")
    ] = None,
    min_score: Annotated[
        float | None, typer.Option("--min-score", help="Only packets scoring at least this alert.")
    ] = None,
    stats: Annotated[
        Path | None, typer.Option("--stats", help="Write the exit summary as JSON to this file.")
    ] = None,
    save_pcap: Annotated[
        Path | None, typer.Option("--save-pcap", help="With --interface: also save the frames scored.")
    ] = None,
    idle_timeout: Annotated[
        float | None,
        typer.Option(
            "--idle-timeout", min=0.0, help="Live/follow: stop after this many seconds without packets."
        ),
    ] = None,
    max_streams: Annotated[
        int, typer.Option("--max-streams", min=16, help="Cap on the streams of each feature table.")
    ] = 1 << 17,
    threads: Annotated[
        int, typer.Option("--threads", min=1, help="PyTorch scoring threads (1: one core, reproducible).")
    ] = 1,
) -> int:
    """Score every packet, vote per device (source MAC), write alerts; summary at the end or on a signal."""
    import signal

    import torch

    from fediot.detect.alerts import LineWriter, ScoreWriter
    from fediot.detect.online import OnlineDetector
    from fediot.detect.pipeline import CaptureFiles, detect_stream

    sources = [s for s in (pcaps or None, interface, follow) if s]
    if len(sources) != 1:
        raise ConfigError("give exactly one input: capture files, --interface IF or --follow FILE")
    if bpf is not None and interface is None:
        raise ConfigError("--bpf applies to --interface only")
    if save_pcap is not None and interface is None:
        raise ConfigError("--save-pcap applies to --interface only")
    torch.set_num_threads(threads)
    online = OnlineDetector(_load_detector(model), window=window, max_streams=max_streams)
    live = interface is not None or follow is not None
    stop = _StopFlag()
    source: Any
    if live:
        online.warm_up()
    if interface is not None:
        from fediot.features.live import LiveCapture

        source = LiveCapture(interface, bpf=bpf, save_to=save_pcap)
        batches = source.batches(stop, idle_timeout=idle_timeout)
        err_console.print(f"listening on {interface}", highlight=False)
    elif follow is not None:
        from fediot.features.live import FollowReader

        source = FollowReader(follow)
        batches = source.batches(stop, idle_timeout=idle_timeout)
    else:
        source = CaptureFiles(pcaps or [])
        batches = source.batches(stop)
    alerts = LineWriter(out, atomic=not live) if out is not None else None
    score_writer = ScoreWriter(scores, atomic=not live) if scores is not None else None
    previous = {s: signal.signal(s, stop.handler) for s in (signal.SIGINT, signal.SIGTERM)}
    ok = False
    try:
        summary = detect_stream(
            online, batches, alerts=alerts, scores=score_writer, min_score=min_score, measure_latency=live
        )
        ok = True
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        for writer in (alerts, score_writer):
            if writer is not None:
                writer.close() if ok else writer.discard()
        if live:
            source.close()
    summary.records = source.num_records
    summary.skipped = source.skipped
    summary.kernel_drops = source.kernel_drops
    if stop.signal is not None:
        summary.stopped_by = stop.signal
    elif live:
        summary.stopped_by = "idle timeout"
    if stats is not None:
        from fediot.fileio import atomic_write

        text = json.dumps(summary.to_dict(), indent=2, sort_keys=True) + "\n"
        def write_stats(tmp: Path) -> None:
            tmp.write_text(text)

        atomic_write(stats, write_stats)
    _print_detect_summary(summary, out)
    return EXIT_INTERRUPTED if stop.signal == "SIGINT" else EXIT_OK


def _print_detect_summary(summary: Any, out: Path | None) -> None:
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(summary.skipped.items())) or "none"
    evicted = sum(summary.evictions.values())
    alerts = sum(summary.alerts_by_device.values())
    console.print(
        f"{summary.packets:,} packets from {summary.devices} devices in {summary.seconds:.2f} s "
        f"({summary.packets_per_second:,.0f} packets/s; stopped by {summary.stopped_by}); "
        f"{alerts:,} alerts ({summary.alerts_written:,} written{f' to {out}' if out else ''})"
    )
    console.print(
        f"records {summary.records:,}; skipped: {skipped}; non-IP {summary.non_ip:,}; "
        f"evictions {evicted:,}; kernel drops {summary.kernel_drops:,}"
    )
    for device, count in summary.alerts_by_device.items():
        console.print(f"  {device}: {count:,} alerts")
    if summary.latency:
        lat = summary.latency
        console.print(
            f"latency (capture -> verdict): p50 {lat['p50'] * 1e3:.2f} ms, p99 {lat['p99'] * 1e3:.2f} ms"
        )


@app.command("calibrate")
def calibrate(
    model: Annotated[Path, typer.Argument(help="Detector file to update (rewritten atomically).")],
    pcaps: Annotated[list[Path], typer.Argument(help="The device's benign captures, in order.")],
    device: Annotated[str, typer.Option("--device", help="The device's MAC address.")],
) -> None:
    """Set one device's threshold from its own benign traffic (sufficient statistics; no rows kept)."""
    from fediot.detect.calibrate import calibrate_device
    from fediot.detect.pipeline import CaptureFiles

    detector = _load_detector(model)
    result = calibrate_device(detector, device, lambda: CaptureFiles(pcaps).batches(lambda: False))
    detector.save(model)
    console.print(
        f"{result.device}: threshold {result.previous:.6g} -> {result.threshold:.6g} from {result.packets:,} "
        f"packets (score mean {result.mean:.6g}, std {result.std:.6g}); on this traffic FPR "
        f"{result.fpr_global:.4f} with the global threshold, {result.fpr_calibrated:.4f} calibrated"
    )
    console.print(f"detector: {model}")


@app.command("export")
def export(
    model: Annotated[Path, typer.Argument(help="Detector file.")],
    onnx_path: Annotated[Path, typer.Option("--onnx", help="ONNX file to write (scaler in the graph).")],
) -> None:
    """Export a detector to ONNX: raw feature rows in, anomaly scores out."""
    from fediot.detect.export import export_onnx

    path = export_onnx(_load_detector(model), onnx_path)
    console.print(f"onnx: {path}")
