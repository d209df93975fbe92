"""Network parsers: ``ip -j link|addr``, the fabric interface's sysfs attributes,
``ethtool -S`` (mlx5, possibly truncated), ``ethtool -a``, ``mlnx_qos -i`` and the mlx5 ECN files."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from nvmeofctl.facts.sections import parse_kv, to_int


@dataclass
class NetLink:
    ifname: str
    mtu: int | None = None
    operstate: str | None = None
    link_type: str | None = None
    ipv4: list[str] = field(default_factory=list)


def parse_ip_json(link_text: str, addr_text: str = "") -> dict[str, NetLink]:
    """Merge ``ip -j link show`` and ``ip -j addr show`` into one entry per interface."""
    out: dict[str, NetLink] = {}
    for text in (link_text, addr_text):
        try:
            data = json.loads(text) if text.strip() else []
        except json.JSONDecodeError:
            data = []
        for d in data if isinstance(data, list) else []:
            if not isinstance(d, dict) or not d.get("ifname"):
                continue
            name = str(d["ifname"])
            link = out.setdefault(name, NetLink(name))
            if isinstance(d.get("mtu"), int):
                link.mtu = d["mtu"]
            link.operstate = d.get("operstate", link.operstate)
            link.link_type = d.get("link_type", link.link_type)
            for a in d.get("addr_info") or []:
                if a.get("family") == "inet" and a.get("local") and a["local"] not in link.ipv4:
                    link.ipv4.append(a["local"])
    return out


@dataclass
class NetIf:
    """The fabric interface as sysfs shows it (``/sys/class/net/IF``)."""

    name: str
    exists: bool = False
    mtu: int | None = None
    operstate: str | None = None
    speed_mbps: int | None = None  # None when unknown (virtio: -1 or EINVAL)
    driver: str | None = None
    qos_trust: str | None = None


def parse_netif(name: str, text: str) -> NetIf:
    kv = parse_kv(text)
    speed = to_int(kv.get("speed"))
    return NetIf(
        name=name,
        exists=kv.get("exists", "1") == "1",
        mtu=to_int(kv.get("mtu")),
        operstate=kv.get("operstate"),
        speed_mbps=speed if speed and speed > 0 else None,
        driver=kv.get("driver") or None,
        qos_trust=kv.get("trust") or None,
    )


def parse_ethtool_stats(text: str) -> dict[str, int]:
    """``ethtool -S IF``: ``     name: value`` lines; a truncated dump gives what it has."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"^\s+([^:\s][^:]*?):\s*(-?\d+)\s*$", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


@dataclass
class PauseParams:
    supported: bool
    autoneg: bool | None = None
    rx: bool | None = None
    tx: bool | None = None


def parse_ethtool_pause(text: str) -> PauseParams:
    """``ethtool -a IF``; drivers without pause support print an error instead."""
    if not text.strip() or "not supported" in text.lower() or "cannot get" in text.lower():
        return PauseParams(supported=False)
    kv = {k.lower(): v.lower() for k, v in parse_kv(text, ":").items()}

    def on(key: str) -> bool | None:
        v = kv.get(key)
        return None if v is None else v == "on"

    if "rx" not in kv and "tx" not in kv:
        return PauseParams(supported=False)
    return PauseParams(True, on("autonegotiate"), on("rx"), on("tx"))


@dataclass
class MlnxQos:
    dcbx_mode: str | None = None
    trust: str | None = None  # dscp | pcp
    dscp2prio: dict[int, int] = field(default_factory=dict)
    pfc_enabled: list[int] | None = None  # priorities with PFC on; None when the output lacks it
    pfc_buffer: list[int] | None = None


def parse_mlnx_qos(text: str) -> MlnxQos:
    """``mlnx_qos -i IF`` (old and new MLNX_OFED, trailing spaces, tab-indented, truncated)."""
    q = MlnxQos()
    prio_header: list[int] | None = None
    for raw in text.splitlines():
        s = raw.strip()
        if s.startswith("DCBX mode:"):
            q.dcbx_mode = s.split(":", 1)[1].strip()
        elif s.startswith("Priority trust state:") or s.startswith("Priority trust mode:"):
            q.trust = s.split(":", 1)[1].strip().lower()
        elif s.startswith("prio:"):
            m = re.match(r"prio:(\d+)\s+dscp:([\d,\s]*)", s)
            if m:
                for d in m.group(2).split(","):
                    if d.strip().isdigit():
                        q.dscp2prio[int(d)] = int(m.group(1))
        else:
            tok = s.split()
            if not tok:
                continue
            if tok[0] == "priority" and len(tok) == 9 and all(t.isdigit() for t in tok[1:]):
                prio_header = [int(t) for t in tok[1:]]
            elif tok[0] in ("enabled", "buffer") and prio_header and len(tok) == 9:
                vals = [int(t) for t in tok[1:] if t.isdigit()]
                if len(vals) != 8:
                    continue
                if tok[0] == "enabled":
                    q.pfc_enabled = [p for p, v in zip(prio_header, vals) if v]
                else:
                    q.pfc_buffer = vals
    return q


def parse_ecn(text: str) -> dict[str, dict[int, bool]]:
    """The probe's ``roce_np/3=1`` lines -> ``{"roce_np": {3: True}, "roce_rp": {...}}``."""
    out: dict[str, dict[int, bool]] = {}
    for k, v in parse_kv(text).items():
        kind, _, prio = k.partition("/")
        if prio.isdigit() and v.strip() in ("0", "1"):
            out.setdefault(kind, {})[int(prio)] = v.strip() == "1"
    return out
