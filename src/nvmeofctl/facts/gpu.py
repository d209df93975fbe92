"""GPU parsers: ``nvidia-smi -L``, ``nvidia-smi topo -m`` (tabs or spaces, ANSI, with or without
NIC rows) and PCI NUMA nodes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nvmeofctl.facts.sections import strip_ansi, to_int


@dataclass
class Gpu:
    index: int
    name: str
    uuid: str | None = None
    bus_id: str | None = None  # sysfs form 0000:00:06.0
    numa_node: int | None = None


def parse_nvidia_smi_l(text: str) -> list[Gpu]:
    """``GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-...)``; MIG lines are ignored."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^GPU\s+(\d+):\s*(.*?)\s*(?:\(UUID:\s*([^)]+)\))?\s*$", line)
        if m:
            out.append(Gpu(int(m.group(1)), m.group(2), m.group(3)))
    return out


def sysfs_bdf(bus_id: str) -> str:
    """nvidia-smi's ``00000000:00:06.0`` -> sysfs ``0000:00:06.0``."""
    b = bus_id.strip().lower()
    return b[-12:] if len(b) >= 12 else b


def parse_gpu_pci(text: str) -> dict[int, str]:
    """``nvidia-smi --query-gpu=index,pci.bus_id --format=csv,noheader`` -> {index: bdf}."""
    out = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0].isdigit() and ":" in parts[1]:
            out[int(parts[0])] = sysfs_bdf(parts[1])
    return out


def parse_pci_numa(text: str) -> dict[str, int | None]:
    """Lines ``BDF numa=N [class=0x030200 ...]`` -> {bdf: numa or None when -1/unknown}."""
    out: dict[str, int | None] = {}
    for line in text.splitlines():
        tok = line.split()
        if not tok or tok[0].count(":") != 2:
            continue
        kv = dict(t.split("=", 1) for t in tok[1:] if "=" in t)
        n = to_int(kv.get("numa"))
        out[tok[0].lower()] = n if n is not None and n >= 0 else None
    return out


@dataclass
class Topology:
    devices: list[str] = field(default_factory=list)  # column labels: GPU0.., NIC0.. or mlx5_0
    matrix: dict[str, dict[str, str]] = field(default_factory=dict)
    nic_legend: dict[str, str] = field(default_factory=dict)  # NIC0 -> mlx5_0
    cpu_affinity: dict[str, str] = field(default_factory=dict)
    numa_affinity: dict[str, str] = field(default_factory=dict)

    @property
    def gpus(self) -> list[str]:
        return [d for d in self.devices if re.fullmatch(r"GPU\d+", d)]

    @property
    def nics(self) -> dict[str, str]:
        """NIC column label -> RDMA device name."""
        return {d: self.nic_legend.get(d, d) for d in self.devices if not re.fullmatch(r"GPU\d+", d)}

    def relation(self, gpu: str, rdma_dev: str) -> str | None:
        for label, name in self.nics.items():
            if name == rdma_dev:
                return self.matrix.get(gpu, {}).get(label)
        return None


def parse_topo(text: str) -> Topology | None:
    """``nvidia-smi topo -m``. None when no matrix header is found (e.g. an error message)."""
    lines = strip_ansi(text).splitlines()
    topo = Topology()
    start = None
    for i, line in enumerate(lines):
        tok = line.split()
        if tok and re.fullmatch(r"GPU\d+", tok[0]) and line[:1].isspace():
            cols = []
            for t in tok:
                if t == "CPU":
                    break
                cols.append(t)
            topo.devices = cols
            start = i + 1
            break
    if start is None:
        return None
    n = len(topo.devices)
    for line in lines[start:]:
        if not line.strip() or line.strip().startswith("Legend"):
            break
        tok = line.split()
        label, cells = tok[0], tok[1 : 1 + n]
        topo.matrix[label] = dict(zip(topo.devices, cells))
        rest = tok[1 + n :]
        if rest:
            topo.cpu_affinity[label] = rest[0]
            if len(rest) > 1:
                topo.numa_affinity[label] = rest[1]
    for line in lines:
        m = re.match(r"^\s*(NIC\d+):\s*(\S+)\s*$", line)
        if m:
            topo.nic_legend[m.group(1)] = m.group(2)
    return topo


RANK = {"X": 0, "NV": 0, "PIX": 1, "PXB": 2, "PHB": 3, "NODE": 4, "SYS": 5}


def rank(rel: str | None) -> int:
    if rel is None:
        return 99
    if rel.startswith("NV"):
        return 0
    return RANK.get(rel, 98)
