"""Error and congestion counters, judged as DELTAS over the probe's window (one host each).

Names: kernel mlx5 counters.rst (hw_counters, ethtool -S) and rdma_rxe (``rdma statistic``)."""

from __future__ import annotations

import re

from nvmeofctl.facts.probe import HostFacts
from nvmeofctl.health.common import TCP_NA, finding, rdma_used, resolve_device
from nvmeofctl.health.expect import Expectations
from nvmeofctl.health.model import Finding, Status

OK, WARN, FAIL, NA = Status.ok, Status.warn, Status.fail, Status.na

NIC_DROPS = ("rx_discards_phy", "rx_out_of_buffer", "outbound_pci_buffer_overflow", "tx_pause_storm_warning_events")
NIC_DROPS_FATAL = ("tx_pause_storm_error_events",)
LINK_ERRORS = ("rx_crc_errors_phy", "rx_symbol_err_phy", "link_down_events_phy")
RDMA_DROPS = ("out_of_buffer",)
RETRIES = (
    # mlx5 hw_counters
    "packet_seq_err", "out_of_sequence", "implied_nak_seq_err", "local_ack_timeout_err", "rnr_nak_retry_err",
    "roce_adp_retrans", "roce_adp_retrans_to",
    # rdma_rxe
    "rcvd_seq_err", "out_of_seq_request", "retry_exceeded_err", "retry_rnr_exceeded_err", "completer_retry_err",
    "link_downed",
)
CQE_ERRORS = ("req_cqe_error", "resp_cqe_error", "resp_local_length_error", "req_remote_access_errors",
              "resp_remote_access_errors", "req_remote_invalid_request", "send_err")
ECN_MARKED, CNP_SENT, CNP_HANDLED = "np_ecn_marked_roce_packets", "np_cnp_sent", "rp_cnp_handled"
RDMA_TRAFFIC = ("rx_write_requests", "rx_read_requests", "rdma_sends", "rdma_recvs", "sent_pkts", "rcvd_pkts")


def _rdma_deltas(facts: HostFacts, dev: str | None, port: int | None) -> dict[str, int] | None:
    """hw_counters merged with ``rdma statistic`` for the device's port (hw_counters win)."""
    if dev is None:
        return None
    out: dict[str, int] = {}
    found = False
    for src in (facts.rdma_stat, facts.hw_counters):
        for (d, p), win in src.items():
            if d == dev and (port is None or p == port) and win.present:
                out.update(win.deltas())
                found = True
    return out if found else None


def _grown(deltas: dict[str, int], names) -> dict[str, int]:
    return {n: deltas[n] for n in names if deltas.get(n, 0) > 0}


def _fmt(grown: dict[str, int], window: float | None) -> str:
    w = f" in {window:g}s" if window else ""
    return ", ".join(f"{k} +{v}" for k, v in sorted(grown.items())) + w


def _judge(facts, check, deltas, names, window, remedy, device, fatal=()) -> Finding:
    present = [n for n in (*names, *fatal) if n in deltas]
    if not present:
        return finding(facts, check, NA, "counters absent on this NIC", device=device)
    grown = _grown(deltas, names)
    grown_fatal = _grown(deltas, fatal)
    if grown_fatal:
        return finding(facts, check, FAIL, _fmt({**grown, **grown_fatal}, window), "no growth", remedy, device)
    if grown:
        return finding(facts, check, WARN, _fmt(grown, window), "no growth", remedy, device)
    w = f" over {window:g}s" if window else ""
    return finding(facts, check, OK, f"{len(present)} counters flat{w}", "no growth", device=device)


def check_counters(facts: HostFacts, exp: Expectations) -> list[Finding]:
    h = exp.hosts[facts.host]
    out: list[Finding] = []
    win = facts.window_s
    iface = h.interface
    eth = facts.ethtool.deltas() if facts.ethtool and facts.ethtool.present else {}
    prio = exp.fabric.pfc_priority
    prio_discards = tuple(k for k in eth if re.fullmatch(r"rx_prio\d_discards", k))
    if eth:
        out.append(_judge(facts, "nic_drops", eth, NIC_DROPS + prio_discards, win,
                          "NIC drops: check PFC on the RoCE priority, receive buffers and ring sizes", iface,
                          fatal=NIC_DROPS_FATAL))
        out.append(_judge(facts, "link_errors", eth, LINK_ERRORS, win,
                          "PHY errors: reseat/replace the cable or optic; run mlxlink -c", iface))
    else:
        why = "ethtool -S unavailable or gave no counters"
        out.append(finding(facts, "nic_drops", NA, why, device=iface))
        out.append(finding(facts, "link_errors", NA, why, device=iface))

    if not rdma_used(exp):
        for c in ("rdma_drops", "transport_retries", "cqe_errors", "congestion", "lossless_class_traffic"):
            out.append(finding(facts, c, NA, TCP_NA))
        return out
    r = resolve_device(facts, h)
    dev = f"{r.name}/{r.port.port}" if r.port else r.name
    rd = _rdma_deltas(facts, r.name, r.port.port if r.port else None)
    if rd is None:
        why = "no hw_counters / rdma statistic for the device"
        for c in ("rdma_drops", "transport_retries", "cqe_errors", "congestion"):
            out.append(finding(facts, c, NA, why, device=dev))
    else:
        out.append(_judge(facts, "rdma_drops", rd, RDMA_DROPS, win,
                          "RNIC ran out of receive WQEs/buffers: check PFC and the consumer's receive queue depth", dev))
        out.append(_judge(facts, "transport_retries", rd, RETRIES, win,
                          "retransmits/sequence errors: packet loss on the fabric; check PFC/ECN and switch drops", dev))
        out.append(_judge(facts, "cqe_errors", rd, CQE_ERRORS, win,
                          "completion errors: check dmesg on both ends for QP errors", dev))
        out.append(_congestion(facts, rd, eth, prio, win, dev))
    out.append(_lossless_traffic(facts, rd or {}, eth, prio, win, iface))
    return out


def _congestion(facts, rd, eth, prio, win, dev) -> Finding:
    if ECN_MARKED not in rd and CNP_SENT not in rd:
        return finding(facts, "congestion", NA, "no ECN/CNP counters (soft-RoCE or non-mlx5 NIC)", device=dev)
    marked, sent, handled = rd.get(ECN_MARKED, 0), rd.get(CNP_SENT, 0), rd.get(CNP_HANDLED, 0)
    pause_keys = [k for k in eth if re.fullmatch(rf"(rx|tx)_prio{prio}_pause", k)] if prio is not None else []
    pause_keys += [k for k in ("tx_global_pause", "rx_global_pause", "tx_pause_ctrl_phy", "rx_pause_ctrl_phy")
                   if k in eth]
    pause = sum(eth.get(k, 0) for k in pause_keys)
    obs = f"ecn_marked +{marked}, cnp_sent +{sent}, cnp_handled +{handled}, pause +{pause}"
    if win:
        obs += f" in {win:g}s"
    if marked > 0 and sent == 0:
        return finding(facts, "congestion", FAIL, obs, "CNPs sent for ECN-marked packets",
                       "ECN marks arrive but no CNPs go out: enable roce_np on the RoCE priority (DCQCN)", dev)
    if pause > 0 and sent == 0 and handled == 0:
        return finding(facts, "congestion", WARN, obs, "DCQCN (CNPs) before PFC pauses",
                       "PFC is doing DCQCN's job: enable ECN marking on the switch and roce_np/roce_rp on the NIC", dev)
    return finding(facts, "congestion", OK, obs, "CNPs when marked; few pauses", device=dev)


def _lossless_traffic(facts, rd, eth, prio, win, iface) -> Finding:
    key = f"rx_prio{prio}_bytes"
    if prio is None or key not in eth or "rx_prio0_bytes" not in eth:
        return finding(facts, "lossless_class_traffic", NA, "no per-priority byte counters", device=iface)
    rdma_active = any(rd.get(k, 0) > 0 for k in RDMA_TRAFFIC)
    if not rdma_active:
        return finding(facts, "lossless_class_traffic", NA, "idle: no RDMA traffic in the window", device=iface)
    on_prio, on_0 = eth[key], eth["rx_prio0_bytes"]
    obs = f"prio{prio} +{on_prio} B, prio0 +{on_0} B"
    if on_prio == 0 and on_0 > 0:
        return finding(facts, "lossless_class_traffic", WARN, obs, f"RoCE bytes on priority {prio}",
                       "RoCE traffic is not classified to the PFC priority: set trust dscp and rdma_cm default_roce_tos",
                       iface)
    return finding(facts, "lossless_class_traffic", OK, obs, f"RoCE bytes on priority {prio}", device=iface)
