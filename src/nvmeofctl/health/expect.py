"""What the spec expects, as plain data: the ONE adapter between the spec models and the checks.

The spec models (``nvmeofctl.spec``) are read only here, by attribute name, so a renamed field
changes this file and nothing else. Checks and tests use ``Expectations``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FabricExpect:
    transport: str = "rdma"
    port: int = 4420
    mtu: int | None = None
    soft_roce: bool = False
    pfc_priority: int | None = 3
    dscp: int | None = 26
    tos: int | None = None
    ecn: bool = True
    ctrl_loss_tmo: int | None = None
    reconnect_delay: int | None = None
    keep_alive_tmo: int | None = None
    iopolicy: str | None = None


@dataclass(frozen=True)
class Export:
    """One subsystem a GPU node should be connected to."""

    nqn: str
    target: str
    target_ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostExpect:
    name: str
    role: str  # target | gpu_node
    interface: str | None = None
    ips: tuple[str, ...] = ()
    rdma_device: str | None = None
    rdma_device_explicit: bool = False
    host_nqn: str | None = None
    host_id: str | None = None
    exports: tuple[Export, ...] = ()  # gpu nodes
    subsystems: dict[str, tuple[str, ...]] = field(default_factory=dict)  # targets: nqn -> allowed host NQNs

    @property
    def is_target(self) -> bool:
        return self.role == "target"

    @property
    def is_gpu_node(self) -> bool:
        return self.role in ("gpu_node", "gpu", "initiator")


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


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        if obj is None:
            return default
        obj = obj.get(n) if isinstance(obj, dict) else getattr(obj, n, None)
    return default if obj is None else obj


def _val(v: Any) -> Any:
    """Enum members -> their value; everything else unchanged."""
    return getattr(v, "value", v)


def default_rdma_device(interface: str | None, soft_roce: bool) -> str | None:
    """Soft-RoCE lab default: ``rxe_<interface>``."""
    return f"rxe_{interface}" if interface and soft_roce else None


def expectations_from_spec(spec: Any) -> Expectations:
    fab = _get(spec, "fabric")
    roce = _get(fab, "roce")
    rec = _get(fab, "reconnect")
    soft = bool(_get(fab, "soft_roce", default=False))
    fabric = FabricExpect(
        transport=str(_val(_get(fab, "transport", default="rdma"))),
        port=int(_get(fab, "port", default=4420)),
        mtu=_get(fab, "mtu"),
        soft_roce=soft,
        pfc_priority=_get(roce, "pfc_priority"),
        dscp=_get(roce, "dscp"),
        tos=_get(roce, "tos"),
        ecn=bool(_get(roce, "ecn", default=True)),
        ctrl_loss_tmo=_get(rec, "ctrl_loss_tmo"),
        reconnect_delay=_get(rec, "reconnect_delay"),
        keep_alive_tmo=_get(rec, "keep_alive_tmo"),
        iopolicy=_val(_get(fab, "iopolicy")),
    )
    raw_hosts = list(_get(spec, "hosts", default=[]))
    by_name = {str(_get(h, "name")): h for h in raw_hosts}

    def ips(h: Any) -> tuple[str, ...]:
        return tuple(str(ip).split("/")[0] for ip in _get(h, "fabric", "ips", default=[]) or [])

    exports: dict[str, list[Export]] = {}
    served: dict[str, dict[str, tuple[str, ...]]] = {}
    for sub in _get(spec, "subsystems", default=[]) or []:
        nqn, tgt = str(_get(sub, "nqn")), str(_get(sub, "target"))
        allowed = [str(a) for a in _get(sub, "allowed_gpu_nodes", default=[]) or []]
        for g in allowed:
            exports.setdefault(g, []).append(Export(nqn, tgt, ips(by_name.get(tgt))))
        served.setdefault(tgt, {})[nqn] = tuple(
            str(_get(by_name.get(g), "host_nqn", default="")) for g in allowed if by_name.get(g) is not None
        )
    hosts: dict[str, HostExpect] = {}
    for h in raw_hosts:
        name = str(_get(h, "name"))
        iface = _get(h, "fabric", "interface")
        explicit = _get(h, "fabric", "rdma_device")
        hosts[name] = HostExpect(
            name=name,
            role=str(_val(_get(h, "role", default="gpu_node"))),
            interface=iface,
            ips=ips(h),
            rdma_device=explicit or default_rdma_device(iface, soft),
            rdma_device_explicit=bool(explicit),
            host_nqn=_get(h, "host_nqn"),
            host_id=str(_get(h, "host_id")) if _get(h, "host_id") is not None else None,
            exports=tuple(exports.get(name, [])),
            subsystems=served.get(name, {}),
        )
    return Expectations(fabric, hosts)


def load_spec(path: str, *, insecure_secret_perms: bool = False):
    """Load the cluster spec with the spec package's loader (monkeypatched in unit tests)."""
    from nvmeofctl.spec import load_spec as _load

    return _load(path, insecure_secret_perms=insecure_secret_perms)


def host_spec_objects(spec: Any) -> dict[str, Any]:
    """name -> the spec's host object (for ``SshTarget.from_host_spec``)."""
    return {str(_get(h, "name")): h for h in _get(spec, "hosts", default=[]) or []}
