import pytest

from nvmeofctl.facts import rdma


def test_rdma_link_json_lab(fx):
    links = rdma.parse_rdma_link(fx("lab/rdma-link-show.json"))
    assert [(x.dev, x.port, x.state, x.physical_state, x.netdev) for x in links] == [
        ("rxe0", 1, "ACTIVE", "LINK_UP", "eth1")
    ]


def test_rdma_link_text_lab_equals_json(fx):
    text = rdma.parse_rdma_link(fx("lab/rdma-link-show.txt"))
    js = rdma.parse_rdma_link(fx("lab/rdma-link-show.json"))
    assert text == js


def test_rdma_link_text_trailing_space(fx):
    links = rdma.parse_rdma_link(fx("real/rdma_link_show_cx6dx_p1p1_trailing_space.txt"))
    assert [(x.dev, x.netdev) for x in links] == [("mlx5_0", "p1p1"), ("mlx5_1", "p1p2")]


def test_rdma_link_ib_port_down_without_netdev(fx):
    links = rdma.parse_rdma_link(fx("real/rdma_link_mlx5_vpi_one_eth_active_one_ib_down.txt"))
    assert links[0].netdev == "ens3f0np0" and links[0].state == "ACTIVE"
    assert links[1].dev == "mlx5_1" and links[1].state == "DOWN"
    assert links[1].physical_state == "DISABLED" and links[1].netdev is None


def test_rdma_link_bond(fx):
    links = rdma.parse_rdma_link(fx("real/rdma_link_show_mlx5_bond_and_pf_vf.txt"))
    assert ("mlx5_bond_0", "ens1f0np0") in [(x.dev, x.netdev) for x in links]
    assert len(links) == 5


def test_rdma_dev_json_and_text(fx):
    assert rdma.parse_rdma_dev(fx("lab/rdma-dev.json")) == ["rxe0"]
    assert rdma.parse_rdma_dev(fx("lab/rdma-dev.txt")) == ["rxe0"]


def test_sysfs_gid_table_lab(fx):
    gids = rdma.parse_gid_table(fx("lab/sysfs-gid-table.txt"))
    assert [(g.index, g.type, g.ndev, g.ipv4) for g in gids] == [
        (0, "RoCE v2", "eth1", None),
        (1, "RoCE v2", "eth1", "192.168.100.1"),
    ]
    assert gids[1].is_v2


def test_gid_table_skips_zero_and_typeless():
    text = '0 0000:0000:0000:0000:0000:0000:0000:0000 type="RoCE v2" ndev=eth1\n5 fe80:0000:0000:0000:0000:0000:0000:0001 type="" ndev=\n'
    assert rdma.parse_gid_table(text) == []


@pytest.mark.parametrize(
    "name,dev,idx,ip",
    [
        ("show_gids_cx5_mce0_spaces.txt", "mlx5_0", 3, "192.168.6.132"),
        ("show_gids_husky_rdma0_tabs.txt", "mlx5_0", 3, "192.168.211.242"),
        ("show_gids_mlx5_bond_0_tabs.txt", "mlx5_bond_0", 3, "10.96.83.26"),
        ("show_gids_cx4lx_eth01_tabs.txt", "mlx5_2", 3, "192.20.28.1"),
        ("show_gids_centos12_multi_dev_some_without_ipv4.txt", "mlx5_3", 3, "192.168.242.56"),
    ],
)
def test_show_gids_v2_ipv4_index(fx, name, dev, idx, ip):
    table = rdma.parse_show_gids(fx(f"real/{name}"))
    v2 = [g for g in table[(dev, 1)] if g.is_v2 and g.ipv4]
    assert [(g.index, g.ipv4) for g in v2] == [(idx, ip)]


def test_show_gids_rows_without_netdev_and_without_ipv4(fx):
    table = rdma.parse_show_gids(fx("real/show_gids_cx5_mce0_spaces.txt"))
    assert table[("mlx5_1", 1)][0].ndev is None
    multi = rdma.parse_show_gids(fx("real/show_gids_centos12_multi_dev_some_without_ipv4.txt"))
    assert sum(len(v) for v in multi.values()) == 19  # n_gids_found=19
    assert not any(g.ipv4 for g in multi[("mlx5_0", 1)])
    bond = rdma.parse_show_gids(fx("real/show_gids_hrn3_plus_mlx5_bond_no_ipv4_on_mlx5.txt"))
    assert not any(g.ipv4 for g in bond[("mlx5_bond_0", 1)])
    assert any(g.ipv4 == "27.105.180.3" for g in bond[("hrn3_bond_0", 1)])


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
