import pytest

from nvmeofctl.facts import net as net_p
from nvmeofctl.facts import rdma as rdma_p
from nvmeofctl.facts.probe import CounterWindow
from nvmeofctl.health import checks_counters as cc
from nvmeofctl.health import checks_qos as cq
from nvmeofctl.health.common import SOFT_ROCE_NA
from nvmeofctl.health.model import Status

from healthfx import read


def st(findings):
    return {f.check: f.status for f in findings}


def get(findings, check):
    (f,) = [x for x in findings if x.check == check]
    return f


# ---- QoS ---------------------------------------------------------------------------------------
def test_soft_roce_qos_is_na_with_reason(gpu_facts, lab_exp):
    fs = cq.check_qos(gpu_facts, lab_exp)
    assert set(st(fs)) == set(cq.CHECKS)
    assert all(f.status == Status.na and f.observed == SOFT_ROCE_NA for f in fs)
    assert SOFT_ROCE_NA == "not applicable: soft-RoCE exposes no PFC/ECN"


def test_healthy_cx5(mlx5_gpu, real_exp):
    assert st(cq.check_qos(mlx5_gpu, real_exp)) == {c: Status.ok for c in cq.CHECKS}


@pytest.mark.parametrize(
    "sample,trust,pfc",
    [
        ("mlnx_qos_att_netarbiter_eth4_trust_dscp_pfc3.txt", Status.ok, Status.ok),
        ("mlnx_qos_centos12_ens6_trust_pcp_pfc_off.txt", Status.fail, Status.fail),
        ("mlnx_qos_centos12_ens6_trust_dscp_pfc_off.txt", Status.ok, Status.fail),
        ("mlnx_qos_ens14f0_trust_pcp_pfc3.txt", Status.fail, Status.ok),
        ("mlnx_qos_ens14f0_trust_dscp_pfc3_modified_dscp2prio.txt", Status.ok, Status.ok),
        ("mlnx_qos_husky_rdma0_trust_dscp_TRUNCATED.txt", Status.ok, Status.na),
    ],
)
def test_mlnx_qos_samples(mlx5_gpu, real_exp, sample, trust, pfc):
    mlx5_gpu.mlnx_qos = net_p.parse_mlnx_qos(read(f"real/{sample}"))
    fs = cq.check_qos(mlx5_gpu, real_exp)
    assert get(fs, "dscp_trust").status == trust
    assert get(fs, "pfc").status == pfc
    if trust == Status.fail:
        assert "--trust dscp" in get(fs, "dscp_trust").remedy
    if pfc == Status.fail:
        assert "--pfc 0,0,0,1,0,0,0,0" in get(fs, "pfc").remedy


def test_pfc_extra_priority_warns_and_wrong_priority_fails(mlx5_gpu, real_exp):
    mlx5_gpu.mlnx_qos.pfc_enabled = [3, 4]
    assert get(cq.check_qos(mlx5_gpu, real_exp), "pfc").status == Status.warn
    mlx5_gpu.mlnx_qos.pfc_enabled = [4]
    assert get(cq.check_qos(mlx5_gpu, real_exp), "pfc").status == Status.fail


def test_dscp_to_priority_mapping(mlx5_gpu, make_exp):
    mlx5_gpu.mlnx_qos = net_p.parse_mlnx_qos(read("real/mlnx_qos_ens14f0_trust_dscp_pfc3_modified_dscp2prio.txt"))

    def mut(dscp):
        def m(d):
            d["fabric"]["soft_roce"] = False
            d["fabric"]["roce"]["dscp"] = dscp
            for h in d["hosts"]:
                h["fabric"]["rdma_device"] = "mlx5_0"
        return m

    assert get(cq.check_qos(mlx5_gpu, make_exp(mut(26))), "dscp_priority").status == Status.ok
    bad = get(cq.check_qos(mlx5_gpu, make_exp(mut(30))), "dscp_priority")  # remapped to prio 6
    assert bad.status == Status.fail and "prio 6" in bad.observed


def test_qos_trust_from_sysfs_when_no_mlnx_qos(mlx5_gpu, real_exp):
    mlx5_gpu.mlnx_qos = None
    mlx5_gpu.netif.qos_trust = "pcp"
    fs = cq.check_qos(mlx5_gpu, real_exp)
    assert get(fs, "dscp_trust").status == Status.fail
    assert get(fs, "pfc").status == Status.na


def test_ecn(mlx5_gpu, real_exp):
    mlx5_gpu.ecn["roce_np"][3] = False
    f = get(cq.check_qos(mlx5_gpu, real_exp), "ecn")
    assert f.status == Status.fail and "roce_np/enable/3" in f.remedy
    mlx5_gpu.ecn = None
    assert get(cq.check_qos(mlx5_gpu, real_exp), "ecn").status == Status.na


def test_global_pause(mlx5_gpu, real_exp):
    mlx5_gpu.pause = net_p.parse_ethtool_pause("Pause parameters for eth1:\nAutonegotiate:\toff\nRX:\t\ton\nTX:\t\ton\n")
    f = get(cq.check_qos(mlx5_gpu, real_exp), "global_pause")
    assert f.status == Status.warn and "ethtool -A eth1 rx off tx off" == f.remedy
    mlx5_gpu.pause = net_p.PauseParams(False)
    assert get(cq.check_qos(mlx5_gpu, real_exp), "global_pause").status == Status.na


# ---- counters ----------------------------------------------------------------------------------
def test_flat_counters_ok(mlx5_gpu, real_exp):
    s = st(cc.check_counters(mlx5_gpu, real_exp))
    assert s["rdma_drops"] == s["transport_retries"] == s["cqe_errors"] == s["congestion"] == Status.ok
    # the truncated healthy ethtool -S has none of the drop/PHY counters
    assert s["nic_drops"] == Status.na and s["link_errors"] == Status.na


def test_out_of_buffer_growth_warns(mlx5_gpu, real_exp):
    """show_counters sample (out_of_buffer 135): growth of 135 during the window."""
    t1 = rdma_p.parse_counters(read("real/show_counters_mlx5_0_cx4lx_out_of_buffer.txt"))
    t0 = {**t1, "out_of_buffer": 0, "resp_cqe_error": 0, "req_cqe_error": 0}
    mlx5_gpu.hw_counters[("mlx5_0", 1)] = CounterWindow(t0, t1)
    fs = cc.check_counters(mlx5_gpu, real_exp)
    f = get(fs, "rdma_drops")
    assert f.status == Status.warn and "out_of_buffer +135" in f.observed and "3.007s" in f.observed
    assert get(fs, "cqe_errors").status == Status.warn


def test_absolute_values_without_growth_are_ok(mlx5_gpu, real_exp):
    t = rdma_p.parse_counters(read("real/show_counters_mlx5_0_cx4lx_out_of_buffer.txt"))
    mlx5_gpu.hw_counters[("mlx5_0", 1)] = CounterWindow(dict(t), dict(t))
    assert get(cc.check_counters(mlx5_gpu, real_exp), "rdma_drops").status == Status.ok


def test_rdma_statistic_text_sample_as_counters(mlx5_gpu, real_exp):
    stat = rdma_p.parse_rdma_statistic(read("real/rdma_statistic_show_cx4lx_4dev_mlnx_iproute2.txt"))
    t1 = stat[("mlx5_0", 1)]
    mlx5_gpu.hw_counters = {}
    mlx5_gpu.rdma_stat = {("mlx5_0", 1): CounterWindow({**t1, "out_of_buffer": 100}, t1)}
    assert get(cc.check_counters(mlx5_gpu, real_exp), "rdma_drops").status == Status.warn


def test_ecn_marked_without_cnps_fails(mlx5_gpu, real_exp):
    t0 = rdma_p.parse_counters(read("real/show_counters_mlx5_bond_0_prod_ecn_cnp_out_of_sequence.txt"))
    t1 = {**t0, "np_ecn_marked_roce_packets": t0["np_ecn_marked_roce_packets"] + 5000}
    mlx5_gpu.hw_counters[("mlx5_0", 1)] = CounterWindow(t0, t1)
    f = get(cc.check_counters(mlx5_gpu, real_exp), "congestion")
    assert f.status == Status.fail and "ecn_marked +5000" in f.observed and "cnp_sent +0" in f.observed


def test_ecn_with_cnps_ok_and_out_of_sequence_warns(mlx5_gpu, real_exp):
    t0 = rdma_p.parse_counters(read("real/show_counters_mlx5_bond_0_prod_ecn_cnp_out_of_sequence.txt"))
    t1 = {**t0, "np_ecn_marked_roce_packets": t0["np_ecn_marked_roce_packets"] + 5000,
          "np_cnp_sent": t0["np_cnp_sent"] + 250, "out_of_sequence": t0["out_of_sequence"] + 7}
    mlx5_gpu.hw_counters[("mlx5_0", 1)] = CounterWindow(t0, t1)
    fs = cc.check_counters(mlx5_gpu, real_exp)
    assert get(fs, "congestion").status == Status.ok
    r = get(fs, "transport_retries")
    assert r.status == Status.warn and "out_of_sequence +7" in r.observed


def test_pause_without_cnps_warns(mlx5_gpu, real_exp):
    mlx5_gpu.ethtool = CounterWindow({"rx_prio3_pause": 10, "tx_prio3_pause": 0},
                                     {"rx_prio3_pause": 9000, "tx_prio3_pause": 0})
    f = get(cc.check_counters(mlx5_gpu, real_exp), "congestion")
    assert f.status == Status.warn and "DCQCN" in f.remedy


def test_nic_drops_from_overload_sample(mlx5_gpu, real_exp):
    t1 = net_p.parse_ethtool_stats(read("real/ethtool_S_cx6dx_k5.15_xdp_overload_nonzero_only.txt"))
    t0 = {**t1, "rx_discards_phy": t1["rx_discards_phy"] - 1_000_000, "rx_prio0_discards": t1["rx_prio0_discards"] - 999_000}
    mlx5_gpu.ethtool = CounterWindow(t0, t1)
    fs = cc.check_counters(mlx5_gpu, real_exp)
    f = get(fs, "nic_drops")
    assert f.status == Status.warn and "rx_discards_phy +1000000" in f.observed and "rx_prio0_discards" in f.observed
    # global pause counters rose? no: flat here
    assert get(fs, "congestion").status == Status.ok


def test_pause_storm_error_fails(mlx5_gpu, real_exp):
    mlx5_gpu.ethtool = CounterWindow({"tx_pause_storm_error_events": 0, "rx_discards_phy": 0},
                                     {"tx_pause_storm_error_events": 1, "rx_discards_phy": 0})
    assert get(cc.check_counters(mlx5_gpu, real_exp), "nic_drops").status == Status.fail


def test_link_errors_warn(mlx5_gpu, real_exp):
    mlx5_gpu.ethtool = CounterWindow({"rx_crc_errors_phy": 3, "link_down_events_phy": 1},
                                     {"rx_crc_errors_phy": 9, "link_down_events_phy": 1})
    f = get(cc.check_counters(mlx5_gpu, real_exp), "link_errors")
    assert f.status == Status.warn and f.observed.startswith("rx_crc_errors_phy +6")


def test_lossless_class_traffic(mlx5_gpu, real_exp):
    t0 = rdma_p.parse_counters(read("real/show_counters_mlx5_0_cx4lx_out_of_buffer.txt"))
    t1 = {**t0, "rx_write_requests": t0["rx_write_requests"] + 1000}
    mlx5_gpu.hw_counters[("mlx5_0", 1)] = CounterWindow(t0, t1)
    mlx5_gpu.ethtool = CounterWindow({"rx_prio0_bytes": 0, "rx_prio3_bytes": 0},
                                     {"rx_prio0_bytes": 10**9, "rx_prio3_bytes": 0})
    assert get(cc.check_counters(mlx5_gpu, real_exp), "lossless_class_traffic").status == Status.warn
    mlx5_gpu.ethtool = CounterWindow({"rx_prio0_bytes": 0, "rx_prio3_bytes": 0},
                                     {"rx_prio0_bytes": 100, "rx_prio3_bytes": 10**9})
    assert get(cc.check_counters(mlx5_gpu, real_exp), "lossless_class_traffic").status == Status.ok


def test_lab_rxe_counters(gpu_facts, lab_exp):
    s = st(cc.check_counters(gpu_facts, lab_exp))
    assert s["transport_retries"] == Status.ok
    assert s["congestion"] == Status.na and s["nic_drops"] == Status.na and s["rdma_drops"] == Status.na
    win = gpu_facts.rdma_stat[("rxe0", 1)]
    win.t1 = {**win.t1, "rcvd_seq_err": win.t0["rcvd_seq_err"] + 4}
    gpu_facts.hw_counters = {}
    f = get(cc.check_counters(gpu_facts, lab_exp), "transport_retries")
    assert f.status == Status.warn and "rcvd_seq_err +4" in f.observed


def test_counters_absent_na(gpu_facts, lab_exp):
    gpu_facts.hw_counters = {}
    gpu_facts.rdma_stat = {}
    gpu_facts.ethtool = None
    fs = cc.check_counters(gpu_facts, lab_exp)
    assert all(f.status == Status.na for f in fs)
