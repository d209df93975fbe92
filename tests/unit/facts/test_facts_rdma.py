import pytest

from nvmeofctl.facts import rdma
from nvmeofctl.resources import load_module_utils


# The link (rdma -j link show) and the GID table have one reader, module_utils/rdma.py, tested on real
# captures in tests/unit/collection/test_rdma_utils.py; here: the adapters health puts over its entries.
def test_link_adapter_over_the_module_observed(fx):
    rdma_mu = load_module_utils("rdma")
    links = [rdma.RdmaLink.from_observed(d) for d in rdma_mu.parse_link_show(fx("lab/rdma-link-show.json"))]
    assert [(x.dev, x.port, x.state, x.physical_state, x.netdev) for x in links] == [
        ("rxe0", 1, "ACTIVE", "LINK_UP", "eth1")]


def test_gid_v2_over_the_module_parser(fx):
    gids = load_module_utils("rdma").parse_gid_table(fx("lab/sysfs-gid-table.txt"))
    assert [(g["index"], g["type"], g["ndev"], g["ipv4"], rdma.gid_is_v2(g)) for g in gids] == [
        (0, "RoCE v2", "eth1", None, True),
        (1, "RoCE v2", "eth1", "192.168.100.1", True),
    ]
    assert not rdma.gid_is_v2({"type": "IB/RoCE v1"}) and not rdma.gid_is_v2({"type": None})


def test_show_counters_out_of_buffer(fx):
    c = rdma.parse_counters(fx("real/show_counters_mlx5_0_cx4lx_out_of_buffer.txt"))
    assert c["out_of_buffer"] == 135 and c["resp_cqe_error"] == 1009 and c["req_cqe_error"] == 22
    assert "Port 1 hw counters" not in c and len(c) == 30


def test_show_counters_ecn_cnp(fx):
    c = rdma.parse_counters(fx("real/show_counters_mlx5_bond_0_prod_ecn_cnp_out_of_sequence.txt"))
    assert c["np_ecn_marked_roce_packets"] == 21278189006 and c["np_cnp_sent"] == 1052612505
    assert c["out_of_sequence"] == 1811101


def test_rdma_statistic_text_mlnx(fx):
    st = rdma.parse_rdma_statistic(fx("real/rdma_statistic_show_cx4lx_4dev_mlnx_iproute2.txt"))
    assert set(st) == {("mlx5_0", 1), ("mlx5_1", 1), ("mlx5_2", 1), ("mlx5_3", 1)}
    assert st[("mlx5_0", 1)]["out_of_buffer"] == 135
    assert st[("mlx5_1", 1)]["out_of_buffer"] == 0


def test_rdma_statistic_rxe_json_and_text_agree(fx):
    js = rdma.parse_rdma_statistic(fx("lab/rdma-stat-after.json"))
    tx = rdma.parse_rdma_statistic(fx("lab/rdma-stat-after.txt"))
    assert js == tx
    assert js[("rxe0", 1)]["sent_pkts"] == 73383


def test_ibv_devinfo_ports(fx):
    lab = rdma.parse_ibv_devinfo(fx("lab/k612-ibv_devinfo.txt"))
    assert lab[("rxe0", 1)].active_mtu == 1024 and lab[("rxe0", 1)].state == "ACTIVE"
    cx4 = rdma.parse_ibv_devinfo(fx("real/ibv_devinfo_cx4lx_4ports_one_down.txt"))
    assert cx4[("mlx5_1", 1)].state == "DOWN" and cx4[("mlx5_0", 1)].state == "ACTIVE"
    cx7 = rdma.parse_ibv_devinfo(fx("real/ibv_devinfo_cx7_gb10_4ports_2down.txt"))
    assert sorted(p.active_mtu for p in cx7.values() if p.state == "ACTIVE") == [4096, 4096]
    assert sum(1 for p in cx7.values() if p.state == "DOWN") == 2


def test_ibv_devinfo_verbose(fx):
    v = rdma.parse_ibv_devinfo(fx("lab/ibv_devinfo-v-rxe0-port1.txt"))
    assert v[("rxe0", 1)].max_mtu == 4096 and v[("rxe0", 1)].link_layer == "Ethernet"


def test_cma_roce_mode(fx):
    assert rdma.parse_cma_roce_mode(fx("real/cma_roce_mode_query_cx4lx_v1_default.txt")) == "IB/RoCE v1"
    assert rdma.parse_cma_roce_mode(fx("real/cma_roce_mode_query_cx4lx_v2_after_set.txt")) == "RoCE v2"


@pytest.mark.parametrize("raw,want", [("100 Gb/sec (4X EDR)", 100.0), ("2.5 Gb/sec (1X SDR)", 2.5),
                                      ("200 Gb/sec (2X HDR)", 200.0), ("junk", None), (None, None)])
def test_rate(raw, want):
    assert rdma.parse_rate(raw) == want


def test_port_state_normalisation():
    p = rdma.parse_ib_port(1, "state=4: ACTIVE\nphys_state=5: LinkUp\nrate=25 Gb/sec (1X EDR)\nlink_layer=Ethernet")
    assert (p.state, p.phys_state, p.rate_gbps) == ("ACTIVE", "LINK_UP", 25.0)
    q = rdma.parse_ib_port(1, "state=1: DOWN\nphys_state=3: Disabled\n")
    assert (q.state, q.phys_state) == ("DOWN", "DISABLED")
