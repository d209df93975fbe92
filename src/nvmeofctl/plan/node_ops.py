"""`connect` / `disconnect` on one GPU node: which subsystems, which module options, which
changes. Pure: the changes come from nvme_host's own diff (with its ``only`` option) and the
boot-file planning, exactly as the module will compute them on the node.

- connect: the node's options as `apply` passes them, acting ``only`` on the chosen
  subsystems (every other path is left as it is): missing paths are connected, the records and
  boot files follow the spec.
- disconnect: the chosen subsystems left out of ``connections`` and ``only`` on them: their
  paths are disconnected (disruptive, which is what was asked), dropped from the boot-time
  connections, and stay down across reboots until `connect` (or `apply`) brings them back.
"""

from __future__ import annotations

from typing import Any

from nvmeofctl.errors import UsageError
from nvmeofctl.plan import desired as desired_mod
from nvmeofctl.plan import persistence
from nvmeofctl.plan.planner import Change, _changes
from nvmeofctl.resources import load_module_utils


def subsystems_for(spec, node_name: str, namespace: str | None) -> list[str]:
    """The subsystem NQNs a command on ``node_name`` acts on: the one holding ``namespace``, or
    every one the spec exports to the node. UsageError for anything the spec does not export there."""
    try:
        node = spec.host(node_name)
    except KeyError:
        raise UsageError(f"--node {node_name}: no host of that name in the spec "
                         f"(GPU nodes: {', '.join(h.name for h in spec.gpu_nodes) or 'none'})") from None
    if node.role != "gpu_node":
        raise UsageError(f"--node {node_name}: a {node.role}, not a GPU node")
    exported = [e.nqn for e in spec.exports_for(node_name)]
    if namespace is None:
        if not exported:
            raise UsageError(f"the spec exports nothing to {node_name}")
        return exported
    holders = [s for s in spec.subsystems if any(ns.name == namespace for ns in s.namespaces)]
    if not holders:
        names = sorted(ns.name for s in spec.subsystems for ns in s.namespaces)
        raise UsageError(f"--namespace {namespace}: no namespace of that name in the spec ({', '.join(names)})")
    sub = holders[0]
    if sub.nqn not in exported:
        raise UsageError(f"--namespace {namespace} (subsystem {sub.nqn}) is not exported to {node_name}: "
                         f"the spec allows it to {', '.join(sub.allowed_gpu_nodes)}")
    return [sub.nqn]


def node_args(spec, node_name: str, nqns: list[str], action: str) -> dict[str, Any]:
    """nvme_host options for ``action`` (connect | disconnect) on ``nqns``."""
    args = desired_mod.nvme_host_args(spec, spec.host(node_name))
    args["only"] = sorted(nqns)
    if action == "disconnect":
        args["connections"] = [c for c in args["connections"] if c["subsysnqn"] not in nqns]
        args["allow_disruptive"] = True  # dropping the path is the request itself
    else:
        args["allow_disruptive"] = False
    return args


def node_changes(node_name: str, args: dict[str, Any], observed: dict[str, Any]) -> list[Change]:
    """The changes the module will make on the node: its diff (``only`` applied) and its boot
    files. ``observed``: the node's HostState.observed()."""
    nh = load_module_utils("nvme_host")
    want = nh.normalize_desired(args)
    raw = nh.diff(want, observed.get("nvme_host") or {})
    fs = observed.get("files")
    if fs is not None:
        raw = raw + [nh.public_change(c) for c in persistence.nvme_host_changes(
            want, fs, managed=(observed.get("nvme_host") or {}).get("managed"))]
    return _changes(node_name, "nvme_host", raw)


def devices_of(observed: dict[str, Any], nqns: list[str]) -> list[str]:
    """Block devices (nvmeXnY) of the node's live controllers to ``nqns``."""
    nh = load_module_utils("nvme_host")
    out: list[str] = []
    for c in (observed.get("nvme_host") or {}).get("controllers", {}).values():
        if c.get("fabrics") and c.get("subsysnqn") in nqns and c.get("state") not in nh.GONE_STATES:
            for rec in c.get("namespaces") or []:
                if rec["block"] not in out:
                    out.append(rec["block"])
    return sorted(out)
