"""The ``fediot`` command line: parse, build a config, call the library. No logic lives here."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

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
