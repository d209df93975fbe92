"""Every path the spec gives a GPU node to a namespace, and what the node shows for it (pure).

Read from the GPU nodes' observed state (``facts.hoststate`` -> nvme_host's own parser): a path
carries I/O when its controller is ``live`` and the namespace's path device reports an ANA state
of ``optimized`` or ``non-optimized`` (no ANA state: a target without ANA, also live). Used by
the plan (``plan.alternate``: another path carries the I/O) and by ``rollout``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IO_STATES = (None, "optimized", "non-optimized")


@dataclass(frozen=True)
class Path:
    """One GPU node's path to one namespace through one target (on one rail)."""

    node: str
    nqn: str
    nsid: int
    namespace: str  # the spec's namespace name
    target: str
    controller: str | None  # nvmeN; None when not connected
    state: str | None  # controller state (live, connecting, ...)
    ana_state: str | None  # of this namespace on this path
    address: str | None = None  # the target's address, when it has several paths (rails) to the node

    @property
    def carries_io(self) -> bool:
        return self.controller is not None and self.state == "live" and self.ana_state in IO_STATES

    def label(self) -> str:
        """``gpu1 shared via tgt2 (nvme1, optimized)``: the controller's state when not live,
        else the path's ANA state."""
        via = f"{self.target} {self.address}" if self.address else self.target
        if self.controller is None:
            return f"{self.node} {self.namespace} via {via} (not connected)"
        shown = self.state if self.state != "live" else (self.ana_state or "live")
        return f"{self.node} {self.namespace} via {via} ({self.controller}, {shown})"


def _target_ips(spec, name: str) -> set[str]:
    return {str(ip) for ip in spec.host(name).fabric_ips}


def paths(spec, observed: dict[str, dict[str, Any]], any_port: bool = False) -> list[Path]:
    """Every (GPU node, namespace, target, rail) path the spec gives, with what the node shows for
    it. ``observed``: host name -> ``HostState.observed()`` (GPU nodes; others ignored). A path is a
    controller to the target's address on the spec's service port; with ``any_port``, on any port
    (a path not moved yet during a rollout that changes the port). A target with one path to the
    node: any of its addresses (a re-addressed port is still that path); with several (rails):
    that rail's address."""
    out = []
    exports = {node.name: spec.exports_for(node.name) for node in spec.gpu_nodes}
    for sub in spec.subsystems:
        for node in sub.allowed_gpu_nodes:
            ctrls = ((observed.get(node) or {}).get("nvme_host") or {}).get("controllers") or {}
            mine_all = [e for e in exports.get(node, []) if e.nqn == sub.nqn]
            for e in mine_all:
                target = e.target
                several = sum(1 for x in mine_all if x.target == target) > 1
                ips = {e.traddr} if several else _target_ips(spec, target)
                mine = [c for c in ctrls.values() if c.get("fabrics") and c.get("subsysnqn") == sub.nqn
                        and c.get("traddr") in ips and (any_port or str(c.get("trsvcid")) == str(spec.fabric.port))]
                mine.sort(key=lambda c: (c.get("state") != "live", str(c.get("trsvcid")) != str(spec.fabric.port),
                                         c.get("name") or ""))
                for ns in sub.namespaces:
                    c = mine[0] if mine else None
                    ana = None
                    if c is not None:
                        ana = next((p.get("ana_state") for p in c.get("namespaces") or []
                                    if p.get("nsid") == ns.nsid), "no namespace")
                    out.append(Path(node, sub.nqn, ns.nsid, ns.name, target,
                                    c.get("name") if c else None, c.get("state") if c else None, ana,
                                    e.traddr if several else None))
    return out
