"""A change that stops one path is not disruptive while another live path carries the I/O (pure).

The modules judge each host alone: a port re-addressed on a target, or a path reconnected on a GPU
node, interrupts I/O through that path. With a dual-controller subsystem (``targets`` in the
spec) the GPU node's native NVMe multipath moves the I/O to its other path and the application
sees nothing. So the plan looks at every GPU node's paths (read in the same round trip) and
clears the flag of a change when, for every (GPU node, namespace) it touches, a path through
another target is live and ANA-accessible now and not interrupted by this plan too; the reason
then names that path. When the other paths are interrupted by the same plan (a port moved on
every target) the change stays disruptive and the reason points to `nvmeofctl rollout`, naming
the path that carries the I/O while each target changes. Without the GPU nodes' read (a
``--limit`` that leaves them out) nothing is cleared.
"""

from __future__ import annotations

import re
from typing import Any

from nvmeofctl.plan.paths import paths

_SUBSYS_RE = re.compile(r"subsystem (nqn\.\S+)")
_PORT_RE = re.compile(r"^port (\d+)")
_CONN_RE = re.compile(r"(?:rdma|tcp)://\[?([0-9A-Fa-f.:]+?)\]?:(\d+)/(nqn\.\S+)")


def _target_of_ip(spec, ip: str) -> str | None:
    for t in spec.targets:
        if ip in {str(x) for x in t.fabric_ips}:
            return t.name
    return None


def _touched(spec, change, observed: dict[str, dict[str, Any]]) -> list[tuple[str, str]] | None:
    """(subsystem NQN, target) pairs whose paths the change interrupts; None: not a path change
    (keys, identity, files: left as the module judged them)."""
    host = spec.host(change.host)
    if change.concern == "nvmet" and host.role == "target":
        m = _SUBSYS_RE.search(change.object)
        if m:
            return [(m.group(1), host.name)]
        m = _PORT_RE.match(change.object)
        if m:
            ports = ((observed.get(host.name) or {}).get("nvmet") or {}).get("ports") or {}
            linked = (ports.get(m.group(1)) or {}).get("subsystems") or []
            return [(nqn, host.name) for nqn in linked]
        return None
    if change.concern == "nvme_host":
        m = _CONN_RE.search(change.object) or _CONN_RE.search(change.detail)
        if m:
            target = _target_of_ip(spec, m.group(1))
            return [(m.group(3), target)] if target else None
    return None


def relieve(spec, plan, observed: dict[str, dict[str, Any]]) -> None:
    """Clear ``disruptive`` on the changes another live path covers (in place), naming the path."""
    gpus = [h.name for h in spec.gpu_nodes]
    if not any(g in observed for g in gpus):
        return
    known = paths(spec, observed, any_port=True)  # what carries the I/O now, wherever the spec moves it
    disrupted = [(c, _touched(spec, c, observed)) for c in plan.changes if c.disruptive]
    # the paths this plan interrupts anywhere: one of them cannot carry another's I/O
    busy = {(nqn, target) for _c, t in disrupted if t for nqn, target in t}
    for c, touched in disrupted:
        if not touched:
            continue
        carriers: list[str] = []  # live now and not interrupted by this plan
        later: list[str] = []  # live now, but this plan interrupts them too
        covered = True
        for nqn, target in touched:
            sub = next((s for s in spec.subsystems if s.nqn == nqn), None)
            if sub is None or not sub.multipath:
                covered = False
                break
            nodes = [c.host] if c.concern == "nvme_host" else sub.allowed_gpu_nodes
            for node in nodes:
                if node not in observed:
                    covered = False
                    break
                for ns in sub.namespaces:
                    alt = [p for p in known if p.node == node and p.nqn == nqn and p.nsid == ns.nsid
                           and p.target != target and p.carries_io]
                    free = [p for p in alt if (p.nqn, p.target) not in busy]
                    if free:
                        carriers.append(free[0].label())
                    elif alt:
                        later.append(alt[0].label())
                    else:
                        covered = False
                if not covered:
                    break
        if covered and carriers and not later:
            c.disruptive = False
            c.reason += "; not disruptive: I/O continues on " + ", ".join(dict.fromkeys(carriers))
        elif covered and later:
            c.reason += ("; this plan also interrupts the other path(s): `nvmeofctl rollout` changes one target "
                         "at a time, I/O continuing meanwhile on " + ", ".join(dict.fromkeys(later + carriers)))
