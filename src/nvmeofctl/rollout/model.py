"""Rolling redeploy: which targets go together, whether every namespace keeps a path, the ANA
states that move I/O off a target and back, and when the GPU nodes have followed (pure; the
paths come from ``plan.paths``)."""

from __future__ import annotations

from typing import Any

from nvmeofctl.plan.desired import ana_group, ana_groups_on, ana_state
from nvmeofctl.plan.paths import Path, paths

def lost_paths(spec, observed, down: set[str]) -> list[str]:
    """What taking the targets ``down`` out of service would leave without a live path: one
    line per (node, namespace), naming its paths. Empty: safe."""
    by_ns: dict[tuple[str, str, int], list[Path]] = {}
    for p in paths(spec, observed, any_port=True):  # a live path carries I/O on whatever port it has now
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
    return [{"id": i + 1, "ana_groups": states} for i in range(len(spec.host(target).fabric_ips))]


def partners(spec, targets: list[str]) -> list[str]:
    """The other targets serving a subsystem with any of ``targets``."""
    out: list[str] = []
    for sub in spec.subsystems:
        if any(t in sub.served_by for t in targets):
            out += [t for t in sub.served_by if t not in targets and t not in out]
    return out


def pending_drain(spec, observed, down: set[str]) -> list[str]:
    """Paths through the ``down`` targets that GPU nodes still use for I/O (on any port: the
    spec may be moving it)."""
    return [p.label() for p in paths(spec, observed, any_port=True) if p.target in down and p.carries_io]


def pending_restore(spec, observed, targets: set[str], partners: set[str] = frozenset()) -> list[str]:
    """Paths through ``targets`` that are not yet live with the spec's ANA state, and paths
    through ``partners`` whose ANA state is not the spec's yet (on the port they have now: a
    partner gets the spec's port in its own turn)."""
    out = []
    todo = [p for p in paths(spec, observed) if p.target in targets]
    todo += [p for p in paths(spec, observed, any_port=True) if p.target in partners and p.target not in targets]
    for p in todo:
        sub = next(s for s in spec.subsystems if s.nqn == p.nqn)
        if sub.multipath:
            ns = next(n for n in sub.namespaces if n.nsid == p.nsid)
            want = "optimized" if sub.preferred(ns) == p.target else "non-optimized"
        else:
            want = None
        if not p.carries_io or (want is not None and p.ana_state != want):
            out.append(p.label() + (f", want {want}" if want else ", want live"))
    return out
