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
from fediot.errors import FediotError

__all__ = ["app", "main"]

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
) -> None:
    state.verbose = verbose
    state.quiet = quiet
    if quiet:
        level = logging.ERROR
    else:
        level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    handler = RichHandler(console=err_console, show_path=False)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler])


def main() -> None:
    """Entry point: run the app; print a fediot error as one red line and exit 1."""
    try:
        app(standalone_mode=False)
    except FediotError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise SystemExit(1) from None
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        raise SystemExit(130) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        raise SystemExit(1) from None
    except Exception as click_exc:  # click usage errors carry their own exit codes
        import click

        if isinstance(click_exc, click.ClickException):
            click_exc.show()
            raise SystemExit(click_exc.exit_code) from None
        raise


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

    headers, rows = summary_rows(results)
    table = Table(title=f"{results['experiment']} (seeds {results['seeds']})", show_lines=False)
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
    repeats: Annotated[int, typer.Option("--repeats", "-n", help="Run N seeds; report mean ± std.")] = 1,
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

    overrides = list(set_ or [])
    if data is not None:
        overrides.append(
            f"data.source={data!r}" if not data.startswith(("'", '"')) else f"data.source={data}"
        )
    load_experiment(experiment, overrides)  # a bad name, key or value fails before any output
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
    from fediot.errors import DataError

    if dataset != "nbaiot":
        raise DataError(f"cannot download {dataset!r}: only 'nbaiot' is downloadable (the rest is shipped)")
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
) -> None:
    """Create a CA, a SuperLink TLS certificate and SuperNode authentication key pairs."""
    paths = _deploy().generate_certs(
        out, num_nodes=nodes, hosts=tuple(host or ("127.0.0.1", "localhost")), days=days
    )
    console.print(f"CA: {paths.ca_cert}\nserver: {paths.server_cert}, {paths.server_key}")
    for key in paths.node_keys:
        console.print(f"supernode key: {key} (public: {key.with_suffix('.pub')})")


@app.command()
def server(
    certs_dir: Annotated[
        Path | None, typer.Option("--certs", help="Folder written by `fediot certs` (omit with --insecure).")
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address the SuperLink listens on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", help="SuperLink port (Fleet, Control and Runtime APIs).")
    ] = 9093,
    database: Annotated[
        Path | None, typer.Option("--database", help="SuperLink state file (default: in memory).")
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="No TLS, no node authentication (tests).")
    ] = False,
) -> None:
    """Start a Flower SuperLink with TLS and SuperNode authentication (runs until Ctrl-C)."""
    deploy = _deploy()
    paths = None if insecure else _cert_paths(deploy, certs_dir)
    cmd = deploy.superlink_command(paths, host=host, port=port, database=database, node_auth=not insecure)
    err_console.print(" ".join(cmd), highlight=False, markup=False)
    raise typer.Exit(deploy.run_foreground(cmd))


@app.command()
def client(
    superlink: Annotated[
        str, typer.Option("--superlink", help="SuperLink address host:port.")
    ] = "127.0.0.1:9093",
    data: Annotated[
        Path | None, typer.Option("--data", help="This gateway's benign rows (.npy or .csv).")
    ] = None,
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="Gateway id (default: data file stem).")
    ] = None,
    root_cert: Annotated[
        Path | None, typer.Option("--root-cert", help="CA certificate of the SuperLink.")
    ] = None,
    key: Annotated[Path | None, typer.Option("--key", help="This SuperNode's auth private key.")] = None,
    port: Annotated[int, typer.Option("--port", help="Local ClientApp API port (unique per host).")] = 9094,
    insecure: Annotated[bool, typer.Option("--insecure", help="No TLS (tests).")] = False,
) -> None:
    """Start a Flower SuperNode serving this gateway's data (runs until Ctrl-C)."""
    deploy = _deploy()
    if data is None:
        raise FediotError("--data is required: the gateway's benign rows")
    if not insecure and root_cert is None:
        raise FediotError("--root-cert is required (or --insecure)")
    node_config = {"data-path": str(data.resolve()), "client-id": client_id or data.name.split(".")[0]}
    cmd = deploy.supernode_command(
        superlink, root_cert=None if insecure else root_cert, auth_key=key, node_config=node_config, port=port
    )
    err_console.print(" ".join(cmd), highlight=False, markup=False)
    raise typer.Exit(deploy.run_foreground(cmd))


def _cert_paths(deploy: Any, folder: Path | None) -> Any:
    if folder is None:
        raise FediotError("--certs is required (the folder written by `fediot certs`), or pass --insecure")
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
        int, typer.Option("--gateway-version", help="2: floods + lab attacks (default); 1: the two floods.")
    ] = 2,
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
