"""The check registry: every per-host check and fleet check, and ``run_checks`` over them."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Mapping

from nvmeofctl.facts.probe import HostFacts
from nvmeofctl.health import checks_counters, checks_fleet, checks_gpu, checks_nvme, checks_qos, checks_rdma
from nvmeofctl.health.common import finding
from nvmeofctl.health.expect import Expectations
from nvmeofctl.health.model import Finding, Status

HostCheck = Callable[[HostFacts, Expectations], list[Finding]]
FleetCheck = Callable[[dict[str, HostFacts], Expectations], list[Finding]]

# per fabric interface: run once per rail (rail_checks), each rail seen as the host's interface
RAIL_CHECKS: list[HostCheck] = [
    checks_rdma.check_interface,
    checks_rdma.check_rdma_device,
    checks_rdma.check_port,
    checks_rdma.check_gid,
    checks_rdma.check_mtu,
    checks_rdma.check_rdma_cm,
    checks_qos.check_qos,
    checks_counters.check_counters,
]


# what a rail's link being down (cable, switch port, `ip link set down`) fails: with another rail
# up these are "degraded". A wrong MTU, a missing RDMA device or rdma_cm mode stay failures:
# configuration to fix, not a link to wait for.
LINK_DOWN_CHECKS = frozenset({"fabric_interface", "fabric_ip", "rdma_port", "roce_v2_gid"})


def rail_checks(facts: HostFacts, exp: Expectations) -> list[Finding]:
    """RAIL_CHECKS on every rail of the host. With several rails, a rail whose link is down while
    another rail passes all its checks is degraded, not down: its link failures (LINK_DOWN_CHECKS)
    become warnings that name the rails still carrying the fabric (the GPU nodes' paths on those
    rails keep the I/O going; the nvme_paths check says which)."""
    h = exp.hosts[facts.host]
    rails = h.rails or ()
    if len(rails) < 2:
        return [f for check in RAIL_CHECKS for f in check(facts, exp)]
    per_rail: list[tuple[int, str, list[Finding]]] = []
    for rail in rails:
        on_rail = replace(exp, hosts={**exp.hosts, facts.host: h.on_rail(rail)})
        i = rail.interface
        rail_facts = replace(facts, interface=i, netif=facts.netifs.get(i), ecn=facts.ecns.get(i),
                             mlnx_qos=facts.mlnx_qoss.get(i), pause=facts.pauses.get(i), ethtool=facts.ethtools.get(i))
        per_rail.append((rail.rail, rail.interface, [f for check in RAIL_CHECKS for f in check(rail_facts, on_rail)]))
    good = [f"rail {n} ({iface})" for n, iface, found in per_rail if all(f.status != Status.fail for f in found)]
    out: list[Finding] = []
    for n, iface, found in per_rail:
        for f in found:
            if f.status == Status.fail and good and f.check in LINK_DOWN_CHECKS:
                f = replace(f, status=Status.warn,
                            observed=f"{f.observed} (rail {n} of {len(per_rail)}, {iface}: degraded; "
                                     f"{', '.join(good)} up)")
            out.append(f)
    return out


HOST_CHECKS: list[HostCheck] = [
    checks_rdma.check_modules,
    rail_checks,
    checks_nvme.check_nvme_host,
    checks_nvme.check_nvmet,
    checks_gpu.check_gpus,
]
FLEET_CHECKS: list[FleetCheck] = [
    checks_fleet.check_unique_identity,
    checks_fleet.check_fabric_consistency,
]


def run_checks(
    facts: Mapping[str, HostFacts],
    exp: Expectations,
    unreachable: Mapping[str, str] | None = None,
    probe_errors: Mapping[str, str] | None = None,
    refused: Mapping[str, str] | None = None,
) -> list[Finding]:
    """All findings: one ``unreachable`` finding per host that did not answer SSH, one ``refused``
    per host that refused us (host key, login), the rest checked as usual.

    A check that raises is a bug; it becomes one ``fail`` finding instead of hiding the others."""
    out: list[Finding] = []
    for host, reason in (unreachable or {}).items():
        out.append(Finding(host, "ssh", Status.unreachable, reason, "reachable over SSH",
                           "check the address, key and known_hosts in the spec; is the host up?"))
    for host, reason in (refused or {}).items():
        out.append(Finding(host, "ssh", Status.refused, reason, "host key pinned in known_hosts, login accepted",
                           "pin the host's key in the spec's known_hosts (never disable checking); "
                           "check ssh.user and ssh.key"))
    for host, err in (probe_errors or {}).items():
        out.append(finding(host, "probe", Status.fail, err, "probe completes",
                           "run the probe by hand with -v; see stderr"))
    for host in exp.order:
        f = facts.get(host)
        if f is None:
            continue
        for check in HOST_CHECKS:
            try:
                out.extend(check(f, exp))
            except Exception as exc:  # noqa: BLE001 - keep the other checks
                out.append(finding(host, check.__name__.removeprefix("check_"), Status.fail,
                                   f"internal error: {type(exc).__name__}: {exc}", "", "report this bug"))
    present = {h: f for h, f in facts.items() if h in exp.hosts}
    for fc in FLEET_CHECKS:
        try:
            out.extend(fc(present, exp))
        except Exception as exc:  # noqa: BLE001
            out.append(finding("fleet", fc.__name__.removeprefix("check_"), Status.fail,
                               f"internal error: {type(exc).__name__}: {exc}", "", "report this bug"))
    return out
