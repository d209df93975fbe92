"""The plan: per host, the ordered changes apply would make, disruptive ones marked. Pure.

It feeds the spec's desired state (plan.desired) and the observed state (facts.hoststate) to
the collection's own diff functions, the very code the modules run on the hosts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nvmeofctl.plan import desired as desired_mod
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

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class HostPlan:
    host: str
    role: str
    changes: list[Change] = field(default_factory=list)
    error: str = ""

    @property
    def disruptive(self) -> list[Change]:
        return [c for c in self.changes if c.disruptive]


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
                {"host": h.host, "role": h.role, "error": h.error or None,
                 "changes": [c.to_dict() for c in h.changes]}
                for h in self.hosts
            ],
        }


def _changes(host: str, concern: str, raw: list[dict]) -> list[Change]:
    return [
        Change(host, concern, str(c.get("object", "")), str(c.get("action", "")), str(c.get("detail", "")),
               bool(c.get("disruptive")), str(c.get("reason", "")))
        for c in raw
    ]


def plan_host(spec, host, observed: dict[str, Any], in_run=None) -> HostPlan:
    hp = HostPlan(host.name, host.role)
    try:
        rdma_opts = desired_mod.rdma_args(spec, host)
        if rdma_opts and "rdma" in observed:
            rdma = load_module_utils("rdma")
            changes, _device = rdma.plan_from_dump(rdma_opts, observed["rdma"])
            hp.changes += _changes(host.name, "rdma", changes)
        if host.role == "target":
            nvmet = load_module_utils("nvmet")
            want = nvmet.normalize(desired_mod.nvmet_args(spec, host, in_run))
            raw = nvmet.diff(want, observed.get("nvmet") or nvmet.empty_tree(), observed.get("nvmet_managed") or {})
            hp.changes += _changes(host.name, "nvmet", [nvmet.public_change(c) for c in raw])
        else:
            nh = load_module_utils("nvme_host")
            want = nh.normalize_desired(desired_mod.nvme_host_args(spec, host))
            hp.changes += _changes(host.name, "nvme_host", nh.diff(want, observed.get("nvme_host") or {}))
    except ValueError as exc:
        hp.error = str(exc)
    return hp


def make_plan(spec, observed_by_host: dict[str, dict[str, Any]]) -> Plan:
    """Plan every host read; the hosts read are the hosts of this run."""
    in_run = set(observed_by_host)
    return Plan([plan_host(spec, spec.host(name), obs, in_run) for name, obs in observed_by_host.items()])
