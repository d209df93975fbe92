"""Helpers shared by the check modules (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from nvmeofctl.facts.probe import HostFacts
from nvmeofctl.facts.rdma import IbDevice, IbPort
from nvmeofctl.health.expect import Expectations, HostExpect
from nvmeofctl.health.model import Finding, Status

SOFT_ROCE_NA = "not applicable: soft-RoCE exposes no PFC/ECN"


def finding(facts_or_host, check: str, status: Status, observed: str = "", expected: str = "",
            remedy: str = "", device: str | None = None) -> Finding:
    host = facts_or_host if isinstance(facts_or_host, str) else facts_or_host.host
    return Finding(host, check, status, observed, expected, remedy if status in (Status.fail, Status.warn) else "",
                   device)


@dataclass
class Resolved:
    """The RDMA device and port the spec's fabric interface uses on this host."""

    name: str | None
    device: IbDevice | None
    port: IbPort | None
    note: str = ""

    @property
    def soft(self) -> bool:
        return bool(self.device and self.device.is_soft) or bool(self.name and self.name.startswith("rxe"))


def resolve_device(facts: HostFacts, host: HostExpect) -> Resolved:
    """Find the spec's RDMA device; a defaulted (soft-RoCE) name accepts whatever rxe device is
    bound to the interface, since the lab may have named it differently."""
    name = host.rdma_device
    bound = facts.rdma_devs_on(host.interface) if host.interface else []
    if name not in facts.ib_devices and not host.rdma_device_explicit and len(bound) == 1:
        name = bound[0]
    dev = facts.ib_devices.get(name) if name else None
    if dev is None:
        return Resolved(name, None, None)
    port = None
    for link in facts.rdma_link_for(dev.name):
        if link.netdev == host.interface and link.port in dev.ports:
            port = dev.ports[link.port]
    if port is None and dev.ports:
        port = dev.ports.get(1) or dev.ports[min(dev.ports)]
    return Resolved(dev.name, dev, port)


def is_soft(facts: HostFacts, host: HostExpect, exp: Expectations) -> bool:
    r = resolve_device(facts, host)
    return host.soft_roce or r.soft


def rdma_used(exp: Expectations) -> bool:
    return exp.fabric.transport == "rdma"


TCP_NA = "not applicable: fabric transport is tcp"
