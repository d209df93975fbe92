"""State shared by every command: verbosity and the console for human output on stderr."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import typer

from nvmeofctl.exitcodes import ExitCode

if TYPE_CHECKING:
    from rich.console import Console


@dataclass
class Globals:
    verbose: int = 0


GLOBALS = Globals()


def finish(code: ExitCode) -> None:
    """End a command with its outcome when that is not OK (health degraded, some hosts failed).

    Errors raise an ``errors.NvmeofctlError`` subclass instead. ``typer.Exit`` serves both
    ``cli.main.run`` (click hands the code back, run() exits with it) and typer's CliRunner."""
    if code != ExitCode.OK:
        raise typer.Exit(code)


def stderr_console() -> Console:
    """Progress, logs and errors go to stderr; plain lines when stderr is not a terminal."""
    from rich.console import Console  # on first use: building the app stays cheap (issue #9)

    return Console(
        stderr=True,
        no_color="NO_COLOR" in os.environ,
        force_terminal=None,
        highlight=False,
        emoji=False,
        soft_wrap=True,
    )


def stdout_console() -> Console:
    """Data (tables) go to stdout."""
    from rich.console import Console

    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "160"))
    return Console(no_color="NO_COLOR" in os.environ, highlight=False, emoji=False, width=width)


def is_interactive() -> bool:
    return sys.stderr.isatty()


def progress_printer():
    """A callable printing timestamped progress lines on stderr (plain lines: safe for logs)."""
    import time

    console = stderr_console()
    start = time.monotonic()

    def say(msg: str) -> None:
        console.print(f"[{time.monotonic() - start:6.1f}s] {msg}", markup=False, highlight=False)

    return say
