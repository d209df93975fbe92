"""`teardown`: remove what the spec created, with the modules' own diff. Pure.

Each host is planned and run with module options that say "nothing": a GPU node keeps its host
identity but no connection (nvmeofctl's own controllers are disconnected, others left alone) and
no boot files; a target exports nothing (only the objects nvmet-managed.json records are
removed) and keeps no boot files; the RDMA link's boot files go while the live link (MTU, RDMA
device) stays, as other users of the fabric may need it. Backing files are data: they are kept.
A host whose teardown plan is empty needs no run, so a second teardown changes nothing.
"""

from __future__ import annotations

from typing import Any

from nvmeofctl.plan import desired as desired_mod


def teardown_args(spec, host) -> dict[str, dict[str, Any]]:
    """Per domain, the module options that remove what the spec created on ``host``."""
    out: dict[str, dict[str, Any]] = {}
    rdma = desired_mod.rdma_args(spec, host)
    out["rdma"] = dict(rdma, persist=False) if rdma else {}
    out["rdma_rails"] = [dict(r, persist=False) for r in desired_mod.rdma_rails_args(spec, host)]
    if host.role == "target":
        out["nvmet"] = {"hosts": [], "subsystems": [], "ports": [], "persist": False, "allow_disruptive": True,
                        "backing_prefixes": list(spec.allowed_backing_prefixes)}
    else:
        args = desired_mod.nvme_host_args(spec, host)
        args.update(connections=[], persist=False, allow_disruptive=True)
        out["nvme_host"] = args
    return out


def host_vars(args: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Inventory variables (site.yml's contract) for ``teardown_args``."""
    hv: dict[str, Any] = {"nvmeofctl_rdma": args.get("rdma") or {}}
    if args.get("rdma_rails"):
        hv["nvmeofctl_rdma_rails"] = args["rdma_rails"]
    if "nvmet" in args:
        hv["nvmeofctl_nvmet"] = args["nvmet"]
    if "nvme_host" in args:
        hv["nvmeofctl_nvme_host"] = args["nvme_host"]
    return hv


def kept_backing_files(spec, targets: list[str]) -> list[str]:
    """``target:path`` of every file backing on ``targets``: teardown keeps them (data)."""
    return [f"{s.target}:{ns.backing.file}" for s in spec.subsystems if s.target in targets
            for ns in s.namespaces if ns.backing.file is not None]
