"""RDMA parsers for what only health reads: sysfs port attributes, hw_counters / ``show_counters``,
``rdma statistic``, ``ibv_devinfo`` and ``cma_roce_mode``.

The link (``rdma -j link show``) and the GID table have ONE reader, module_utils/rdma.py
(``dump_command`` / ``parse_dump``, ``parse_gid_table``), shared with plan and ``rdma_link``; this
file only adapts its observed entries (``RdmaLink.from_observed``, ``gid_is_v2``)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from nvmeofctl.facts.sections import parse_kv, to_int

@dataclass
class RdmaLink:
    """One entry of rdma_link's observed ``links`` (module_utils/rdma.py ``parse_dump``)."""

    dev: str
    port: int
    state: str | None = None  # ACTIVE | DOWN | INIT ...
    physical_state: str | None = None  # LINK_UP | DISABLED | POLLING ...
    netdev: str | None = None

    @classmethod
    def from_observed(cls, d: dict) -> "RdmaLink":
        return cls(str(d.get("device") or ""), int(d.get("port") or 1), d.get("state"), d.get("physical_state"),
                   d.get("netdev") or None)


def gid_is_v2(g: dict) -> bool:
    """A GID entry of module_utils/rdma.py ``parse_gid_table`` is RoCE v2."""
    return (g.get("type") or "").strip().lower() == "roce v2"


@dataclass
class IbPort:
    port: int
    state: str | None = None  # ACTIVE, DOWN, ...
    phys_state: str | None = None  # LINK_UP, DISABLED, ...
    rate: str | None = None
    rate_gbps: float | None = None
    link_layer: str | None = None
    gids: list[dict] = field(default_factory=list)  # module_utils/rdma.py parse_gid_table entries
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
