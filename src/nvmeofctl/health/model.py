"""Findings, statuses and the one mapping from findings to the health exit code."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Iterable

from nvmeofctl.exitcodes import ExitCode


class Status(str, Enum):
    ok = "ok"
    warn = "warn"
    fail = "fail"
    na = "na"
    unreachable = "unreachable"  # the host did not answer SSH
    refused = "refused"  # the host answered but refused us: host key changed or unknown, login refused


# Order for "problems first" (lower sorts first).
SEVERITY = {Status.unreachable: 0, Status.refused: 0, Status.fail: 1, Status.warn: 2, Status.ok: 3, Status.na: 4}

# Prometheus gauge values (documented in --help and in the HELP line).
METRIC_VALUE = {Status.ok: 0, Status.warn: 1, Status.fail: 2, Status.na: -1, Status.unreachable: 3, Status.refused: 4}

# A host health could not check leaves the result incomplete, so its code wins over 11/10; the
# codes are those `apply` gives the same hosts (6 unreachable, 4 preflight: SSH refused).
NOT_CHECKED = {Status.unreachable: ExitCode.UNREACHABLE, Status.refused: ExitCode.PREFLIGHT}


@dataclass(frozen=True)
class Finding:
    host: str
    check: str
    status: Status
    observed: str = ""
    expected: str = ""
    remedy: str = ""
    device: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["status"] = self.status.value
        return d


def exit_code_for(findings: Iterable[Finding]) -> ExitCode:
    """6 if any host was unreachable, else 4 if any refused SSH (the result is incomplete:
    scripts must not read it as healthy or as a definite fault), else 11 on any fail, 10 on any
    warn, 0 otherwise."""
    statuses = {f.status for f in findings}
    if not statuses - {Status.na}:  # nothing was checked: never "healthy"
        return ExitCode.UNHEALTHY
    not_checked = [code for status, code in NOT_CHECKED.items() if status in statuses]
    if not_checked:
        return max(not_checked)
    if Status.fail in statuses:
        return ExitCode.UNHEALTHY
    if Status.warn in statuses:
        return ExitCode.DEGRADED
    return ExitCode.OK


def overall_status(findings: Iterable[Finding]) -> str:
    findings = list(findings)
    if not {f.status for f in findings} - {Status.na}:
        return "nothing checked"
    return {
        ExitCode.UNREACHABLE: "unreachable",
        ExitCode.PREFLIGHT: "refused",
        ExitCode.UNHEALTHY: "unhealthy",
        ExitCode.DEGRADED: "degraded",
        ExitCode.OK: "healthy",
    }[exit_code_for(findings)]


def sort_findings(findings: Iterable[Finding], host_order: list[str] | None = None) -> list[Finding]:
    """Grouped by host (spec order), problems first inside each host."""
    order = {h: i for i, h in enumerate(host_order or [])}
    return sorted(
        findings,
        key=lambda f: (order.get(f.host, len(order)), f.host, SEVERITY[f.status], f.check, f.device or ""),
    )
