"""The one place that maps outcomes to process exit codes (see STYLE.md)."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1
    USAGE = 2
    INVALID_SPEC = 3
    PREFLIGHT = 4
    TASK_FAILED = 5
    UNREACHABLE = 6
    DEGRADED = 10
    UNHEALTHY = 11
