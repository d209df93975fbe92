"""Pure description of a lab: which VMs, their addresses, and the QEMU command line of each.

No I/O here, so the command lines and addressing are unit-tested.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from pathlib import Path

# One L2 segment ("rail") per fabric NIC: rail 1 is eth1 on 192.168.100.0/24, rail 2 (``lab up
# --rails 2``) eth2 on 192.168.101.0/24, with the same host numbers (tgt1 .11, gpu1 .21 ...).
FABRIC_NETS = (ipaddress.IPv4Network("192.168.100.0/24"), ipaddress.IPv4Network("192.168.101.0/24"))
FABRIC_IFS = ("eth1", "eth2")
FABRIC_NET = FABRIC_NETS[0]
FABRIC_IF = FABRIC_IFS[0]
MAX_RAILS = len(FABRIC_NETS)
LAB_MTU = 1500

# The shared disk (``lab up --shared-disk``): one raw file in the lab folder attached to every
# target VM (dual-controller targets). The guest sees it as /dev/vdb with this serial.
SHARED_DISK_FILE = "shared.raw"
SHARED_DISK_MIB = 256
SHARED_DISK_SERIAL = "SHARED0"
SHARED_DISK_GUEST = "/dev/vdb"
# With the shared disk attached, both virtio-blk devices get pinned PCI slots (above the NICs'
# 1-3) so the root disk probes first and stays /dev/vda. The root disk's block node gets a name:
# saved states are taken over QMP for that node only (the raw shared disk cannot snapshot).
ROOT_DISK_SLOT = 0x8
SHARED_DISK_SLOT = 0x9
ROOT_DISK_NODE = "root0"


@dataclass(frozen=True)
class VmSpec:
    name: str
    role: str  # target | gpu_node
    index: int  # 0-based position in the lab
    ssh_port: int
    fabric_ip: str  # rail 1 (eth1)
    memory_mb: int
    fabric2_ip: str | None = None  # rail 2 (eth2), in a 2-rail lab only

    @property
    def fabric_ips(self) -> tuple[str, ...]:
        """One address per rail, in rail order (``FABRIC_IFS`` names the interfaces)."""
        return (self.fabric_ip,) if self.fabric2_ip is None else (self.fabric_ip, self.fabric2_ip)

    @property
    def mgmt_mac(self) -> str:
        return f"52:54:00:0a:00:{self.index + 1:02x}"

    @property
    def fabric_mac(self) -> str:
        return f"52:54:00:fa:00:{self.index + 1:02x}"

    @property
    def fabric2_mac(self) -> str:
        return f"52:54:00:fb:00:{self.index + 1:02x}"


@dataclass
class LabLayout:
    name: str
    vms: list[VmSpec] = field(default_factory=list)
    rails: int = 1
    shared_disk: bool = False  # one raw disk on every target VM (SHARED_DISK_GUEST in the guest)

    def has_shared_disk(self, vm: VmSpec) -> bool:
        return self.shared_disk and vm.role == "target"

    def vm(self, name: str) -> VmSpec:
        for vm in self.vms:
            if vm.name == name:
                return vm
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "rails": self.rails, "shared_disk": self.shared_disk,
            "vms": [asdict(v) for v in self.vms],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "LabLayout":
        """Also reads labs created before rails and the shared disk existed (1 rail, none)."""
        return cls(
            name=data["name"], vms=[VmSpec(**v) for v in data["vms"]],
            rails=int(data.get("rails", 1)), shared_disk=bool(data.get("shared_disk", False)),
        )


def make_layout(
    name: str, targets: int, gpu_nodes: int, ports: list[int], memory_mb: int = 768,
    rails: int = 1, shared_disk: bool = False,
) -> LabLayout:
    """Targets are tgt1..N (fabric .11+), GPU nodes gpu1..M (fabric .21+); one SSH port each.
    With 2 rails each VM also has the same host number on the second fabric network."""
    if targets < 1 or gpu_nodes < 0 or targets > 9 or gpu_nodes > 9:
        raise ValueError("a lab has 1-9 targets and 0-9 GPU nodes")
    if rails not in range(1, MAX_RAILS + 1):
        raise ValueError(f"a lab has 1-{MAX_RAILS} fabric rails")
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
            fabric_ip=str(FABRIC_NETS[0].network_address + host),
            memory_mb=memory_mb,
            fabric2_ip=str(FABRIC_NETS[1].network_address + host) if rails >= 2 else None,
        )
        for i, (n, role, host) in enumerate(names)
    ]
    return LabLayout(name=name, vms=vms, rails=rails, shared_disk=shared_disk)


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
    def qmp(self) -> Path:
        """QMP socket: only VMs with the shared disk have one (their saved states go over QMP)."""
        return self.dir / "qmp.sock"

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
    fabric2_sock: Path | None = None,
    shared_disk: Path | None = None,
) -> list[str]:
    """The QEMU command line of one lab VM.

    Management: user-mode network restricted to the VM (no outbound traffic) with SSH forwarded
    from 127.0.0.1. Fabric: a vde switch joining every VM's second NIC on one private L2 segment
    (with ``fabric2_sock`` a second switch joins every VM's third NIC, eth2, on rail 2).
    Identity (hostname, fabric addresses, SSH keys) reaches the guest through fw_cfg.

    ``shared_disk``: attach that raw file as a second virtio disk (``share-rw``, no host cache,
    no image locking: several VMs write it), pin both disks' PCI slots, and open a QMP socket.
    HMP ``savevm``/``-loadvm`` refuse a writable raw disk, so such a VM's states are saved and
    loaded over QMP for the root disk only: with ``loadvm`` it starts paused (``-S``) and the
    caller loads the state over QMP, then continues it.

    A 1-rail VM without the shared disk gets exactly the command line of earlier versions, so
    the states saved by them still load.
    """
    cpu = "host" if accel == "kvm" else "max"
    if shared_disk is None:
        disks = ["-drive", f"file={files.overlay},if=virtio,format=qcow2,discard=unmap"]
    else:
        disks = [
            "-drive", f"file={files.overlay},if=none,id=vd0,format=qcow2,discard=unmap,node-name={ROOT_DISK_NODE}",
            "-device", f"virtio-blk-pci,drive=vd0,addr={ROOT_DISK_SLOT:#x}",
            "-drive", f"file={shared_disk},if=none,id=sh0,format=raw,cache=none,file.locking=off",
            "-device", f"virtio-blk-pci,drive=sh0,share-rw=on,serial={SHARED_DISK_SERIAL},addr={SHARED_DISK_SLOT:#x}",
        ]
    rail2_nic: list[str] = []
    rail2_id: list[str] = []
    if fabric2_sock is not None:
        if vm.fabric2_ip is None:
            raise ValueError(f"{vm.name} has no rail-2 address")
        rail2_nic = [
            "-netdev", f"vde,id=fabric2,sock={fabric2_sock}",
            "-device", f"virtio-net-pci,netdev=fabric2,mac={vm.fabric2_mac}",
        ]
        rail2_id = ["-fw_cfg", f"name=opt/nvmeofctl/fabric2_cidr,string={vm.fabric2_ip}/{FABRIC_NETS[1].prefixlen}"]
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
        *disks,
        "-netdev", f"user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{vm.ssh_port}-:22",
        "-device", f"virtio-net-pci,netdev=mgmt,mac={vm.mgmt_mac}",
        "-netdev", f"vde,id=fabric,sock={fabric_sock}",
        "-device", f"virtio-net-pci,netdev=fabric,mac={vm.fabric_mac}",
        *rail2_nic,
        "-fw_cfg", f"name=opt/nvmeofctl/hostname,string={vm.name}",
        "-fw_cfg", f"name=opt/nvmeofctl/fabric_cidr,string={vm.fabric_ip}/{FABRIC_NETS[0].prefixlen}",
        *rail2_id,
        "-fw_cfg", f"name=opt/nvmeofctl/fabric_mtu,string={LAB_MTU}",
        "-fw_cfg", f"name=opt/nvmeofctl/authorized_keys,file={authorized_keys}",
        "-fw_cfg", f"name=opt/nvmeofctl/ssh_host_ed25519_key,file={files.host_key}",
        "-fw_cfg", f"name=opt/nvmeofctl/ssh_host_ed25519_key.pub,file={files.host_key}.pub",
        "-serial", f"file:{files.console}",
        "-monitor", f"unix:{files.monitor},server=on,wait=off",
    ]
    if shared_disk is not None:
        argv += ["-qmp", f"unix:{files.qmp},server=on,wait=off"]
    argv += [
        "-pidfile", str(files.pidfile),
        "-daemonize",
    ]
    if loadvm:
        argv += ["-S"] if shared_disk is not None else ["-loadvm", loadvm]
    return argv
