"""The `nvmeofctl` command: one Typer app, one module per command group."""

from __future__ import annotations

from nvmeofctl.cli import gcpause

with gcpause.paused():  # start-up: what these imports make is kept until exit (cli.gcpause)
    import sys
    import traceback
    from typing import Optional

    import typer

    from nvmeofctl import __version__
    from nvmeofctl.cli import bench as bench_cli
    from nvmeofctl.cli import export as export_cli
    from nvmeofctl.cli import health as health_cli
    from nvmeofctl.cli import history as history_cli
    from nvmeofctl.cli import lab as lab_cli
    from nvmeofctl.cli import monitor as monitor_cli
    from nvmeofctl.cli import ops as ops_cli
    from nvmeofctl.cli import provision as provision_cli
    from nvmeofctl.cli import rollout as rollout_cli
    from nvmeofctl.cli import schemas as schemas_cli
    from nvmeofctl.cli import spec as spec_cli
    from nvmeofctl.cli.helptext import reflow_commands
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
        raise typer.Exit(ExitCode.OK)


@app.callback()
def main(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More detail on stderr; -v shows tracebacks."),
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    GLOBALS.verbose = verbose
    gcpause.resume()  # the command starts: start-up is over (run() paused the collector)


app.add_typer(spec_cli.app, name="spec")
app.add_typer(lab_cli.app, name="lab")
app.add_typer(monitor_cli.app, name="monitor")
# the command modules register their commands, in the order `--help` lists them
for _module in (provision_cli, health_cli, ops_cli, rollout_cli, bench_cli, export_cli, history_cli, schemas_cli):
    _module.register(app)


reflow_commands(app)


def exit_code_for_exception(exc: BaseException) -> int:
    """Say what ended the command on stderr (one line; the traceback only with -v) and return
    its exit code. SystemExit (signals: 128 + n) never comes here: it passes through run()."""
    console = stderr_console()
    if isinstance(exc, NvmeofctlError):
        for line in str(exc).splitlines() or [type(exc).__name__]:
            console.print(f"error: {line}", markup=False)
        if GLOBALS.verbose:
            traceback.print_exception(exc)
        return exc.exit_code
    if isinstance(exc, typer.Exit):
        return exc.exit_code
    # Ctrl-C: newer typer hands back Exit(130) (see run()), older typer raises Abort from it
    if isinstance(exc, KeyboardInterrupt) or (
        isinstance(exc, typer.Abort) and isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt)
    ):
        console.print("interrupted", markup=False)
        return ExitCode.INTERRUPTED
    if isinstance(exc, typer.Abort):
        console.print("aborted", markup=False)
        return ExitCode.USAGE
    if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # click's usage errors (bad option, value)
        exc.show()
        return ExitCode.USAGE
    console.print(f"internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)", markup=False)
    if GLOBALS.verbose:
        traceback.print_exception(exc)
    return ExitCode.INTERNAL


def run(argv: list[str] | None = None) -> int:
    """Console-script entry point: runs the app; returns 0 on success, else exits with the code
    (exitcodes.py)."""
    gcpause.pause()  # while typer builds and parses; the root callback resumes it (cli.gcpause)
    try:
        rc = app(args=argv, standalone_mode=False)  # click hands back a typer.Exit's code
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - every way out gets its code in one place
        rc = exit_code_for_exception(exc)
    else:
        rc = rc if isinstance(rc, int) else ExitCode.OK
        if rc == ExitCode.INTERRUPTED:
            stderr_console().print("interrupted", markup=False)
    finally:
        gcpause.resume()  # no command ran (--help, a usage error): still paused
    if rc != ExitCode.OK:
        sys.exit(int(rc))
    return ExitCode.OK


if __name__ == "__main__":  # pragma: no cover
    run()
