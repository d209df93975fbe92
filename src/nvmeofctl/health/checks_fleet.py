"""Fleet-wide checks over every reachable host's facts (host NQN/ID uniqueness, MTU, speed)."""

from __future__ import annotations

from collections import Counter

from nvmeofctl.facts.probe import HostFacts
from nvmeofctl.health.common import finding, rdma_used, resolve_device
from nvmeofctl.health.expect import Expectations
from nvmeofctl.health.model import Finding, Status

OK, WARN, FAIL, NA = Status.ok, Status.warn, Status.fail, Status.na


def check_unique_identity(facts: dict[str, HostFacts], exp: Expectations) -> list[Finding]:
    """Host NQN and host ID must be unique across GPU nodes (a cloned image shares them)."""
    out: list[Finding] = []
    gpu = [n for n in exp.order if n in facts and exp.hosts[n].is_gpu_node]
    for check, attr in (("host_nqn_unique", "hostnqn"), ("host_id_unique", "hostid")):
        seen: dict[str, str] = {}
        for n in gpu:
            f = facts[n]
            v = f.etc_hostnqn if attr == "hostnqn" else f.etc_hostid
            if v is None:  # fall back to what live controllers carry
                v = next((getattr(c, attr) for c in f.nvme_ctrls if c.is_fabrics and getattr(c, attr)), None)
            if v:
                seen[n] = v.lower()
        counts = Counter(seen.values())
        for n in gpu:
            v = seen.get(n)
            if v is None:
                out.append(finding(n, check, NA, "no host NQN/ID on this node"))
            elif counts[v] > 1:
                others = [o for o in gpu if o != n and seen.get(o) == v]
                out.append(finding(n, check, FAIL, f"same as {', '.join(others)}", "unique per GPU node",
                                   "generate a per-node value (nvmeofctl apply); images must not bake /etc/nvme/host*"))
            else:
                out.append(finding(n, check, OK, "unique", "unique per GPU node"))
    return out


def check_fabric_consistency(facts: dict[str, HostFacts], exp: Expectations) -> list[Finding]:
    out: list[Finding] = []
    names = [n for n in exp.order if n in facts]
    mtus = {n: facts[n].netif.mtu for n in names if facts[n].netif and facts[n].netif.mtu}
    out += _consistent(mtus, "mtu_consistent", FAIL, "same L2 MTU on every fabric host",
                       "set one MTU on every fabric interface and switch port")
    if rdma_used(exp):
        act = {}
        for n in names:
            r = resolve_device(facts[n], exp.hosts[n])
            if r.port and r.port.active_mtu:
                act[n] = r.port.active_mtu
        out += _consistent(act, "active_mtu_consistent", WARN, "same RoCE active_mtu on every host",
                           "align the netdev MTUs, then recreate/reload the RDMA devices")
    out += _speed(facts, exp, names)
    return out


def _consistent(values: dict[str, int], check: str, bad: Status, expected: str, remedy: str) -> list[Finding]:
    if len(values) < 2:
        return [finding(n, check, NA, "fewer than two hosts report it") for n in values]
    common, _ = Counter(values.values()).most_common(1)[0]
    uniform = len(set(values.values())) == 1
    summary = ", ".join(f"{n}={v}" for n, v in values.items())
    return [finding(n, check, OK if uniform or v == common else bad, f"{v} (fleet: {summary})", expected, remedy)
            if not uniform else finding(n, check, OK, str(v), expected)
            for n, v in values.items()]


def _speed(facts: dict[str, HostFacts], exp: Expectations, names: list[str]) -> list[Finding]:
    def speed(n: str) -> float | None:
        f = facts[n]
        if f.netif and f.netif.speed_mbps:
            return f.netif.speed_mbps / 1000.0
        r = resolve_device(f, exp.hosts[n])
        if r.port and r.port.rate_gbps and not r.soft:
            return r.port.rate_gbps
        return None

    speeds = {n: speed(n) for n in names}
    out = []
    for n in names:
        mine = speeds[n]
        peers = [p for p in (exp.peers(n) or [o for o in names if o != n]) if p in speeds and p != n]
        known = {p: speeds[p] for p in peers if speeds[p]}
        if mine is None or not known:
            out.append(finding(n, "link_speed", NA, "speed unknown here or on the peers" if mine is None
                               else f"{mine:g} Gb/s; peers unknown"))
            continue
        diff = {p: s for p, s in known.items() if s != mine}
        obs = f"{mine:g} Gb/s" + (f" vs {', '.join(f'{p} {s:g}' for p, s in diff.items())}" if diff else "")
        out.append(finding(n, "link_speed", WARN if diff else OK, obs, "equal at both ends",
                           "check autonegotiation, cable and switch port speed (ethtool IF)"))
    return out
