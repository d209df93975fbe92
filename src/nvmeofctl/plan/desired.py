"""Desired state per host, as the collection's module options, built from the cluster spec (pure).

The ONE translation of the spec into what each host should hold. The dicts are the contract with
``nvmeofctl.fabric.rdma_link``, ``nvmet_target`` and ``nvme_host``: the playbooks pass them
through unchanged (``host_vars``), the planner feeds the same dicts to the modules' own diff
functions, and ``health`` builds its expectations from ``desired_state`` (the same dicts plus the
few facts no module sets), so plan, apply and health can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping


CONNECT_WAIT = 120  # seconds a GPU node retries a target that is not listening yet


def _secret(value) -> str | None:
    return value.get_secret_value() if value is not None else None


def rdma_args(spec, host, rail: int = 1) -> dict[str, Any]:
    """rdma_link options of one rail (1-based) of ``host``, or {} when the host needs no RDMA (TCP
    transport). Rails after the first carry ``rail`` (their boot files are named after the
    interface); rail 1's options are those of a host with one fabric interface."""
    if spec.fabric.transport != "rdma":
        return {}
    fab = host.fabrics[rail - 1]
    args: dict[str, Any] = {
        "interface": fab.interface,
        "mtu": spec.fabric.mtu,
        "soft_roce": bool(spec.fabric.soft_roce),
        "roce_mode": "RoCE v2",
        "roce_tos": spec.fabric.roce.tos,
    }
    if fab.rdma_device:
        args["rdma_device"] = fab.rdma_device
    if rail > 1:
        args["rail"] = rail
    return args


def rdma_rails_args(spec, host) -> list[dict[str, Any]]:
    """rdma_link options of rails 2..N (the role modules' ``rdma_rails``); [] on TCP or one rail."""
    if spec.fabric.transport != "rdma":
        return []
    return [rdma_args(spec, host, r) for r in range(2, len(host.fabrics) + 1)]


CNTLID_BLOCK = 1024  # controller ids per target in a dual-controller subsystem (kernel max 65519)


def ana_group(spec, target_name: str) -> int:
    """The ANA group of the namespaces whose preferred (optimized) target is ``target_name``:
    one group per target, the same id on every target, so a port's state for group g says
    "is this port's target g's preferred one". Group 1 (the kernel's default, optimized
    everywhere) keeps the namespaces of single-target subsystems."""
    return 2 + [t.name for t in spec.targets].index(target_name)


def ana_state(spec, port_target: str, grpid: int) -> str:
    """A group's state on the ports of ``port_target`` as the spec wants it (no rollout under way)."""
    if grpid == 1:
        return "optimized"
    return "optimized" if ana_group(spec, port_target) == grpid else "non-optimized"


def cntlid_range(spec, target_name: str) -> tuple[int, int]:
    """Disjoint controller-id range of a target in dual-controller subsystems: a host rejects a
    second path whose controller id equals the first's."""
    i = [t.name for t in spec.targets].index(target_name)
    return i * CNTLID_BLOCK + 1, min(i * CNTLID_BLOCK + CNTLID_BLOCK - 1, 0xFFEF)


def ana_groups_on(spec, target_name: str) -> list[int]:
    """The ANA groups the namespaces exported by ``target_name`` use (empty: ANA not managed)."""
    groups = {ana_group(spec, sub.preferred(ns)) for sub in spec.subsystems_on(target_name) if sub.multipath
              for ns in sub.namespaces}
    return sorted(groups | {1}) if groups else []


def nvmet_args(spec, target, in_run=None) -> dict[str, Any]:
    """nvmet_target options for one target host.

    ``in_run``: the GPU nodes this run configures (None: all). Their hosts get ``reauth``: a
    key change is then not disruptive, because the node re-authenticates with the same new key
    (it comes from the same spec entry) later in the same, ordered, run."""
    subsystems = spec.subsystems_on(target.name)
    gpu_names: list[str] = []
    for sub in subsystems:
        for g in sub.allowed_gpu_nodes:
            if g not in gpu_names:
                gpu_names.append(g)
    hosts = []
    for g in gpu_names:
        gpu = spec.host(g)
        key, ctrl = spec.dhchap_keys(g, target.name)
        entry: dict[str, Any] = {"nqn": gpu.host_nqn}
        if key is not None:
            entry["dhchap_key"] = _secret(key)
        if ctrl is not None:
            entry["dhchap_ctrl_key"] = _secret(ctrl)
        if key is not None and (in_run is None or g in in_run):
            entry["reauth"] = True
        hosts.append(entry)
    subs = []
    for sub in subsystems:
        namespaces = []
        for ns in sub.namespaces:
            b = ns.backing
            item: dict[str, Any] = {
                "nsid": ns.nsid,
                "name": ns.name,
                "device_path": b.file or b.device,
                "uuid": str(ns.uuid),
                "nguid": str(ns.nguid),
                "create_file": bool(b.file),
            }
            if b.file and b.size:
                item["size"] = int(b.size)
            if b.signature:
                item["signature"] = b.signature
            if sub.multipath:
                item["ana_grpid"] = ana_group(spec, sub.preferred(ns))
            namespaces.append(item)
        entry = {
            "nqn": sub.nqn,
            "serial": sub.serial,
            "allowed_hosts": [spec.host(g).host_nqn for g in sub.allowed_gpu_nodes],
            "namespaces": namespaces,
        }
        if sub.multipath:
            entry["cntlid_min"], entry["cntlid_max"] = cntlid_range(spec, target.name)
        subs.append(entry)
    groups = ana_groups_on(spec, target.name)
    ports = [
        {
            "id": i + 1,
            "trtype": spec.fabric.transport,
            "adrfam": "ipv4",
            "traddr": str(ip),
            "trsvcid": int(spec.fabric.port),
            "subsystems": [s.nqn for s in subsystems],
            **({"ana_groups": [{"grpid": g, "state": ana_state(spec, target.name, g)} for g in groups]}
               if groups else {}),
        }
        for i, ip in enumerate(target.fabric_ips)  # every rail's
    ]
    # the module re-checks every backing path against the same allow-list on the target
    return {"hosts": hosts, "subsystems": subs, "ports": ports,
            "backing_prefixes": list(spec.allowed_backing_prefixes)}


def nvme_host_args(spec, gpu) -> dict[str, Any]:
    """nvme_host options for one GPU node."""
    rc = spec.fabric.reconnect
    connections = []
    for e in spec.exports_for(gpu.name):
        conn: dict[str, Any] = {
            "subsysnqn": e.nqn,
            "transport": e.transport,
            "traddr": e.traddr,
            "trsvcid": str(e.trsvcid),
        }
        if e.dhchap_secret is not None:
            conn["dhchap_secret"] = _secret(e.dhchap_secret)
        if e.dhchap_ctrl_secret is not None:
            conn["dhchap_ctrl_secret"] = _secret(e.dhchap_ctrl_secret)
        connections.append(conn)
    args: dict[str, Any] = {
        "hostnqn": gpu.host_nqn,
        "hostid": str(gpu.host_id),
        "connections": connections,
        "ctrl_loss_tmo": rc.ctrl_loss_tmo,
        "reconnect_delay": rc.reconnect_delay,
        "keep_alive_tmo": rc.keep_alive_tmo,
        "iopolicy": spec.fabric.iopolicy,
        # targets are configured in parallel (one play, strategy free): wait for their ports
        "connect_wait": CONNECT_WAIT,
    }
    if spec.fabric.nr_io_queues:
        args["nr_io_queues"] = spec.fabric.nr_io_queues
    if spec.fabric.queue_size:
        args["queue_size"] = spec.fabric.queue_size
    return args


@dataclass(frozen=True)
class RailDesired:
    """One fabric interface of a host (rail N, 1-based) and what it should hold."""

    rail: int
    interface: str  # the fabric netdev
    ips: tuple[str, ...]  # its fabric IPv4 addresses (targets listen on each)
    rdma: Mapping[str, Any]  # rdma_link options; {} on a TCP fabric


@dataclass(frozen=True)
class HostDesired:
    """What one host should hold: its module options, and where it sits on the fabric.
    ``interface``, ``ips`` and ``rdma`` are rail 1's; ``rails`` holds every rail, rail 1 first."""

    name: str
    role: str  # target | gpu_node
    interface: str  # the fabric netdev
    ips: tuple[str, ...]  # its fabric IPv4 addresses (the spec's; targets listen on each)
    rdma: Mapping[str, Any]  # rdma_link options; {} on a TCP fabric (no RDMA set up, MTU included)
    nvmet: Mapping[str, Any] | None = None  # nvmet_target options (targets)
    nvme_host: Mapping[str, Any] | None = None  # nvme_host options (GPU nodes)
    rails: tuple[RailDesired, ...] = ()

    @property
    def rdma_rails(self) -> list[dict[str, Any]]:
        """rdma_link options of rails 2..N (the role modules' ``rdma_rails``)."""
        return [dict(r.rdma) for r in self.rails[1:] if r.rdma]


@dataclass(frozen=True)
class Desired:
    """The whole cluster's desired state. ``lossless``: the RoCE QoS a real NIC should carry
    (pfc_priority, dscp, tos, ecn); no module sets it (NIC firmware / DCB tools do), health checks it."""

    transport: str  # rdma | tcp
    port: int  # NVMe-oF service port (trsvcid)
    lossless: Mapping[str, Any]
    hosts: Mapping[str, HostDesired]

    def host_vars(self) -> dict[str, dict[str, Any]]:
        """Inventory variables per host: ``nvmeofctl_rdma`` (and ``nvmeofctl_rdma_rails`` with several
        rails) plus ``nvmeofctl_nvmet`` or ``nvmeofctl_nvme_host``."""
        out: dict[str, dict[str, Any]] = {}
        for name, h in self.hosts.items():
            hv: dict[str, Any] = {"nvmeofctl_rdma": dict(h.rdma)}
            if h.rdma_rails:
                hv["nvmeofctl_rdma_rails"] = h.rdma_rails
            if h.nvmet is not None:
                hv["nvmeofctl_nvmet"] = dict(h.nvmet)
            if h.nvme_host is not None:
                hv["nvmeofctl_nvme_host"] = dict(h.nvme_host)
            out[name] = hv
        return out


def desired_state(spec, in_run=None) -> Desired:
    """The spec, translated once. ``in_run``: the hosts this run configures (None: all), see ``nvmet_args``."""
    hosts: dict[str, HostDesired] = {}
    for host in spec.hosts:
        target = host.role == "target"
        hosts[host.name] = HostDesired(
            name=host.name,
            role=host.role,
            interface=host.fabric.interface,
            ips=tuple(str(ip) for ip in host.fabric.ips),
            rdma=MappingProxyType(rdma_args(spec, host)),
            nvmet=MappingProxyType(nvmet_args(spec, host, in_run)) if target else None,
            nvme_host=None if target else MappingProxyType(nvme_host_args(spec, host)),
            rails=tuple(RailDesired(r, f.interface, tuple(str(ip) for ip in f.ips),
                                    MappingProxyType(rdma_args(spec, host, r)))
                        for r, f in enumerate(host.fabrics, start=1)),
        )
    roce = spec.fabric.roce
    lossless = {"pfc_priority": roce.pfc_priority, "dscp": roce.dscp, "tos": roce.tos, "ecn": roce.ecn}
    return Desired(spec.fabric.transport, int(spec.fabric.port), MappingProxyType(lossless),
                   MappingProxyType(hosts))


def host_vars(spec, in_run=None) -> dict[str, dict[str, Any]]:
    """Inventory variables per host (``Desired.host_vars``) for ansible-runner.
    ``in_run``: the hosts this run configures (None: all), see ``nvmet_args``."""
    return desired_state(spec, in_run).host_vars()
