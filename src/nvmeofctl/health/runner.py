"""Gather facts from every host in parallel (one SSH round trip each) and check them.

The only module in ``health`` that does I/O; the SSH fan-out is injectable for tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from nvmeofctl.facts.probe import HostFacts, parse_probe_output, probe_command, probe_script
from nvmeofctl.health import perf as perf_mod
from nvmeofctl.health.checks import run_checks
from nvmeofctl.health.expect import Expectations, host_spec_objects
from nvmeofctl.health.model import Finding
from nvmeofctl.remote import ssh


@dataclass
class HealthReport:
    expectations: Expectations
    facts: dict[str, HostFacts] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)
    probe_errors: dict[str, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    perf: list[perf_mod.PerfResult] | None = None
    window_s: float = 3.0
    refused: dict[str, str] = field(default_factory=dict)  # host key or login refused (ssh.REFUSED_KINDS)


def ssh_targets(spec: Any, names: list[str]) -> dict[str, ssh.SshTarget]:
    objs = host_spec_objects(spec)
    return {n: ssh.SshTarget.from_host_spec(objs[n]) for n in names}


def gather(
    exp: Expectations,
    targets: dict[str, ssh.SshTarget],
    window: float,
    *,
    run_many: Callable[..., dict] | None = None,
) -> tuple[dict[str, HostFacts], dict[str, str], dict[str, str], dict[str, str]]:
    """Probe every host: (facts, unreachable, probe errors, refused), the last three host -> reason."""
    run_many = run_many or ssh.run_many
    by_name = {t.name: t for t in targets.values()}
    results = run_many(
        list(targets.values()),
        lambda t: probe_command([r.interface for r in exp.hosts[t.name].rails] or exp.hosts[t.name].interface,
                                window),
        stdin=lambda t: probe_script(exp.hosts[t.name].interface),
        timeout=window + 90,
    )
    facts: dict[str, HostFacts] = {}
    unreachable: dict[str, str] = {}
    errors: dict[str, str] = {}
    refused: dict[str, str] = {}
    for name in by_name:
        r = results.get(name)
        if r is None:
            unreachable[name] = "no result"
        elif isinstance(r, ssh.Unreachable) and r.refused:
            refused[name] = r.reason
        elif isinstance(r, ssh.Unreachable) or not hasattr(r, "stdout"):
            unreachable[name] = getattr(r, "reason", "unreachable")
        else:
            f = parse_probe_output(name, r.stdout)
            facts[name] = f
            if r.rc != 0 or not f.complete:
                tail = (r.stderr or "").strip().splitlines()[-1:] or ["no end marker"]
                errors[name] = f"probe rc={r.rc}: {tail[0]}"
    return facts, unreachable, errors, refused


def health(
    exp: Expectations,
    targets: dict[str, ssh.SshTarget],
    *,
    window: float = 3.0,
    do_perf: bool = False,
    run_many: Callable[..., dict] | None = None,
    run_on: Callable[..., object] | None = None,
) -> HealthReport:
    facts, unreachable, errors, refused = gather(exp, targets, window, run_many=run_many)
    rep = HealthReport(exp, facts, unreachable, errors, window_s=window, refused=refused)
    rep.findings = run_checks(facts, exp, unreachable, errors, refused)
    if do_perf:
        rep.perf = perf_mod.run_perf(exp, facts, targets, run_on=run_on or ssh.run_on,
                                     unreachable=set(unreachable) | set(refused))
        rep.findings += perf_mod.to_findings(rep.perf)
    return rep
