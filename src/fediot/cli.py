"""The ``fediot`` command line: parse, build a config, call the library. No logic lives here."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler

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
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise SystemExit(1) from None
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
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


DEFAULT_EXPERIMENT = "kdd-gateways"


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

    from fediot.experiments.runner import run_experiment

    overrides = list(set_ or [])
    if data is not None:
        overrides.append(
            f"data.source={data!r}" if not data.startswith(("'", '"')) else f"data.source={data}"
        )
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
