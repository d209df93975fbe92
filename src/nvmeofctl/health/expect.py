"""What health expects, as plain data, read from the ONE translation of the spec (plan.desired).

``expectations_from_desired`` takes ``plan.desired.desired_state(spec)``: the very module options
``apply`` passes and ``plan`` diffs (rdma_link, nvmet_target, nvme_host), normalised with the
modules' own functions. So health never expects what plan would not make converge: a role the
spec forbids cannot get here, the defaults are the modules' defaults, and ``ctrl_loss_tmo`` is
what the kernel shows for the requested value. Checks and tests use ``Expectations``."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from nvmeofctl.plan.desired import Desired, HostDesired, desired_state
from nvmeofctl.resources import load_module_utils


@dataclass(frozen=True)
class FabricExpect:
    """Fleet-wide: the NVMe-oF service and the lossless RoCE QoS (which no module sets)."""

    transport: str = "rdma"
    port: int = 4420
    pfc_priority: int | None = 3
    dscp: int | None = 26
    ecn: bool = True


@dataclass(frozen=True)
class Export:
    """One path a GPU node should have: a subsystem, through one target, on one rail."""

    nqn: str
    target: str
    target_ips: tuple[str, ...] = ()  # every address the target serves the subsystem on
    traddr: str | None = None  # this path's address (the target's on the path's rail)


@dataclass(frozen=True)
class RailExpect:
    """One fabric interface (rail N, 1-based) of a host and its RDMA link (rdma_link's view)."""

    rail: int
    interface: str
    ips: tuple[str, ...] = ()
    rdma_device: str | None = None
    rdma_device_explicit: bool = False
    soft_roce: bool = False
    mtu: int | None = None
    roce_tos: int | None = None


@dataclass(frozen=True)
class HostExpect:
    name: str
    role: str  # target | gpu_node
    interface: str | None = None
    ips: tuple[str, ...] = ()
    # rdma_link (all None/False on a TCP fabric: nothing sets them there)
    rdma_device: str | None = None
    rdma_device_explicit: bool = False
    soft_roce: bool = False
    mtu: int | None = None
    roce_tos: int | None = None
    # nvme_host (GPU nodes)
    host_nqn: str | None = None
    host_id: str | None = None
    exports: tuple[Export, ...] = ()
    ctrl_loss_tmo: int | None = None  # as sysfs shows it: the kernel rounds up to a multiple of reconnect_delay
    ctrl_loss_tmo_requested: int | None = None  # as nvme connect is given it
    reconnect_delay: int | None = None
    keep_alive_tmo: int | None = None
    iopolicy: str | None = None
    # nvmet_target (targets): nqn -> allowed host NQNs
    subsystems: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # every rail, rail 1 first (interface, ips and the rdma fields above are rail 1's)
    rails: tuple[RailExpect, ...] = ()

    def on_rail(self, rail: RailExpect) -> HostExpect:
        """This host as the per-interface checks see it on ``rail``."""
        return replace(self, interface=rail.interface, ips=rail.ips, rdma_device=rail.rdma_device,
                       rdma_device_explicit=rail.rdma_device_explicit, soft_roce=rail.soft_roce, mtu=rail.mtu,
                       roce_tos=rail.roce_tos)

    @property
    def is_target(self) -> bool:
        return self.role == "target"

    @property
    def is_gpu_node(self) -> bool:
        return self.role == "gpu_node"


@dataclass(frozen=True)
class Expectations:
    fabric: FabricExpect
    hosts: dict[str, HostExpect]

    @property
    def order(self) -> list[str]:
        return list(self.hosts)

    def peers(self, name: str) -> list[str]:
        """Hosts that exchange NVMe-oF traffic with ``name`` (by the spec's exports)."""
        h = self.hosts[name]
        if h.is_gpu_node:
            return sorted({e.target for e in h.exports})
        return sorted(n for n, o in self.hosts.items() if any(e.target == name for e in o.exports))


def _rdma(link: Mapping[str, Any]) -> dict[str, Any]:
    """rdma_link's view of one rail's options: its own normalisation and device choice."""
    if not link:
        return {"rdma_device": None, "rdma_device_explicit": False, "soft_roce": False, "mtu": None, "roce_tos": None}
    rdma = load_module_utils("rdma")
    opts = rdma.normalize(dict(link))
    device = opts["rdma_device"]
    if device is None:
        try:  # nothing bound yet: the name rdma_link would create (Soft-RoCE), else none
            device = rdma.choose_device(opts, [])[0]
        except ValueError:
            device = None
    return {"rdma_device": device, "rdma_device_explicit": opts["rdma_device"] is not None,
            "soft_roce": opts["soft_roce"], "mtu": opts["mtu"], "roce_tos": opts["roce_tos"]}


def _exports(h: HostDesired, served_by: dict[tuple[str, str], tuple[str, tuple[str, ...]]]) -> tuple[Export, ...]:
    """One per path: a subsystem served by several targets (dual-controller) is one export per target."""
    out = []
    for c in (h.nvme_host or {}).get("connections") or []:
        # every connection is to a port of the target that serves the subsystem
        target, ips = served_by[(c["subsysnqn"], str(c["traddr"]))]
        out.append(Export(c["subsysnqn"], target, ips, str(c["traddr"])))
    return tuple(out)


def _nvme_host(h: HostDesired) -> dict[str, Any]:
    """nvme_host's view of the options (its defaults filled), with the ctrl_loss_tmo sysfs shows."""
    if h.nvme_host is None:
        return {}
    nh = load_module_utils("nvme_host")
    d = nh.normalize_desired(dict(h.nvme_host))
    return {"host_nqn": d["hostnqn"], "host_id": d["hostid"],
            "ctrl_loss_tmo": nh.expected_ctrl_loss_tmo(d["ctrl_loss_tmo"], d["reconnect_delay"]),
            "ctrl_loss_tmo_requested": d["ctrl_loss_tmo"], "reconnect_delay": d["reconnect_delay"],
            "keep_alive_tmo": d["keep_alive_tmo"], "iopolicy": d["iopolicy"]}


def expectations_from_desired(desired: Desired) -> Expectations:
    served_by: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}  # (NQN, IP) -> (target, its listening IPs)
    served: dict[str, dict[str, tuple[str, ...]]] = {}
    for name, h in desired.hosts.items():
        if h.nvmet is None:
            continue
        served[name] = {s["nqn"]: tuple(s["allowed_hosts"]) for s in h.nvmet["subsystems"]}
        for s in h.nvmet["subsystems"]:
            ips = tuple(str(p["traddr"]) for p in h.nvmet["ports"] if s["nqn"] in p["subsystems"])
            for ip in ips:
                served_by[(s["nqn"], ip)] = (name, ips)
    hosts = {
        name: HostExpect(name=name, role=h.role, interface=h.interface, ips=tuple(h.ips), **_rdma(h.rdma),
                         **_nvme_host(h), exports=_exports(h, served_by), subsystems=served.get(name, {}),
                         rails=tuple(RailExpect(r.rail, r.interface, tuple(r.ips), **_rdma(r.rdma)) for r in h.rails))
        for name, h in desired.hosts.items()
    }
    ll = desired.lossless
    fabric = FabricExpect(transport=desired.transport, port=desired.port, pfc_priority=ll["pfc_priority"],
                          dscp=ll["dscp"], ecn=bool(ll["ecn"]))
    return Expectations(fabric, hosts)


def expectations_from_spec(spec: Any) -> Expectations:
    """``expectations_from_desired(plan.desired.desired_state(spec))`` for a loaded ``ClusterSpec``."""
    return expectations_from_desired(desired_state(spec))


def load_spec(path: str, *, insecure_secret_perms: bool = False):
    """Load the cluster spec with the spec package's loader."""
    from nvmeofctl.spec import load_spec as _load

    return _load(path, insecure_secret_perms=insecure_secret_perms)


def host_spec_objects(spec: Any) -> dict[str, Any]:
    """name -> the spec's host object (for ``SshTarget.from_host_spec``)."""
    return {h.name: h for h in spec.hosts}
