"""Expected errors: each carries its exit code and a one-line message for the user."""

from __future__ import annotations

from nvmeofctl.exitcodes import ExitCode


class NvmeofctlError(Exception):
    """An expected failure: printed as one line (no traceback unless -v)."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(NvmeofctlError):
    exit_code = ExitCode.USAGE


class SpecError(NvmeofctlError):
    """The cluster spec is invalid; `issues` holds one `file:line path: message` each."""

    exit_code = ExitCode.INVALID_SPEC

    def __init__(self, issues: list[str]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(self.issues) if self.issues else "invalid spec")


class PreflightError(NvmeofctlError):
    exit_code = ExitCode.PREFLIGHT


class DisruptiveRefused(NvmeofctlError):
    """`apply` without --allow-disruptive met disruptive changes; it changed nothing."""

    exit_code = ExitCode.DISRUPTIVE_REFUSED


class LabError(NvmeofctlError):
    """A lab step failed (image build, VM start, SSH readiness)."""

    exit_code = ExitCode.PREFLIGHT
