"""Which hosts a run may touch after preflight: partial failure, as Ansible users expect. Pure.

A host that is unreachable or fails preflight is left untouched and reported with why; a GPU
node that connects to such a target is left untouched too ("target X not configured in this
run"), so that it neither waits for a port that will not come nor drops the paths it has.
Everything else is planned and applied. The exit code is the worst outcome (see `exit_code`).
"""

from __future__ import annotations

from dataclasses import dataclass

from nvmeofctl.exitcodes import ExitCode

# status of a host that is not run -> its exit code
STATUS_EXIT = {
    "unreachable": ExitCode.UNREACHABLE,
    "preflight failed": ExitCode.PREFLIGHT,
    "skipped": ExitCode.PREFLIGHT,
}


@dataclass(frozen=True)
class Skipped:
    host: str
    role: str
    status: str  # unreachable | preflight failed | skipped
    reason: str

    def to_dict(self) -> dict:
        return {"host": self.host, "role": self.role, "status": self.status, "failure": self.reason}


@dataclass(frozen=True)
class Selection:
    run: list[str]  # hosts to plan and apply, in spec order
    skipped: list[Skipped]

    @property
    def exit_code(self) -> ExitCode:
        return max((STATUS_EXIT[s.status] for s in self.skipped), default=ExitCode.OK)


def select_hosts(spec, names: list[str], problems) -> Selection:
    """``names``: the hosts this run covers (spec order); ``problems``: preflight.Problem list."""
    why: dict[str, list] = {}
    for p in problems:
        why.setdefault(p.host, []).append(p)
    skipped: dict[str, Skipped] = {}
    for name in names:
        if name in why:
            ps = why[name]
            status = "unreachable" if any(p.kind == "unreachable" for p in ps) else "preflight failed"
            skipped[name] = Skipped(name, spec.host(name).role, status, "; ".join(p.message for p in ps))
    for name in names:
        host = spec.host(name)
        if name in skipped or host.role != "gpu_node":
            continue
        down = []
        for export in spec.exports_for(name):
            if export.target in skipped and export.target not in down:
                down.append(export.target)
        if down:
            reason = "; ".join(f"target {t} not configured in this run ({skipped[t].status})" for t in down)
            skipped[name] = Skipped(name, host.role, "skipped", reason + ": left untouched")
    return Selection([n for n in names if n not in skipped], [skipped[n] for n in names if n in skipped])


def worst(*codes: int) -> ExitCode:
    """The run's exit code: the highest of the outcomes (6 unreachable > 5 task failures > 4
    preflight), 0 when every host succeeded."""
    return ExitCode(max((int(c) for c in codes), default=0))


def require_all(spec, names: list[str], states, extra: list[str] = (), suffix: str = "") -> None:
    """All or nothing (connect, disconnect, teardown, bench): raise PreflightError naming every
    problem of preflight.evaluate plus the ``extra`` lines, with the exit code ``select_hosts``
    gives them (6 when a host is unreachable; 4 otherwise, and for ``extra`` alone)."""
    from nvmeofctl.errors import PreflightError
    from nvmeofctl.plan.preflight import evaluate

    problems = evaluate(spec, states)
    lines = [f"preflight: {p}" for p in problems] + [f"preflight: {e}" for e in extra]
    if lines:
        code = select_hosts(spec, names, problems).exit_code if problems else ExitCode.PREFLIGHT
        raise PreflightError("\n".join(lines) + suffix, exit_code=code)
