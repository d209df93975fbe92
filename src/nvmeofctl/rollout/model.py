"""Rolling redeploy: which targets go together, whether every namespace keeps a path, the ANA
states that move I/O off a target and back, and when the GPU nodes have followed (pure).

Paths are read from the GPU nodes' observed state (``facts.hoststate`` -> nvme_host's own parser):
a path carries I/O when its controller is ``live`` and the namespace's path device reports an
ANA state of ``optimized`` or ``non-optimized`` (no ANA state: a target without ANA, also live).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nvmeofctl.plan.desired import ana_group, ana_groups_on, ana_state

IO_STATES = (None, "optimized", "non-optimized")


@dataclass(frozen=True)
class Path:
    """One GPU node's path to one namespace through one target."""

    node: str
    nqn: str
    nsid: int
    namespace: str  # the spec's namespace name
    target: str
    controller: str | None  # nvmeN; None when not connected
    state: str | None  # controller state (live, connecting, ...)
    ana_state: str | None  # of this namespace on this path

    @property
    def carries_io(self) -> bool:
        return self.controller is not None and self.state == "live" and self.ana_state in IO_STATES

    def label(self) -> str:
        return f"{self.node} {self.namespace} via {self.target} ({self.controller or 'not connected'}" \
               f"{', ' + (self.ana_state or self.state or '?') if self.controller else ''})"


def _target_ips(spec, name: str) -> set[str]:
    return {str(ip) for ip in spec.host(name).fabric.ips}


def paths(spec, observed: dict[str, dict[str, Any]]) -> list[Path]:
    """Every (GPU node, namespace, target) path the spec gives, with what the node shows for it.
    ``observed``: host name -> ``HostState.observed()`` (GPU nodes; others ignored)."""
    out = []
    for sub in spec.subsystems:
        for node in sub.allowed_gpu_nodes:
            ctrls = ((observed.get(node) or {}).get("nvme_host") or {}).get("controllers") or {}
            for target in sub.served_by:
                ips = _target_ips(spec, target)
                mine = [c for c in ctrls.values() if c.get("fabrics") and c.get("subsysnqn") == sub.nqn
                        and c.get("traddr") in ips and str(c.get("trsvcid")) == str(spec.fabric.port)]
                mine.sort(key=lambda c: (c.get("state") != "live", c.get("name") or ""))
                for ns in sub.namespaces:
                    c = mine[0] if mine else None
                    ana = None
                    if c is not None:
                        ana = next((p.get("ana_state") for p in c.get("namespaces") or []
                                    if p.get("nsid") == ns.nsid), "no namespace")
                    out.append(Path(node, sub.nqn, ns.nsid, ns.name, target,
                                    c.get("name") if c else None, c.get("state") if c else None, ana))
    return out


def lost_paths(spec, observed, down: set[str]) -> list[str]:
    """What taking the targets ``down`` out of service would leave without a live path: one
    line per (node, namespace), naming its paths. Empty: safe."""
    by_ns: dict[tuple[str, str, int], list[Path]] = {}
    for p in paths(spec, observed):
        by_ns.setdefault((p.node, p.nqn, p.nsid), []).append(p)
    out = []
    for (node, nqn, _nsid), ps in by_ns.items():
        if not any(p.target in down for p in ps):
            continue
        others = [p for p in ps if p.target not in down]
        if not any(p.carries_io for p in others):
            name = ps[0].namespace
            if not others:
                why = f"only {', '.join(sorted({p.target for p in ps}))} serves it"
            else:
                why = "no live path through " + ", ".join(p.label() for p in others)
            out.append(f"{node}: namespace {name} ({nqn}) would lose its last live path: {why}")
    return out


def batches(order: list[str], max_unavailable: int) -> list[list[str]]:
    """Targets in groups of at most ``max_unavailable``, in order."""
    return [order[i:i + max_unavailable] for i in range(0, len(order), max_unavailable)]


def ana_ports(spec, target: str, down: set[str]) -> list[dict[str, Any]]:
    """``nvmet_ana`` ports option for ``target`` with the targets ``down`` drained: their own
    groups inaccessible on their ports, optimized on the partners' (empty ``down``: the spec's)."""
    groups = [g for g in ana_groups_on(spec, target) if g != 1]
    if not groups:
        return []
    preferred_down = {ana_group(spec, t) for t in down}
    states = []
    for g in groups:
        if target in down:
            state = "inaccessible"
        elif g in preferred_down:
            state = "optimized"
        else:
            state = ana_state(spec, target, g)
        states.append({"grpid": g, "state": state})
    return [{"id": i + 1, "ana_groups": states} for i in range(len(spec.host(target).fabric.ips))]


def partners(spec, targets: list[str]) -> list[str]:
    """The other targets serving a subsystem with any of ``targets``."""
    out: list[str] = []
    for sub in spec.subsystems:
        if any(t in sub.served_by for t in targets):
            out += [t for t in sub.served_by if t not in targets and t not in out]
    return out


def pending_drain(spec, observed, down: set[str]) -> list[str]:
    """Paths through the ``down`` targets that GPU nodes still use for I/O."""
    return [p.label() for p in paths(spec, observed) if p.target in down and p.carries_io]


def pending_restore(spec, observed, targets: set[str]) -> list[str]:
    """Paths through ``targets`` that are not yet live with the spec's ANA state."""
    out = []
    for p in paths(spec, observed):
        if p.target not in targets:
            continue
        sub = next(s for s in spec.subsystems if s.nqn == p.nqn)
        if sub.multipath:
            ns = next(n for n in sub.namespaces if n.nsid == p.nsid)
            want = "optimized" if sub.preferred(ns) == p.target else "non-optimized"
        else:
            want = None
        if not p.carries_io or (want is not None and p.ana_state != want):
            out.append(p.label() + (f", want {want}" if want else ", want live"))
    return out
