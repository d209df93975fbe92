"""The `nvmeofctl` command: one Typer app, one module per command group."""

from __future__ import annotations

import sys
import traceback
from typing import Optional

import typer

from nvmeofctl import __version__
from nvmeofctl.cli import lab as lab_cli
from nvmeofctl.cli import spec as spec_cli
from nvmeofctl.cli.context import GLOBALS, stderr_console
from nvmeofctl.errors import NvmeofctlError
from nvmeofctl.exitcodes import ExitCode

app = typer.Typer(
    name="nvmeofctl",
    help=(
        "Provision and run NVMe-over-Fabrics (RoCE v2, TCP fallback) storage for GPU clusters "
        "from one declarative cluster spec.\n\n"
        "Example: nvmeofctl lab up && nvmeofctl apply -f ~/.cache/nvmeofctl/labs/lab/cluster.yaml"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nvmeofctl {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More detail on stderr; -v shows tracebacks."),
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    GLOBALS.verbose = verbose


app.add_typer(spec_cli.app, name="spec")
app.add_typer(lab_cli.app, name="lab")

try:  # command groups that land in later steps register themselves here
    from nvmeofctl.cli import provision as provision_cli

    provision_cli.register(app)
except ImportError:  # pragma: no cover - during bring-up only
    pass
try:
    from nvmeofctl.cli import health as health_cli

    health_cli.register(app)
except ImportError:  # pragma: no cover
    pass
try:
    from nvmeofctl.cli import history as history_cli

    history_cli.register(app)
except ImportError:  # pragma: no cover
    pass


def run(argv: list[str] | None = None) -> int:
    """Console-script entry point: maps expected errors to one line and an exit code."""
    try:
        rc = app(args=argv, standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except NvmeofctlError as exc:
        console = stderr_console()
        for line in str(exc).splitlines() or [type(exc).__name__]:
            console.print(f"error: {line}", markup=False)
        if GLOBALS.verbose:
            traceback.print_exc()
        sys.exit(int(exc.exit_code))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        stderr_console().print("aborted", markup=False)
        sys.exit(int(ExitCode.USAGE))
    except SystemExit:
        raise
    except KeyboardInterrupt:
        stderr_console().print("interrupted", markup=False)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - a bug: one line, traceback with -v
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # click's usage errors
            exc.show()
            sys.exit(int(ExitCode.USAGE) if exc.exit_code == 2 else int(exc.exit_code))
        console = stderr_console()
        console.print(f"internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)", markup=False)
        if GLOBALS.verbose:
            traceback.print_exc()
        sys.exit(int(ExitCode.INTERNAL))
    return 0


if __name__ == "__main__":  # pragma: no cover
    run()
