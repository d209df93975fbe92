"""Lossless RoCE settings: DSCP trust, DSCP->priority, PFC, ECN, global pause (one host each).

Only NICs that expose them are judged; soft-RoCE and NICs without the knobs give ``na``."""

from __future__ import annotations

from nvmeofctl.facts.probe import HostFacts
from nvmeofctl.health.common import SOFT_ROCE_NA, TCP_NA, finding, is_soft, rdma_used
from nvmeofctl.health.expect import Expectations
from nvmeofctl.health.model import Finding, Status

OK, WARN, FAIL, NA = Status.ok, Status.warn, Status.fail, Status.na
CHECKS = ("dscp_trust", "dscp_priority", "pfc", "ecn", "global_pause")


def _skip(facts: HostFacts, exp: Expectations) -> str | None:
    if not rdma_used(exp):
        return TCP_NA
    if is_soft(facts, exp.hosts[facts.host], exp):
        return SOFT_ROCE_NA
    return None


def check_qos(facts: HostFacts, exp: Expectations) -> list[Finding]:
    h = exp.hosts[facts.host]
    why = _skip(facts, exp)
    if why:
        return [finding(facts, c, NA, why, device=h.interface) for c in CHECKS]
    iface = h.interface
    prio = exp.fabric.pfc_priority
    q = facts.mlnx_qos
    out: list[Finding] = []

    trust = (q.trust if q and q.trust else None) or facts.netif and facts.netif.qos_trust
    if not trust:
        out.append(finding(facts, "dscp_trust", NA, "NIC exposes no trust state (no mlnx_qos, no qos/trust)",
                           "dscp", device=iface))
    else:
        out.append(finding(facts, "dscp_trust", OK if trust == "dscp" else FAIL, trust, "dscp",
                           f"mlnx_qos -i {iface} --trust dscp", iface))

    if q and q.dscp2prio and exp.fabric.dscp is not None and prio is not None:
        got = q.dscp2prio.get(exp.fabric.dscp)
        out.append(finding(facts, "dscp_priority", OK if got == prio else FAIL,
                           f"DSCP {exp.fabric.dscp} -> prio {got}", f"DSCP {exp.fabric.dscp} -> prio {prio}",
                           f"mlnx_qos -i {iface} --dscp2prio set,{exp.fabric.dscp},{prio}", iface))
    else:
        out.append(finding(facts, "dscp_priority", NA, "no dscp2prio mapping exposed", device=iface))

    if q is None or q.pfc_enabled is None:
        out.append(finding(facts, "pfc", NA, "NIC exposes no PFC configuration (no mlnx_qos output)", device=iface))
    else:
        en = q.pfc_enabled
        shown = ",".join(map(str, en)) or "none"
        pfc_arg = ",".join("1" if i == prio else "0" for i in range(8))
        if en == [prio]:
            st = OK
        elif prio in en:
            st = WARN  # lossless on extra priorities: pause can spread to other traffic
        else:
            st = FAIL
        out.append(finding(facts, "pfc", st, f"enabled on {shown}", f"only priority {prio}",
                           f"mlnx_qos -i {iface} --pfc {pfc_arg}", iface))

    if not exp.fabric.ecn:
        out.append(finding(facts, "ecn", NA, "ECN disabled in spec (fabric.roce.ecn: false)", device=iface))
    elif not facts.ecn:
        out.append(finding(facts, "ecn", NA, f"NIC exposes no /sys/class/net/{iface}/ecn", device=iface))
    else:
        np_ = facts.ecn.get("roce_np", {}).get(prio)
        rp = facts.ecn.get("roce_rp", {}).get(prio)
        good = bool(np_) and bool(rp)
        out.append(finding(facts, "ecn", OK if good else FAIL, f"prio {prio}: np={int(bool(np_))} rp={int(bool(rp))}",
                           f"prio {prio}: np=1 rp=1",
                           f"echo 1 > /sys/class/net/{iface}/ecn/roce_np/enable/{prio}; "
                           f"echo 1 > /sys/class/net/{iface}/ecn/roce_rp/enable/{prio}", iface))

    p = facts.pause
    if p is None or not p.supported:
        out.append(finding(facts, "global_pause", NA, "driver reports no pause parameters", device=iface))
    else:
        on = bool(p.rx) or bool(p.tx)
        out.append(finding(facts, "global_pause", WARN if on else OK,
                           f"rx {'on' if p.rx else 'off'}, tx {'on' if p.tx else 'off'}", "rx off, tx off (PFC instead)",
                           f"ethtool -A {iface} rx off tx off", iface))
    return out
