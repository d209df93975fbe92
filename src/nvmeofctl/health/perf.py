"""``--perf``: RDMA reachability (rping) and write bandwidth (ib_write_bw over rdma_cm) for every
(GPU node, target) pair. Pure planning/judging plus one runner that takes an injectable ``run_on``.

Pairs run in rounds in which no target and no GPU node appears twice, so each target serves one
client at a time and a GPU node's NIC is never shared between two measurements."""

from __future__ import annotations

import shlex
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from nvmeofctl.facts.perftest import BwResult, RpingResult, parse_ib_bw, parse_rping
from nvmeofctl.facts.probe import HostFacts
from nvmeofctl.health.common import finding, resolve_device
from nvmeofctl.health.expect import Expectations
from nvmeofctl.health.model import Finding, Status

THRESHOLD = 0.90  # of the port rate (FACTS.md, ngc_multinode_perf)
# Soft-RoCE: the CPU is the NIC and the "wire" a virtual switch without PFC. perftest's default
# 128 outstanding 64 KiB writes are ~8k packets in flight: bursts that a virtual switch drops, and
# rxe's recovery from lost packets is where its soft lockups live (SoftRoCE/rxe-dev#28, seen here
# as a target and a GPU node both unreachable for minutes after one perf run in CI). The number
# is informational on soft-RoCE (no threshold), so measure with a shallow queue: the same
# bandwidth on the lab (0.020-0.036 Gb/s with 128 or 16), 8x fewer packets in flight.
SOFT_ROCE_BW_ARGS = ("-t", "16")
START_DELAY = 1.0  # seconds between starting a server and its client (clients also retry)


@dataclass
class PerfResult:
    gpu_node: str
    target: str
    target_ip: str | None = None
    rping: RpingResult | None = None
    bw: BwResult | None = None
    port_rate_gbps: float | None = None
    soft_roce: bool = False
    status: Status = Status.na
    note: str = ""
    raw: dict[str, str] = field(default_factory=dict)

    @property
    def threshold_gbps(self) -> float | None:
        if self.soft_roce or not self.port_rate_gbps:
            return None
        return round(self.port_rate_gbps * THRESHOLD, 2)

    def to_dict(self) -> dict:
        return {
            "gpu_node": self.gpu_node,
            "target": self.target,
            "target_ip": self.target_ip,
            "status": self.status.value,
            "rping_ok": None if self.rping is None else self.rping.ok,
            "bw_avg_gbps": None if self.bw is None else round(self.bw.bw_avg_gbps, 3),
            "port_rate_gbps": self.port_rate_gbps,
            "threshold_gbps": self.threshold_gbps,
            "soft_roce": self.soft_roce,
            "note": self.note,
        }


def plan_pairs(exp: Expectations) -> list[tuple[str, str]]:
    """(GPU node, target) pairs from the spec's exports; every pair when no exports exist."""
    pairs = sorted({(g, e.target) for g, h in exp.hosts.items() if h.is_gpu_node for e in h.exports})
    if pairs:
        return pairs
    gpus = [n for n, h in exp.hosts.items() if h.is_gpu_node]
    tgts = [n for n, h in exp.hosts.items() if h.is_target]
    return [(g, t) for g in gpus for t in tgts]


def schedule_rounds(pairs: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Greedy rounds with disjoint GPU nodes and targets (sequential per target)."""
    left = list(pairs)
    rounds = []
    while left:
        used_g: set[str] = set()
        used_t: set[str] = set()
        cur = []
        for p in list(left):
            if p[0] not in used_g and p[1] not in used_t:
                cur.append(p)
                used_g.add(p[0])
                used_t.add(p[1])
                left.remove(p)
        rounds.append(cur)
    return rounds


def port_rate(facts: HostFacts | None, exp: Expectations, host: str) -> tuple[float | None, bool, str | None]:
    """(rate in Gb/s, soft-RoCE?, device name) of the host's fabric RDMA port."""
    h = exp.hosts[host]
    if facts is None:
        return None, h.soft_roce, h.rdma_device
    r = resolve_device(facts, h)
    soft = h.soft_roce or r.soft
    rate = r.port.rate_gbps if r.port else None
    if facts.netif and facts.netif.speed_mbps:
        rate = facts.netif.speed_mbps / 1000.0
    return rate, soft, r.name or h.rdma_device


def judge(res: PerfResult) -> PerfResult:
    if res.rping is not None and not res.rping.ok:
        res.status, res.note = Status.fail, f"rping failed: {res.rping.error or 'no pings'}"
    elif res.bw is None:
        res.status = Status.fail
        res.note = res.note or "ib_write_bw gave no result"
    elif res.threshold_gbps is None:
        res.status = Status.na
        res.note = "soft-RoCE: numbers only, no threshold" if res.soft_roce else "port rate unknown: no threshold"
    elif res.bw.bw_avg_gbps >= res.threshold_gbps:
        res.status = Status.ok
    else:
        res.status = Status.warn
        res.note = f"{res.bw.bw_avg_gbps:.2f} < {res.threshold_gbps:g} Gb/s (90% of {res.port_rate_gbps:g})"
    return res


def to_findings(results: list[PerfResult]) -> list[Finding]:
    out = []
    for r in results:
        bw = f"{r.bw.bw_avg_gbps:.3f} Gb/s" if r.bw else "no result"
        exp_s = f">= {r.threshold_gbps:g} Gb/s" if r.threshold_gbps else "n/a"
        out.append(finding(r.gpu_node, "perf_rdma_write_bw", r.status, f"{bw}{'; ' + r.note if r.note else ''}",
                           exp_s, "check PFC/ECN, MTU, PCIe slot/NUMA placement and the switch path", r.target))
    return out


def na_results(exp: Expectations, why: str) -> list[PerfResult]:
    return [PerfResult(g, t, status=Status.na, note=why) for g, t in plan_pairs(exp)]


def _q(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in args)


def _bw_args(dev: str | None, duration: int, soft_roce: bool) -> list[str]:
    """ib_write_bw's arguments, the same on both sides (perftest insists)."""
    d = ["-d", dev] if dev else []
    return ["ib_write_bw", *d, "-R", "-F", "--report_gbits", "-D", str(duration),
            *(SOFT_ROCE_BW_ARGS if soft_roce else ())]


def server_commands(dev: str | None, ip: str, duration: int, tmo: int, soft_roce: bool = False) -> tuple[str, str]:
    rping = f"timeout {tmo} {_q('rping', '-s', '-a', ip, '-C', '3')}"
    bw = f"timeout {tmo} {_q(*_bw_args(dev, duration, soft_roce))}"
    return rping, bw


def _retried(command: str, tries: int = 5) -> str:
    """Retry ``command`` while the server starts (slow VMs); print ONLY the last attempt's output
    (stdout and stderr merged), so errors of attempts that were merely early do not count."""
    return (f"for i in $(seq {tries}); do out=$({command} 2>&1) && {{ printf '%s\\n' \"$out\"; exit 0; }}; "
            f"sleep 1; done; printf '%s\\n' \"$out\"; exit 1")


def client_commands(dev: str | None, ip: str, duration: int, tmo: int, soft_roce: bool = False) -> tuple[str, str]:
    rping = _retried(f"timeout {tmo} {_q('rping', '-c', '-a', ip, '-C', '3', '-v')}")
    bw = _retried(f"timeout {tmo} {_q(*_bw_args(dev, duration, soft_roce), ip)}")
    return rping, bw


def _last_line(text: str) -> str:
    lines = [x.strip() for x in (text or "").splitlines() if x.strip()]
    return lines[-1] if lines else ""


RunOn = Callable[..., object]  # (SshTarget, command, timeout=...) -> CommandResult | Unreachable


def _pair_run(run_on: RunOn, server, client, server_cmd: str, client_cmd: str, tmo: int,
              start_delay: float) -> tuple[object, object]:
    box: dict[str, object] = {}

    def srv():
        box["server"] = run_on(server, server_cmd, timeout=tmo + 10)

    t = threading.Thread(target=srv, daemon=True)
    t.start()
    time.sleep(start_delay)
    cli = run_on(client, client_cmd, timeout=tmo * 5 + 20)
    t.join(tmo + 15)
    return box.get("server"), cli


def run_perf(exp: Expectations, facts: dict[str, HostFacts], ssh_targets: dict, *, run_on: RunOn,
             duration: int = 2, start_delay: float | None = None, unreachable: set[str] | None = None) -> list[PerfResult]:
    if exp.fabric.transport != "rdma":
        return na_results(exp, "not applicable: fabric transport is tcp")
    unreachable = unreachable or set()
    start_delay = START_DELAY if start_delay is None else start_delay
    tmo = duration + 20
    results: dict[tuple[str, str], PerfResult] = {}
    for rnd in schedule_rounds(plan_pairs(exp)):
        threads = []
        for g, t in rnd:
            tip = exp.hosts[t].ips[0] if exp.hosts[t].ips else None
            res = results[(g, t)] = PerfResult(g, t, tip)
            if g in unreachable or t in unreachable or tip is None:
                res.status, res.note = Status.na, "host unreachable" if tip else "target has no fabric IP"
                continue
            g_rate, g_soft, g_dev = port_rate(facts.get(g), exp, g)
            t_rate, t_soft, t_dev = port_rate(facts.get(t), exp, t)
            res.soft_roce = g_soft or t_soft
            rates = [r for r in (g_rate, t_rate) if r]
            res.port_rate_gbps = min(rates) if rates else None

            def one(res=res, g=g, t=t, tip=tip, g_dev=g_dev, t_dev=t_dev):
                s_ping, s_bw = server_commands(t_dev, tip, duration, tmo, res.soft_roce)
                c_ping, c_bw = client_commands(g_dev, tip, duration, tmo, res.soft_roce)
                _, cli = _pair_run(run_on, ssh_targets[t], ssh_targets[g], s_ping, c_ping, tmo, start_delay)
                res.rping = parse_rping(getattr(cli, "stdout", ""), getattr(cli, "stderr", ""),
                                        getattr(cli, "rc", None)) if hasattr(cli, "rc") else RpingResult(
                                            False, 0, getattr(cli, "reason", "unreachable"))
                _, cli = _pair_run(run_on, ssh_targets[t], ssh_targets[g], s_bw, c_bw, tmo, start_delay)
                out = getattr(cli, "stdout", "")
                res.raw["ib_write_bw"] = out
                res.bw = parse_ib_bw(out)
                if res.bw is None:
                    tail = _last_line(getattr(cli, "stderr", "") or getattr(cli, "reason", ""))
                    res.note = f"ib_write_bw: {tail}" if tail else ""
                judge(res)

            th = threading.Thread(target=one, daemon=True)
            th.start()
            threads.append(th)
        for th in threads:
            th.join()
    return [results[p] for p in plan_pairs(exp)]
