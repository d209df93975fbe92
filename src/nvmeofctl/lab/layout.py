"""Pure description of a lab: which VMs, their addresses, and the QEMU command line of each.

No I/O here, so the command lines and addressing are unit-tested.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from pathlib import Path

FABRIC_NET = ipaddress.IPv4Network("192.168.100.0/24")
FABRIC_IF = "eth1"
LAB_MTU = 1500


@dataclass(frozen=True)
class VmSpec:
    name: str
    role: str  # target | gpu_node
    index: int  # 0-based position in the lab
    ssh_port: int
    fabric_ip: str
    memory_mb: int

    @property
    def mgmt_mac(self) -> str:
        return f"52:54:00:0a:00:{self.index + 1:02x}"

    @property
    def fabric_mac(self) -> str:
        return f"52:54:00:fa:00:{self.index + 1:02x}"


@dataclass
class LabLayout:
    name: str
    vms: list[VmSpec] = field(default_factory=list)

    def vm(self, name: str) -> VmSpec:
        for vm in self.vms:
            if vm.name == name:
                return vm
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {"name": self.name, "vms": [asdict(v) for v in self.vms]}

    @classmethod
    def from_dict(cls, data: dict) -> "LabLayout":
        return cls(name=data["name"], vms=[VmSpec(**v) for v in data["vms"]])


def make_layout(name: str, targets: int, gpu_nodes: int, ports: list[int], memory_mb: int = 768) -> LabLayout:
    """Targets are tgt1..N (fabric .11+), GPU nodes gpu1..M (fabric .21+); one SSH port each."""
    if targets < 1 or gpu_nodes < 0 or targets > 9 or gpu_nodes > 9:
        raise ValueError("a lab has 1-9 targets and 0-9 GPU nodes")
    names = [(f"tgt{i + 1}", "target", 11 + i) for i in range(targets)]
    names += [(f"gpu{i + 1}", "gpu_node", 21 + i) for i in range(gpu_nodes)]
    if len(ports) != len(names):
        raise ValueError("one SSH port per VM")
    vms = [
        VmSpec(
            name=n,
            role=role,
            index=i,
            ssh_port=ports[i],
            fabric_ip=str(FABRIC_NET.network_address + host),
            memory_mb=memory_mb,
        )
        for i, (n, role, host) in enumerate(names)
    ]
    return LabLayout(name=name, vms=vms)


@dataclass(frozen=True)
class VmFiles:
    """Per-VM files in the lab folder."""

    dir: Path

    @property
    def overlay(self) -> Path:
        return self.dir / "disk.qcow2"

    @property
    def pidfile(self) -> Path:
        return self.dir / "qemu.pid"

    @property
    def monitor(self) -> Path:
        return self.dir / "monitor.sock"

    @property
    def console(self) -> Path:
        return self.dir / "console.log"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def cmdline(self) -> Path:
        return self.dir / "qemu.cmdline"


def qemu_argv(
    vm: VmSpec,
    files: VmFiles,
    *,
    kernel: Path,
    initrd: Path,
    accel: str,
    fabric_sock: Path,
    authorized_keys: Path,
    loadvm: str | None = None,
) -> list[str]:
    """The QEMU command line of one lab VM.

    Management: user-mode network restricted to the VM (no outbound traffic) with SSH forwarded
    from 127.0.0.1. Fabric: a vde switch joining every VM's second NIC on one private L2 segment.
    Identity (hostname, fabric address, SSH keys) reaches the guest through fw_cfg.
    """
    cpu = "host" if accel == "kvm" else "max"
    argv = [
        "qemu-system-x86_64",
        "-name", f"nvmeofctl-{vm.name}",
        "-machine", f"q35,accel={accel}",
        "-cpu", cpu,
        "-smp", "1",
        "-m", str(vm.memory_mb),
        "-nodefaults",
        "-display", "none",
        "-kernel", str(kernel),
        "-initrd", str(initrd),
        "-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet systemd.show_status=0",
        "-drive", f"file={files.overlay},if=virtio,format=qcow2,discard=unmap",
        "-netdev", f"user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{vm.ssh_port}-:22",
        "-device", f"virtio-net-pci,netdev=mgmt,mac={vm.mgmt_mac}",
        "-netdev", f"vde,id=fabric,sock={fabric_sock}",
        "-device", f"virtio-net-pci,netdev=fabric,mac={vm.fabric_mac}",
        "-fw_cfg", f"name=opt/nvmeofctl/hostname,string={vm.name}",
        "-fw_cfg", f"name=opt/nvmeofctl/fabric_cidr,string={vm.fabric_ip}/{FABRIC_NET.prefixlen}",
        "-fw_cfg", f"name=opt/nvmeofctl/fabric_mtu,string={LAB_MTU}",
        "-fw_cfg", f"name=opt/nvmeofctl/authorized_keys,file={authorized_keys}",
        "-fw_cfg", f"name=opt/nvmeofctl/ssh_host_ed25519_key,file={files.host_key}",
        "-fw_cfg", f"name=opt/nvmeofctl/ssh_host_ed25519_key.pub,file={files.host_key}.pub",
        "-serial", f"file:{files.console}",
        "-monitor", f"unix:{files.monitor},server=on,wait=off",
        "-pidfile", str(files.pidfile),
        "-daemonize",
    ]
    if loadvm:
        argv += ["-loadvm", loadvm]
    return argv
