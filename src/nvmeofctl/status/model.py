"""The cluster as it is now, namespace by namespace, with its drift from the spec. Pure.

Built from what `plan` has: the hosts' one-round-trip reads (facts/hoststate.py, parsed with the
modules' own parsers) and the plan made from them (plan/planner.py). Drift is what the plan
would change, so `status` and `plan` cannot disagree: a missing path is the plan's `connect`, a
wrong multipath policy its `set-iopolicy`, a target-side difference its change to that
subsystem. Only what the plan leaves alone by design is read here directly: controllers the spec
does not want on a node (unexpected), and the block device each connected namespace became.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nvmeofctl.plan import desired as desired_mod
from nvmeofctl.resources import load_module_utils


@dataclass
class NodePath:
    """One namespace as one GPU node sees it."""

    node: str
    state: str  # connected | degraded (no live controller) | missing | unknown (node not read)
    device: str | None = None  # /dev/nvmeXnY (the multipath head: one per namespace)
    transport: str = ""
    traddr: str = ""
    trsvcid: str = ""
    controllers: list[dict[str, str]] = field(default_factory=list)  # [{"name", "state"}]
    iopolicy: str | None = None
    drift: list[str] = field(default_factory=list)


@dataclass
class Namespace:
    name: str
    subsystem: str
    nsid: int
    target: str
    backing: str
    size: int | None  # bytes: the spec's size of a file backing; None for a device
    uuid: str | None
    nguid: str | None
    exported: str  # yes | missing | disabled | unknown (target not read); the worst over `targets`
    drift: list[str] = field(default_factory=list)  # target side
    paths: list[NodePath] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)  # every target serving it (dual-controller: 2+)


@dataclass
class Unexpected:
    """A fabrics controller on a GPU node that the spec does not want there."""

    node: str
    controller: str
    subsysnqn: str
    transport: str
    traddr: str
    state: str
    managed: bool  # recorded by nvmeofctl: `apply` disconnects it; otherwise left alone

    @property
    def note(self) -> str:
        return ("recorded by nvmeofctl: the next apply disconnects it (disruptive)" if self.managed
                else "not created by nvmeofctl: left alone")


@dataclass
class HostRow:
    host: str
    role: str
    read: bool
    error: str = ""


@dataclass
class ClusterStatus:
    cluster: str
    namespaces: list[Namespace]
    unexpected: list[Unexpected]
    hosts: list[HostRow]

    @property
    def drift(self) -> int:
        """How many things differ from the spec (each path, namespace or controller once)."""
        n = sum(1 for ns in self.namespaces if ns.exported != "yes" or ns.drift)
        n += sum(1 for ns in self.namespaces for p in ns.paths if p.state != "connected" or p.drift)
        return n + len(self.unexpected)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "drift": self.drift,
            "namespaces": [asdict(ns) for ns in self.namespaces],
            "unexpected": [dict(asdict(u), note=u.note) for u in self.unexpected],
            "hosts": [asdict(h) for h in self.hosts],
        }


def _changes_of(plan, host: str) -> list:
    for hp in plan.hosts:
        if hp.host == host:
            return hp.changes
    return []


def _target_side(sub, ns, observed: dict | None, changes: list) -> tuple[str, list[str]]:
    """(exported, drift) of one namespace on its target."""
    if observed is None:
        return "unknown", []
    nvmet = load_module_utils("nvmet")
    tree = observed.get("nvmet") or nvmet.empty_tree()
    got = ((tree.get("subsystems") or {}).get(sub.nqn) or {}).get("namespaces", {}).get(str(ns.nsid))
    if got is None:
        exported = "missing"
    elif not got.get("enable"):
        exported = "disabled"
    else:
        exported = "yes"
    subsys = f"subsystem {sub.nqn}"  # the object names of nvmet_diff.py's changes
    mine = (subsys, f"{subsys} / namespace {ns.nsid}")
    drift = [f"{c.object}: {c.action} {c.detail}".rstrip() for c in changes
             if c.object in mine or c.object.startswith(f"{subsys} / allowed host ")
             or (c.object.startswith("port ") and c.object.endswith(f" / {subsys}"))]
    return exported, drift


def _node_side(spec, node, sub, ns, observed: dict | None, changes: list) -> NodePath:
    """One namespace on one GPU node the spec exports it to."""
    nh = load_module_utils("nvme_host")
    want = nh.normalize_desired(desired_mod.nvme_host_args(spec, node))
    conns = [c for c in want["connections"] if c["subsysnqn"] == sub.nqn]
    first = conns[0] if conns else {}
    path = NodePath(node.name, "unknown", transport=str(first.get("transport") or ""),
                traddr=str(first.get("traddr") or ""), trsvcid=str(first.get("trsvcid") or ""))
    if observed is None:
        return path
    host = observed.get("nvme_host") or {}
    keys = {nh.conn_key(c) for c in conns}
    ctrls = [c for c in (host.get("controllers") or {}).values()
             if c.get("fabrics") and nh.ctrl_key(c) in keys and c.get("state") not in nh.GONE_STATES]
    ctrls.sort(key=lambda c: c["name"])
    path.controllers = [{"name": c["name"], "state": str(c.get("state"))} for c in ctrls]
    for c in ctrls:
        for rec in c.get("namespaces") or []:
            if (ns.uuid and rec.get("uuid") == str(ns.uuid)) or (ns.nguid and rec.get("nguid") == str(ns.nguid)):
                path.device = "/dev/" + rec["block"]
                break
        if path.device:
            break
    path.iopolicy = ((host.get("subsystems") or {}).get(sub.nqn) or {}).get("iopolicy")
    labels = {"connection:" + nh.key_label(k) for k in keys}
    for c in changes:
        if c.object in labels:
            if c.action == "connect":
                continue  # the path is missing: its state says so
            path.drift.append(f"{c.action}: {c.detail}")
        elif c.object == "subsystem:" + sub.nqn and c.action == "set-iopolicy":
            path.drift.append(f"wrong policy: iopolicy {c.detail}")
    if not ctrls:
        path.state = "missing"
    elif any(c["state"] == "live" for c in path.controllers) and path.device:
        path.state = "connected"
    else:
        path.state = "degraded"
        if not path.device:
            path.drift.append(f"namespace {ns.nsid} not visible on {', '.join(c['name'] for c in ctrls)}")
    return path


def _unexpected(spec, node, observed: dict) -> list[Unexpected]:
    nh = load_module_utils("nvme_host")
    want = nh.normalize_desired(desired_mod.nvme_host_args(spec, node))
    keys = {nh.conn_key(c) for c in want["connections"]}
    host = observed.get("nvme_host") or {}
    managed = {tuple(k) for k in host.get("managed") or []}
    out = []
    for c in sorted((host.get("controllers") or {}).values(), key=lambda c: c["name"]):
        if not c.get("fabrics") or c.get("state") in nh.GONE_STATES or nh.ctrl_key(c) in keys:
            continue
        out.append(Unexpected(node.name, c["name"], str(c.get("subsysnqn")), str(c.get("transport")),
                              str(c.get("traddr") or ""), str(c.get("state")), nh.ctrl_key(c) in managed))
    return out


def build_status(spec, observed: dict[str, dict[str, Any]], plan, errors: dict[str, str]) -> ClusterStatus:
    """``observed``: per host read, its observed state (HostState.observed()); ``plan``: the plan
    made from it; ``errors``: per host not read, why."""
    namespaces = []
    worst = ("yes", "disabled", "missing", "unknown")  # a dual-controller export shows its worst side
    for sub in spec.subsystems:
        for ns in sub.namespaces:
            sides = [(t, *_target_side(sub, ns, observed.get(t), _changes_of(plan, t))) for t in sub.served_by]
            exported = max((e for _t, e, _d in sides), key=lambda e: worst.index(e) if e in worst else len(worst))
            tdrift = [(f"{t}: {d}" if sub.multipath else d) for t, _e, ds in sides for d in ds]
            item = Namespace(ns.name, sub.nqn, ns.nsid, sub.target, ns.backing.path,
                             ns.backing.size if ns.backing.file is not None else None,
                             str(ns.uuid) if ns.uuid else None, str(ns.nguid) if ns.nguid else None,
                             exported, tdrift, targets=list(sub.served_by))
            for name in sub.allowed_gpu_nodes:
                node = spec.host(name)
                item.paths.append(_node_side(spec, node, sub, ns, observed.get(name), _changes_of(plan, name)))
            namespaces.append(item)
    unexpected = [u for node in spec.gpu_nodes if node.name in observed for u in _unexpected(spec, node, observed[node.name])]
    hosts = [HostRow(h.name, h.role, h.name in observed, errors.get(h.name, "")) for h in spec.hosts]
    return ClusterStatus(spec.name, namespaces, unexpected, hosts)
