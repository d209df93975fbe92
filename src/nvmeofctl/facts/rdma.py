"""RDMA parsers: ``rdma`` tool (JSON and text), sysfs port/GID attributes, ``show_gids``,
hw_counters / ``show_counters``, ``rdma statistic``, ``ibv_devinfo`` and ``cma_roce_mode``."""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field

from nvmeofctl.facts.sections import parse_kv, to_int

ZERO_GID = "0000:0000:0000:0000:0000:0000:0000:0000"


@dataclass
class RdmaLink:
    dev: str
    port: int
    state: str | None = None  # ACTIVE | DOWN | INIT ...
    physical_state: str | None = None  # LINK_UP | DISABLED | POLLING ...
    netdev: str | None = None


@dataclass
class Gid:
    index: int
    gid: str
    type: str | None = None  # "RoCE v2" | "RoCE v1" | "IB/RoCE v1"
    ndev: str | None = None

    @property
    def ipv4(self) -> str | None:
        """The IPv4 address of an IPv4-mapped GID (``::ffff:a.b.c.d``), else None."""
        try:
            addr = ipaddress.IPv6Address(self.gid)
        except ValueError:
            return None
        return str(addr.ipv4_mapped) if addr.ipv4_mapped else None

    @property
    def is_v2(self) -> bool:
        return (self.type or "").strip().lower() == "roce v2"


@dataclass
class IbPort:
    port: int
    state: str | None = None  # ACTIVE, DOWN, ...
    phys_state: str | None = None  # LINK_UP, DISABLED, ...
    rate: str | None = None
    rate_gbps: float | None = None
    link_layer: str | None = None
    gids: list[Gid] = field(default_factory=list)
    active_mtu: int | None = None
    max_mtu: int | None = None


@dataclass
class IbDevice:
    name: str
    driver: str | None = None
    numa_node: int | None = None
    pci: str | None = None
    node_type: str | None = None
    fw_ver: str | None = None
    ports: dict[int, IbPort] = field(default_factory=dict)

    @property
    def is_soft(self) -> bool:
        """Soft-RoCE (rdma_rxe) or another software device without a PCI function."""
        return self.name.startswith("rxe") or (self.driver or "") in {"rdma_rxe", "rxe"} or (
            self.driver is not None and self.driver == "" and not self.pci
        )


def _load_json(text: str):
    text = text.strip()
    if not text.startswith(("[", "{")):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def parse_rdma_link(text: str) -> list[RdmaLink]:
    """``rdma -j link show`` or ``rdma link show`` (text lines may end in a space)."""
    data = _load_json(text)
    if isinstance(data, list):
        return [
            RdmaLink(
                dev=str(d.get("ifname", "")),
                port=int(d.get("port", 1)),
                state=d.get("state"),
                physical_state=d.get("physical_state"),
                netdev=d.get("netdev") or None,
            )
            for d in data
            if isinstance(d, dict)
        ]
    out: list[RdmaLink] = []
    for line in text.splitlines():
        tok = line.split()
        if len(tok) < 2 or tok[0] != "link" or "/" not in tok[1]:
            continue
        dev, _, port = tok[1].partition("/")
        attrs = dict(zip(tok[2::2], tok[3::2]))
        out.append(
            RdmaLink(dev, to_int(port) or 1, attrs.get("state"), attrs.get("physical_state"), attrs.get("netdev"))
        )
    return out


def parse_rdma_dev(text: str) -> list[str]:
    """Device names from ``rdma -j dev`` or ``rdma dev`` (``0: rxe0: node_type ca ...``)."""
    data = _load_json(text)
    if isinstance(data, list):
        return [str(d["ifname"]) for d in data if isinstance(d, dict) and "ifname" in d]
    out = []
    for line in text.splitlines():
        m = re.match(r"\s*\d+:\s*(\S+?):", line)
        if m:
            out.append(m.group(1))
    return out


_STATE_RE = re.compile(r"^\s*\d+\s*:\s*(.+?)\s*$")
_PHYS = {"linkup": "LINK_UP", "disabled": "DISABLED", "polling": "POLLING", "sleep": "SLEEP",
         "linkerrorrecovery": "LINK_ERROR_RECOVERY", "phytest": "PHY_TEST"}


def _state(value: str | None) -> str | None:
    """``4: ACTIVE`` -> ``ACTIVE``; ``5: LinkUp`` -> ``LINK_UP``; ``PORT_ACTIVE (4)`` -> ``ACTIVE``."""
    if value is None:
        return None
    m = _STATE_RE.match(value)
    v = m.group(1) if m else value.strip()
    v = re.sub(r"\s*\(\d+\)$", "", v)
    if v.upper().startswith("PORT_"):
        v = v[5:]
    return _PHYS.get(v.replace("_", "").replace(" ", "").lower(), v.upper())


def parse_rate(value: str | None) -> float | None:
    """``100 Gb/sec (4X EDR)`` -> 100.0; ``2.5 Gb/sec (1X SDR)`` -> 2.5."""
    if not value:
        return None
    m = re.match(r"\s*([\d.]+)\s*Gb/sec", value)
    return float(m.group(1)) if m else None


def parse_ib_port(port: int, text: str) -> IbPort:
    """The probe's ``state=/phys_state=/rate=/link_layer=`` lines for one port."""
    kv = parse_kv(text)
    return IbPort(
        port=port,
        state=_state(kv.get("state")),
        phys_state=_state(kv.get("phys_state")),
        rate=kv.get("rate"),
        rate_gbps=parse_rate(kv.get("rate")),
        link_layer=kv.get("link_layer"),
    )


def parse_gid_table(text: str) -> list[Gid]:
    """The probe's sysfs GID lines: ``1 0000:...:c0a8:6401 type="RoCE v2" ndev=eth1``.

    Zero GIDs and entries without a type (EINVAL on read) are skipped."""
    out: list[Gid] = []
    for line in text.splitlines():
        m = re.match(r'\s*(\d+)\s+([0-9a-fA-F:]+)\s+type="([^"]*)"(?:\s+ndev=(\S*))?', line)
        if not m:
            continue
        gid = m.group(2).lower()
        if gid == ZERO_GID or not m.group(3):
            continue
        out.append(Gid(int(m.group(1)), gid, m.group(3), m.group(4) or None))
    return sorted(out, key=lambda g: g.index)


def parse_show_gids(text: str) -> dict[tuple[str, int], list[Gid]]:
    """Mellanox ``show_gids`` (tabs or spaces; IPv4 and netdev columns may be empty)."""
    out: dict[tuple[str, int], list[Gid]] = {}
    pat = re.compile(
        r"^\s*(\S+)\s+(\d+)\s+(\d+)\s+([0-9a-fA-F]{4}(?::[0-9a-fA-F]{4}){7})\s+"
        r"(?:(\d+\.\d+\.\d+\.\d+)\s+)?(v1|v2)\b\s*(\S+)?\s*$"
    )
    for line in text.splitlines():
        m = pat.match(line)
        if not m:
            continue
        dev, port, idx, gid, _ip, ver, ndev = m.groups()
        typ = "RoCE v2" if ver == "v2" else "RoCE v1"
        out.setdefault((dev, int(port)), []).append(Gid(int(idx), gid.lower(), typ, ndev))
    return out


def parse_counters(text: str) -> dict[str, int]:
    """hw_counters as ``name=value`` (probe) or ``name: value`` (``show_counters``)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*[=:]\s*(-?\d+)\s*$", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def parse_rdma_statistic(text: str) -> dict[tuple[str, int], dict[str, int]]:
    """``rdma -j statistic show`` or its text form (``link mlx5_0/1 name value ...``)."""
    data = _load_json(text)
    out: dict[tuple[str, int], dict[str, int]] = {}
    if isinstance(data, list):
        for d in data:
            if not isinstance(d, dict) or "ifname" not in d:
                continue
            vals = {k: int(v) for k, v in d.items() if k not in ("ifname", "port", "ifindex")
                    and isinstance(v, (int, float)) and not isinstance(v, bool)}
            out[(str(d["ifname"]), int(d.get("port", 1)))] = vals
        return out
    for line in text.splitlines():
        tok = line.split()
        if len(tok) < 2 or tok[0] != "link" or "/" not in tok[1]:
            continue
        dev, _, port = tok[1].partition("/")
        vals = {}
        for k, v in zip(tok[2::2], tok[3::2]):
            iv = to_int(v)
            if iv is not None:
                vals[k] = iv
        out[(dev, to_int(port) or 1)] = vals
    return out


@dataclass
class IbvPort:
    state: str | None = None
    max_mtu: int | None = None
    active_mtu: int | None = None
    link_layer: str | None = None


def parse_ibv_devinfo(text: str) -> dict[tuple[str, int], IbvPort]:
    """``ibv_devinfo`` / ``ibv_devinfo -v``: per (device, port) state, MTUs, link layer."""
    out: dict[tuple[str, int], IbvPort] = {}
    dev: str | None = None
    cur: IbvPort | None = None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("hca_id:"):
            dev, cur = s.split(":", 1)[1].strip(), None
            continue
        m = re.match(r"port:\s*(\d+)$", s)
        if m and dev:
            cur = out.setdefault((dev, int(m.group(1))), IbvPort())
            continue
        if cur is None or ":" not in s:
            continue
        k, v = (x.strip() for x in s.split(":", 1))
        if k == "state":
            cur.state = _state(v)
        elif k in ("max_mtu", "active_mtu"):
            setattr(cur, k, to_int(v.split()[0]) if v else None)
        elif k == "link_layer":
            cur.link_layer = v
    return out


def parse_cma_roce_mode(text: str) -> str | None:
    """``cma_roce_mode`` or configfs ``default_roce_mode``: ``RoCE v2`` / ``IB/RoCE v1``."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return None
