"""The one place that defines process exit codes (see STYLE.md and README "Exit codes").

Commands end with one of these: an expected error raises an ``errors.NvmeofctlError`` subclass
(which carries its code), an outcome that is not an error (health degraded, some hosts failed)
raises ``typer.Exit`` with a member (``cli.context.finish``). The same failure gives the same
code from every command."""

import signal
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1  # a bug: traceback with -v
    USAGE = 2
    INVALID_SPEC = 3  # also: spec file missing or unreadable, invalid YAML
    PREFLIGHT = 4  # a host refused SSH (changed/unknown host key, login) or lacks a tool/feature
    TASK_FAILED = 5
    UNREACHABLE = 6
    DISRUPTIVE_REFUSED = 7  # apply without --allow-disruptive met disruptive changes: nothing changed
    DEGRADED = 10
    UNHEALTHY = 11
    INTERRUPTED = 128 + int(signal.SIGINT)  # 130: Ctrl-C


def for_signal(signum: int) -> int:
    """The shell's convention for a process ended by signal ``signum``: 128 + n (SIGTERM 143,
    SIGHUP 129; SIGINT is ``ExitCode.INTERRUPTED``)."""
    return 128 + int(signum)
