"""Lossless-RoCE QoS and counter checks on real captures.

Real NIC data (PFC, ECN, mlx5 counters) the lab cannot produce comes from ``real_nic_gpu1()``: the lab's
gpu1 capture with a real ConnectX host's sections (healthfx). Counter faults are a real table with an
explicit, documented change of its t0 (or t1) copy: the window is the lab capture's (6.127 s)."""

import pytest

from nvmeofctl.health import checks_counters as cc
from nvmeofctl.health import checks_qos as cq
from nvmeofctl.health.common import SOFT_ROCE_NA, TCP_NA
from nvmeofctl.health.model import Status

from healthfx import (REAL_NIC_IF, add_section, drop_section, edit, edit_section, facts, lab, read, real_nic,
                      real_nic_gpu1, section, set_section)

OK, WARN, FAIL, NA = Status.ok, Status.warn, Status.fail, Status.na
IF = REAL_NIC_IF
OVERLOAD = "real/ethtool_S_cx6dx_k5.15_xdp_overload_nonzero_only.txt"
PROD_COUNTERS = "real/show_counters_mlx5_bond_0_prod_ecn_cnp_out_of_sequence.txt"


def st(findings):
    return {f.check: f.status for f in findings}


def get(findings, check):
    (f,) = [x for x in findings if x.check == check]
    return f


def with_ethtool(text, t0, t1):
    """Both ethtool -S samples of the capture replaced (t0, t1 bodies)."""
    return set_section(set_section(text, f"ethtool_S {IF} t0", t0), f"ethtool_S {IF} t1", t1)


def with_hw_counters(text, t0, t1):
    return set_section(set_section(text, "hw_counters mlx5_0 1 t0", t0), "hw_counters mlx5_0 1 t1", t1)


# ---- QoS -----------------------------------------------------------------------------------------------
def test_soft_roce_qos_is_na_with_reason(gpu1_facts, lab_exp):
    fs = cq.check_qos(gpu1_facts, lab_exp)
    checks = ("dscp_trust", "dscp_priority", "pfc", "ecn", "global_pause")
    assert [(f.check, f.status, f.observed) for f in fs] == [(c, NA, SOFT_ROCE_NA) for c in checks]
    assert SOFT_ROCE_NA == "not applicable: soft-RoCE exposes no PFC/ECN"


def test_tcp_fabric_qos_is_na(gpu1_facts, make_exp):
    fs = cq.check_qos(gpu1_facts, make_exp(lambda d: d["fabric"].update(transport="tcp", soft_roce=False)))
    assert {f.observed for f in fs} == {TCP_NA} and {f.status for f in fs} == {NA}


def test_healthy_real_connectx(mlx5_gpu, real_exp):
    fs = cq.check_qos(mlx5_gpu, real_exp)
    assert [(f.check, f.status, f.observed) for f in fs] == [
        ("dscp_trust", OK, "dscp"),
        ("dscp_priority", OK, "DSCP 26 -> prio 3"),
        ("pfc", OK, "enabled on 3"),
        ("ecn", OK, "prio 3: np=1 rp=1"),
        ("global_pause", OK, "rx off, tx off"),
    ]
    assert {f.device for f in fs} == {IF}


@pytest.mark.parametrize(
    "sample,trust,pfc,pfc_observed",
    [
        ("real/mlnx_qos_att_netarbiter_eth4_trust_dscp_pfc3.txt", OK, OK, "enabled on 3"),
        ("real/mlnx_qos_centos12_ens6_trust_pcp_pfc_off.txt", FAIL, FAIL, "enabled on none"),
        ("real/mlnx_qos_centos12_ens6_trust_dscp_pfc_off.txt", OK, FAIL, "enabled on none"),
        ("real/mlnx_qos_ens14f0_trust_pcp_pfc3.txt", FAIL, OK, "enabled on 3"),
        ("real/mlnx_qos_ens14f0_trust_dscp_pfc3_modified_dscp2prio.txt", OK, OK, "enabled on 3"),
        ("real/mlnx_qos_husky_rdma0_trust_dscp_TRUNCATED.txt", OK, NA,
         "NIC exposes no PFC configuration (no mlnx_qos output)"),
        # spiderpool's host: lossless class on priority 5, not the spec's 3
        ("real-extra/rdma_qos_sh_q_spiderpool_eth0_mlx5_0_trust_dscp_pfc5_ecn_all_on.txt", OK, FAIL, "enabled on 5"),
    ],
)
def test_real_mlnx_qos_outputs(real_exp, sample, trust, pfc, pfc_observed):
    text = set_section(real_nic_gpu1(), f"mlnx_qos {IF}", read(sample))
    fs = cq.check_qos(facts("gpu1", text), real_exp)
    assert get(fs, "dscp_trust").status == trust
    assert (get(fs, "pfc").status, get(fs, "pfc").observed) == (pfc, pfc_observed)
    if trust == FAIL:
        assert get(fs, "dscp_trust").remedy == f"mlnx_qos -i {IF} --trust dscp"
    if pfc == FAIL:
        assert get(fs, "pfc").remedy == f"mlnx_qos -i {IF} --pfc 0,0,0,1,0,0,0,0"


PFC_ROW = "        enabled     0   0   0   1   0   0   0   0   "


def test_pfc_on_an_extra_priority_warns(real_exp):
    text = edit_section(real_nic_gpu1(), f"mlnx_qos {IF}", PFC_ROW,
                        "        enabled     0   0   0   1   1   0   0   0   ")
    f = get(cq.check_qos(facts("gpu1", text), real_exp), "pfc")
    assert (f.status, f.observed, f.expected) == (WARN, "enabled on 3,4", "only priority 3")


def test_dscp_to_priority_mapping_of_a_real_remapped_table(make_exp):
    """real sample: dscp 30 was remapped to prio 6 (prio:3 keeps 7 entries, 26 among them)."""
    text = set_section(real_nic_gpu1(), f"mlnx_qos {IF}",
                       read("real/mlnx_qos_ens14f0_trust_dscp_pfc3_modified_dscp2prio.txt"))
    f = facts("gpu1", text)

    def dscp(v):
        # tos carries the DSCP (tos = dscp << 2 | ECN bits): the spec refuses them apart
        return make_exp(lambda d: (real_nic(d), d["fabric"]["roce"].update(dscp=v, tos=v << 2 | 2)))

    assert get(cq.check_qos(f, dscp(26)), "dscp_priority").status == OK
    bad = get(cq.check_qos(f, dscp(30)), "dscp_priority")
    assert (bad.status, bad.observed, bad.expected) == (FAIL, "DSCP 30 -> prio 6", "DSCP 30 -> prio 3")
    assert bad.remedy == f"mlnx_qos -i {IF} --dscp2prio set,30,3"


def test_trust_from_sysfs_when_no_mlnx_qos(real_exp):
    text = drop_section(real_nic_gpu1(), f"mlnx_qos {IF}")  # mlnx_qos not installed
    fs = cq.check_qos(facts("gpu1", text), real_exp)
    assert get(fs, "dscp_trust").status == NA and get(fs, "pfc").status == NA
    # /sys/class/net/IF/qos/trust as the probe prints it; pcp = the default the real samples show
    text = edit_section(text, f"netif {IF}", "driver=virtio_net", "driver=virtio_net\ntrust=pcp")
    fs = cq.check_qos(facts("gpu1", text), real_exp)
    assert (get(fs, "dscp_trust").status, get(fs, "dscp_trust").observed) == (FAIL, "pcp")
    assert get(fs, "pfc").observed == "NIC exposes no PFC configuration (no mlnx_qos output)"


def test_ecn_off_on_the_roce_priority_fails(make_exp, real_exp):
    text = edit_section(real_nic_gpu1(), f"ecn {IF}", "roce_np/3=1", "roce_np/3=0")
    f = get(cq.check_qos(facts("gpu1", text), real_exp), "ecn")
    assert (f.status, f.observed, f.expected) == (FAIL, "prio 3: np=0 rp=1", "prio 3: np=1 rp=1")
    assert f.remedy == (f"echo 1 > /sys/class/net/{IF}/ecn/roce_np/enable/3; "
                        f"echo 1 > /sys/class/net/{IF}/ecn/roce_rp/enable/3")
    f = get(cq.check_qos(facts("gpu1", drop_section(real_nic_gpu1(), f"ecn {IF}")), real_exp), "ecn")
    assert (f.status, f.observed) == (NA, f"NIC exposes no /sys/class/net/{IF}/ecn")
    off = make_exp(lambda d: (real_nic(d), d["fabric"]["roce"].update(ecn=False)))
    f = get(cq.check_qos(facts("gpu1", text), off), "ecn")
    assert (f.status, f.observed) == (NA, "ECN disabled in spec (fabric.roce.ecn: false)")


def test_global_pause(real_exp):
    """Real `ethtool -a` outputs: E810 with pause on (warn), the lab's virtio NIC (no pause: n/a)."""
    pause_on = read("real-extra/ethtool_a_ice_ens6f0_pause_rx_on_tx_on.txt")
    text = set_section(real_nic_gpu1(), f"ethtool_a {IF}", pause_on)
    f = get(cq.check_qos(facts("gpu1", text), real_exp), "global_pause")
    assert (f.status, f.observed) == (WARN, "rx on, tx on")
    assert f.remedy == f"ethtool -A {IF} rx off tx off"
    lab_pause = section(lab("gpu1"), "ethtool_a eth1")
    assert lab_pause == "netlink error: Operation not supported\n"
    text = set_section(real_nic_gpu1(), f"ethtool_a {IF}", lab_pause)
    f = get(cq.check_qos(facts("gpu1", text), real_exp), "global_pause")
    assert (f.status, f.observed) == (NA, "driver reports no pause parameters")


# ---- counters ----------------------------------------------------------------------------------------
def test_real_connectx_flat_window(mlx5_gpu, real_exp):
    """The CX-4 Lx table holds out_of_buffer 135 etc. as absolute values: no growth, no finding."""
    fs = cc.check_counters(mlx5_gpu, real_exp)
    assert [(f.check, f.status, f.observed) for f in fs] == [
        ("nic_drops", NA, "counters absent on this NIC"),  # the truncated healthy ethtool -S stops early
        ("link_errors", NA, "counters absent on this NIC"),
        ("rdma_drops", OK, "1 counters flat over 6.127s"),
        ("transport_retries", OK, "7 counters flat over 6.127s"),
        ("cqe_errors", OK, "6 counters flat over 6.127s"),
        ("congestion", OK, "ecn_marked +0, cnp_sent +0, cnp_handled +0, pause +0 in 6.127s"),
        ("lossless_class_traffic", NA, "no per-priority byte counters"),
    ]


def test_out_of_buffer_and_cqe_errors_grow(real_exp):
    """t0 = the same real table before its out_of_buffer/CQE errors happened (those three set to 0)."""
    t1 = read("real/show_counters_mlx5_0_cx4lx_out_of_buffer.txt")
    t0 = edit(t1, "out_of_buffer: 135", "out_of_buffer: 0")
    t0 = edit(t0, "req_cqe_error: 22", "req_cqe_error: 0")
    t0 = edit(t0, "resp_cqe_error: 1009", "resp_cqe_error: 0")
    fs = cc.check_counters(facts("gpu1", with_hw_counters(real_nic_gpu1(), t0, t1)), real_exp)
    d, c = get(fs, "rdma_drops"), get(fs, "cqe_errors")
    assert (d.status, d.observed, d.device) == (WARN, "out_of_buffer +135 in 6.127s", "mlx5_0/1")
    assert (c.status, c.observed) == (WARN, "req_cqe_error +22, resp_cqe_error +1009 in 6.127s")
    assert get(fs, "transport_retries").status == OK


def test_rdma_statistic_text_counts_when_no_hw_counters(real_exp):
    text = drop_section(drop_section(real_nic_gpu1(), "hw_counters mlx5_0 1 t0"), "hw_counters mlx5_0 1 t1")
    assert get(cc.check_counters(facts("gpu1", text), real_exp), "rdma_drops").status == OK
    text = edit_section(text, "rdma_stat t0", "out_of_buffer 135", "out_of_buffer 100")
    f = get(cc.check_counters(facts("gpu1", text), real_exp), "rdma_drops")
    assert (f.status, f.observed) == (WARN, "out_of_buffer +35 in 6.127s")


def test_ecn_marked_without_cnps_fails(real_exp):
    t0 = read(PROD_COUNTERS)
    t1 = edit(t0, "np_ecn_marked_roce_packets: 21278189006", "np_ecn_marked_roce_packets: 21278194006")
    f = get(cc.check_counters(facts("gpu1", with_hw_counters(real_nic_gpu1(), t0, t1)), real_exp), "congestion")
    assert (f.status, f.observed) == (FAIL, "ecn_marked +5000, cnp_sent +0, cnp_handled +0, pause +0 in 6.127s")
    assert f.remedy == "ECN marks arrive but no CNPs go out: enable roce_np on the RoCE priority (DCQCN)"


def test_ecn_with_cnps_ok_and_out_of_sequence_warns(real_exp):
    t0 = read(PROD_COUNTERS)
    t1 = edit(t0, "np_ecn_marked_roce_packets: 21278189006", "np_ecn_marked_roce_packets: 21278194006")
    t1 = edit(t1, "np_cnp_sent: 1052612505", "np_cnp_sent: 1052612755")
    t1 = edit(t1, "out_of_sequence: 1811101", "out_of_sequence: 1811108")
    fs = cc.check_counters(facts("gpu1", with_hw_counters(real_nic_gpu1(), t0, t1)), real_exp)
    c, r = get(fs, "congestion"), get(fs, "transport_retries")
    assert (c.status, c.observed) == (OK, "ecn_marked +5000, cnp_sent +250, cnp_handled +0, pause +0 in 6.127s")
    assert (r.status, r.observed) == (WARN, "out_of_sequence +7 in 6.127s")


def test_nic_drops_from_the_real_overload_dump(real_exp):
    t1 = read(OVERLOAD)
    t0 = edit(t1, "rx_discards_phy: 58591428329", "rx_discards_phy: 58590428329")
    t0 = edit(t0, "rx_prio0_discards: 58591314012", "rx_prio0_discards: 58590315012")
    fs = cc.check_counters(facts("gpu1", with_ethtool(real_nic_gpu1(), t0, t1)), real_exp)
    f = get(fs, "nic_drops")
    assert (f.status, f.device) == (WARN, IF)
    assert f.observed == "rx_discards_phy +1000000, rx_prio0_discards +999000 in 6.127s"
    assert get(fs, "congestion").status == OK  # its pause counters did not move
    # the dump omits zero counters: no PHY error counter in it
    assert (get(fs, "link_errors").status, get(fs, "link_errors").observed) == (NA, "counters absent on this NIC")


def test_pause_without_cnps_warns(real_exp):
    t1 = read(OVERLOAD)
    t0 = edit(t1, "tx_pause_ctrl_phy: 5745055", "tx_pause_ctrl_phy: 5736055")
    t0 = edit(t0, "tx_global_pause: 5745042", "tx_global_pause: 5736042")
    f = get(cc.check_counters(facts("gpu1", with_ethtool(real_nic_gpu1(), t0, t1)), real_exp), "congestion")
    assert (f.status, f.observed) == (WARN, "ecn_marked +0, cnp_sent +0, cnp_handled +0, pause +18000 in 6.127s")
    assert "DCQCN" in f.remedy


# The overload dump lists non-zero counters only ("Missing counters are zero", SOURCES.md): a counter that
# starts rising is added to it as 0 at t0 and its new value at t1.
def _add_counter(dump, after, name, value):
    line = next(x for x in dump.splitlines() if x.strip().startswith(f"{after}:"))
    return edit(dump, line + "\n", f"{line}\n     {name}: {value}\n")


def test_pause_storm_error_fails(real_exp):
    t0 = _add_counter(read(OVERLOAD), "tx_global_pause_duration", "tx_pause_storm_error_events", 0)
    t1 = _add_counter(read(OVERLOAD), "tx_global_pause_duration", "tx_pause_storm_error_events", 1)
    f = get(cc.check_counters(facts("gpu1", with_ethtool(real_nic_gpu1(), t0, t1)), real_exp), "nic_drops")
    assert (f.status, f.observed) == (FAIL, "tx_pause_storm_error_events +1 in 6.127s")


def test_link_errors_warn(real_exp):
    t0 = _add_counter(read(OVERLOAD), "rx_jabbers_phy", "rx_crc_errors_phy", 0)
    t1 = _add_counter(read(OVERLOAD), "rx_jabbers_phy", "rx_crc_errors_phy", 6)
    f = get(cc.check_counters(facts("gpu1", with_ethtool(real_nic_gpu1(), t0, t1)), real_exp), "link_errors")
    assert (f.status, f.observed) == (WARN, "rx_crc_errors_phy +6 in 6.127s")
    assert f.remedy == "PHY errors: reseat/replace the cable or optic; run mlxlink -c"


def test_lossless_class_traffic(real_exp):
    """RoCE bytes must land on the PFC priority (byteps #179 found them all on prio 0)."""
    dump = _add_counter(read(OVERLOAD), "tx_prio0_packets", "rx_prio3_bytes", 0)
    idle = with_ethtool(real_nic_gpu1(), dump, dump)
    f = get(cc.check_counters(facts("gpu1", idle), real_exp), "lossless_class_traffic")
    assert (f.status, f.observed) == (NA, "idle: no RDMA traffic in the window")
    # RDMA writes during the window (the CX-4 Lx table's rx_write_requests rising) ...
    hw = read("real/show_counters_mlx5_0_cx4lx_out_of_buffer.txt")
    busy = with_hw_counters(idle, hw, edit(hw, "rx_write_requests: 0", "rx_write_requests: 1000"))
    # ... with the bytes on prio 0
    on0 = set_section(busy, f"ethtool_S {IF} t0", edit(dump, "rx_prio0_bytes: 6211318150440",
                                                        "rx_prio0_bytes: 6210318150440"))
    f = get(cc.check_counters(facts("gpu1", on0), real_exp), "lossless_class_traffic")
    assert (f.status, f.observed) == (WARN, "prio3 +0 B, prio0 +1000000000 B")
    assert f.remedy.startswith("RoCE traffic is not classified to the PFC priority")
    # ... with the bytes on prio 3
    on3 = set_section(busy, f"ethtool_S {IF} t1", edit(dump, "rx_prio3_bytes: 0", "rx_prio3_bytes: 1000000000"))
    f = get(cc.check_counters(facts("gpu1", on3), real_exp), "lossless_class_traffic")
    assert (f.status, f.observed) == (OK, "prio3 +1000000000 B, prio0 +0 B")


def test_lab_rxe_counters(gpu1_facts, lab_exp):
    fs = cc.check_counters(gpu1_facts, lab_exp)
    assert [(f.check, f.status, f.observed) for f in fs] == [
        ("nic_drops", NA, "counters absent on this NIC"),  # virtio_net
        ("link_errors", NA, "counters absent on this NIC"),
        ("rdma_drops", NA, "counters absent on this NIC"),
        ("transport_retries", OK, "6 counters flat over 6.127s"),
        ("cqe_errors", OK, "1 counters flat over 6.127s"),
        ("congestion", NA, "no ECN/CNP counters (soft-RoCE or non-mlx5 NIC)"),
        ("lossless_class_traffic", NA, "no per-priority byte counters"),
    ]


def test_lab_rxe_sequence_errors_grow(lab_exp):
    text = edit_section(lab("gpu1"), "hw_counters rxe_eth1 1 t1", "rcvd_seq_err=3", "rcvd_seq_err=7")
    text = edit_section(text, "rdma_stat t1", '"rcvd_seq_err":3', '"rcvd_seq_err":7')
    f = get(cc.check_counters(facts("gpu1", text), lab_exp), "transport_retries")
    assert (f.status, f.observed, f.device) == (WARN, "rcvd_seq_err +4 in 6.127s", "rxe_eth1/1")


def test_real_link_downed_that_does_not_grow_is_ok(gpu2_facts, lab_exp):
    """gpu2's real capture: link_downed=1 at both samples (an old flap), nothing during the window."""
    assert gpu2_facts.hw_counters[("rxe_eth1", 1)].t0["link_downed"] == 1
    f = get(cc.check_counters(gpu2_facts, lab_exp), "transport_retries")
    assert (f.status, f.observed) == (OK, "6 counters flat over 5.675s")


def test_counters_absent_real_capture_without_rdma_device(lab_exp):
    """Real capture of gpu2 after `rdma link delete rxe_eth1`: no RDMA counters at all."""
    fs = cc.check_counters(facts("gpu2", lab("gpu2", "rxe-removed")), lab_exp)
    assert all(f.status == NA for f in fs)
    assert get(fs, "rdma_drops").observed == "no hw_counters / rdma statistic for the device"


def test_counters_on_a_tcp_fabric(gpu1_facts, make_exp):
    fs = cc.check_counters(gpu1_facts, make_exp(lambda d: d["fabric"].update(transport="tcp")))
    assert [f.observed for f in fs[2:]] == [TCP_NA] * 5


def test_each_rail_gets_its_own_qos_judgement(make_exp):
    """Two rails on the real ConnectX node: rail 1 (eth01) as captured, rail 2 (eth02) given the
    sections a real host with trust pcp printed (real/mlnx_qos_ens14f0_trust_pcp_pfc3.txt; ecn and
    pause as rail 1's). Rail 2's wrong trust is judged on rail 2 and stays a failure: QoS is
    configuration, never softened as a degraded link."""
    from nvmeofctl.health.checks import rail_checks

    def two_rails(d):
        real_nic(d)
        next(h for h in d["hosts"] if h["name"] == "gpu1")["rails"] = [
            {"interface": "eth02", "ips": ["10.108.165.36"], "rdma_device": "mlx5_0"}]

    text = real_nic_gpu1()
    for header, body in ((f"ecn {IF}", section(text, f"ecn {IF}")),
                         (f"mlnx_qos {IF}", read("real/mlnx_qos_ens14f0_trust_pcp_pfc3.txt")),
                         (f"ethtool_a {IF}", section(text, f"ethtool_a {IF}"))):
        text = add_section(text, header.replace(IF, "eth02"), body, before="rdma")
    f = facts("gpu1", text)
    assert sorted(f.mlnx_qoss) == [IF, "eth02"] and f.mlnx_qos is f.mlnx_qoss[IF]
    found = rail_checks(f, make_exp(two_rails))
    trust = [(x.device, x.status, x.observed) for x in found if x.check == "dscp_trust"]
    assert trust == [(IF, OK, "dscp"), ("eth02", FAIL, "pcp")]
    assert next(x for x in found if x.check == "dscp_trust" and x.device == "eth02").remedy == \
        "mlnx_qos -i eth02 --trust dscp"
