"""The plan: per host, the ordered changes apply would make, disruptive ones marked. Pure.

It feeds the spec's desired state (plan.desired) and the observed state (facts.hoststate) to
the collection's own diff functions, the very code the modules run on the hosts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nvmeofctl.plan import desired as desired_mod
from nvmeofctl.plan import persistence
from nvmeofctl.resources import load_module_utils


@dataclass
class Change:
    host: str
    concern: str  # rdma | nvmet | nvme_host
    object: str
    action: str  # create | update | delete
    detail: str
    disruptive: bool
    reason: str
    kind: str = ""  # the domain's own kind ("persist": boot persistence and state files)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class HostPlan:
    host: str
    role: str
    changes: list[Change] = field(default_factory=list)
    error: str = ""
    # the boot persistence files were read and planned: an empty plan then means a module run
    # would change nothing (apply skips the host)
    complete: bool = False

    @property
    def disruptive(self) -> list[Change]:
        return [c for c in self.changes if c.disruptive]

    @property
    def converged(self) -> bool:
        """Nothing a module run would change (boot persistence included)."""
        return self.complete and not self.error and not self.changes


@dataclass
class Plan:
    hosts: list[HostPlan]

    @property
    def changes(self) -> list[Change]:
        return [c for h in self.hosts for c in h.changes]

    @property
    def disruptive(self) -> list[Change]:
        return [c for c in self.changes if c.disruptive]

    def to_dict(self) -> dict[str, Any]:
        return {
            "changes": len(self.changes),
            "disruptive": len(self.disruptive),
            "hosts": [
                {"host": h.host, "role": h.role, "error": h.error or None, "converged": h.converged,
                 "changes": [c.to_dict() for c in h.changes]}
                for h in self.hosts
            ],
        }


def _changes(host: str, concern: str, raw: list[dict]) -> list[Change]:
    return [
        Change(host, concern, str(c.get("object", "")), str(c.get("action", "")), str(c.get("detail", "")),
               bool(c.get("disruptive")), str(c.get("reason", "")), str(c.get("kind") or ""))
        for c in raw
    ]


def plan_host(spec, host, observed: dict[str, Any], in_run=None, args: dict[str, dict] | None = None) -> HostPlan:
    """``observed``: the host's state per domain (facts/hoststate.py); with ``files`` (the
    persistence files' digests) the boot persistence is planned too (plan/persistence.py), so an
    empty plan means a module run would change nothing. ``args``: module options to plan instead
    of the spec's, per domain (``rdma``, ``rdma_rails``, ``nvmet``, ``nvme_host``; `teardown` passes
    its own)."""
    fs = observed.get("files")
    hp = HostPlan(host.name, host.role, complete=fs is not None)
    args = args or {}
    try:
        rdma_opts = args["rdma"] if "rdma" in args else desired_mod.rdma_args(spec, host)
        rails = args["rdma_rails"] if "rdma_rails" in args else desired_mod.rdma_rails_args(spec, host)
        if "rdma" in observed:
            # rail 1 from the host's rdma dump, rails 2..N each from its own (facts/hoststate.py)
            per_rail = [(rdma_opts, observed["rdma"])] if rdma_opts else []
            for opts in rails:
                rail_obs = (observed.get("rdma_rails") or {}).get(opts["interface"])
                if rail_obs is None:
                    raise ValueError(f"fabric interface {opts['interface']} (rail {opts.get('rail')}) was not read")
                per_rail.append((opts, rail_obs))
            rdma = load_module_utils("rdma")
            for opts, dump in per_rail:
                changes, device = rdma.plan_from_dump(opts, dump)
                if fs is not None:
                    changes = changes + persistence.rdma_changes(opts, device, fs)
                hp.changes += _changes(host.name, "rdma", changes)
        if rdma_opts and "rdma_units" in observed:  # a rail the spec dropped: its boot files go
            keep = [opts["interface"] for opts in rails]
            hp.changes += _changes(host.name, "rdma", persistence.stale_rail_changes(observed["rdma_units"], keep))
        if host.role == "target":
            nvmet = load_module_utils("nvmet")
            opts = args["nvmet"] if "nvmet" in args else desired_mod.nvmet_args(spec, host, in_run)
            want = nvmet.normalize(opts)
            obs = observed.get("nvmet") or nvmet.empty_tree()
            if "nvmet_files" in observed:  # the backing files, as the module probes them
                obs = {**obs, "files": observed["nvmet_files"]}
            managed = nvmet.managed_from(observed.get("nvmet_managed"))
            problems = nvmet.backing_file_problems(want, obs, managed)
            if problems:  # the module refuses these before any change
                raise ValueError("; ".join(problems))
            raw = nvmet.diff(want, obs, managed)
            if fs is not None:
                raw = raw + persistence.nvmet_changes(want, obs, raw, managed, fs, opts.get("persist", True))
            hp.changes += _changes(host.name, "nvmet", [nvmet.public_change(c) for c in raw])
        else:
            nh = load_module_utils("nvme_host")
            opts = args["nvme_host"] if "nvme_host" in args else desired_mod.nvme_host_args(spec, host)
            want = nh.normalize_desired(opts)
            changes = nh.diff(want, observed.get("nvme_host") or {})
            if fs is not None:
                changes = changes + [nh.public_change(c) for c in persistence.nvme_host_changes(
                    want, fs, opts.get("persist", True), (observed.get("nvme_host") or {}).get("managed"))]
            hp.changes += _changes(host.name, "nvme_host", changes)
    except (ValueError, load_module_utils("nvmet").NvmetError) as exc:  # persist.UnreadPath is a ValueError
        hp.error = str(exc)
    return hp


def make_plan(spec, observed_by_host: dict[str, dict[str, Any]]) -> Plan:
    """Plan every host read; the hosts read are the hosts of this run."""
    from nvmeofctl.plan.alternate import relieve

    in_run = set(observed_by_host)
    plan = Plan([plan_host(spec, spec.host(name), obs, in_run) for name, obs in observed_by_host.items()])
    relieve(spec, plan, observed_by_host)  # a live path through another target carries the I/O
    return plan
