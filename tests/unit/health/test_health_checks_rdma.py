import copy

from nvmeofctl.facts import rdma as rdma_p
from nvmeofctl.health import checks_rdma as cr
from nvmeofctl.health.model import Status

from healthfx import read


def by(findings, check):
    return [f for f in findings if f.check == check]


def one(findings, check=None):
    fs = by(findings, check) if check else findings
    assert len(fs) == 1, fs
    return fs[0]


def test_lab_soft_roce_device_default_name_accepts_bound_rxe(gpu_facts, lab_exp):
    f = one(cr.check_rdma_device(gpu_facts, lab_exp))
    assert f.status == Status.ok and f.device == "rxe0" and "rxe_eth1" in f.observed


def test_rdma_device_absent_soft_remedy(gpu_facts, lab_exp):
    gpu_facts.ib_devices = {}
    gpu_facts.rdma_links = []
    f = one(cr.check_rdma_device(gpu_facts, lab_exp))
    assert f.status == Status.fail and "rdma link add rxe_eth1 type rxe netdev eth1" in f.remedy


def test_rdma_device_explicit_name_must_match(gpu_facts, make_exp):
    exp = make_exp(lambda d: d["hosts"][1]["fabric"].update(rdma_device="mlx5_0"))
    f = one(cr.check_rdma_device(gpu_facts, exp))
    assert f.status == Status.fail and "rxe0" in f.observed


def test_rdma_device_bound_to_other_netdev(gpu_facts, lab_exp):
    gpu_facts.rdma_links[0].netdev = "eth0"
    for g in gpu_facts.ib_devices["rxe0"].ports[1].gids:
        g.ndev = "eth0"
    exp = lab_exp
    f = one(cr.check_rdma_device(gpu_facts, exp))
    # default name not present and nothing bound to eth1 -> absent
    assert f.status == Status.fail


def test_rdma_device_bound_wrong_netdev_explicit(gpu_facts, make_exp):
    exp = make_exp(lambda d: d["hosts"][1]["fabric"].update(rdma_device="rxe0"))
    gpu_facts.rdma_links[0].netdev = "eth0"
    f = one(cr.check_rdma_device(gpu_facts, exp))
    assert f.status == Status.fail and "eth0" in f.observed


def test_port_active_ok_and_down_fail(mlx5_gpu, real_exp):
    assert one(cr.check_port(mlx5_gpu, real_exp)).status == Status.ok
    # mlx5_1 of the real VPI sample: IB port DOWN/DISABLED
    links = rdma_p.parse_rdma_link(read("real/rdma_link_mlx5_vpi_one_eth_active_one_ib_down.txt"))
    down = links[1]
    mlx5_gpu.rdma_links = [rdma_p.RdmaLink("mlx5_0", 1, down.state, down.physical_state, "eth1")]
    f = one(cr.check_port(mlx5_gpu, real_exp))
    assert f.status == Status.fail and "DOWN/DISABLED" in f.observed


def test_port_down_from_ibv_devinfo_sample(mlx5_gpu, real_exp):
    ports = rdma_p.parse_ibv_devinfo(read("real/ibv_devinfo_cx4lx_4ports_one_down.txt"))
    p = mlx5_gpu.ib_devices["mlx5_0"].ports[1]
    p.state = ports[("mlx5_1", 1)].state
    mlx5_gpu.rdma_links = []
    assert one(cr.check_port(mlx5_gpu, real_exp)).status == Status.fail


def test_port_infiniband_link_layer_fails(mlx5_gpu, real_exp):
    mlx5_gpu.ib_devices["mlx5_0"].ports[1].link_layer = "InfiniBand"
    f = one(cr.check_port(mlx5_gpu, real_exp))
    assert f.status == Status.fail and "LINK_TYPE" in f.remedy


def test_gid_lab_index_1(gpu_facts, lab_exp):
    f = one(cr.check_gid(gpu_facts, lab_exp))
    assert f.status == Status.ok and f.observed.startswith("index 1 = 192.168.100.2")


def test_gid_mlx5_index_3(mlx5_gpu, real_exp):
    f = one(cr.check_gid(mlx5_gpu, real_exp))
    assert f.status == Status.ok and f.observed.startswith("index 3 ")


def test_gid_missing_ip_fails(gpu_facts, make_exp):
    exp = make_exp(lambda d: d["hosts"][1]["fabric"].update(ips=["192.168.100.9"]))
    f = one(cr.check_gid(gpu_facts, exp))
    assert f.status == Status.fail and "assign the fabric IP" in f.remedy


def test_gid_only_v1_fails(mlx5_gpu, real_exp):
    port = mlx5_gpu.ib_devices["mlx5_0"].ports[1]
    port.gids = [g for g in port.gids if not g.is_v2]
    f = one(cr.check_gid(mlx5_gpu, real_exp))
    assert f.status == Status.fail and "only IB/RoCE v1" in f.observed


def test_gid_show_gids_sample_without_ipv4(mlx5_gpu, real_exp):
    table = rdma_p.parse_show_gids(read("real/show_gids_hrn3_plus_mlx5_bond_no_ipv4_on_mlx5.txt"))
    mlx5_gpu.ib_devices["mlx5_0"].ports[1].gids = table[("mlx5_bond_0", 1)]
    assert one(cr.check_gid(mlx5_gpu, real_exp)).status == Status.fail


def test_mtu_ok_and_mismatch(gpu_facts, lab_exp, make_exp):
    assert one(cr.check_mtu(gpu_facts, lab_exp), "mtu").status == Status.ok
    exp = make_exp(lambda d: d["fabric"].update(mtu=9000))
    f = one(cr.check_mtu(gpu_facts, exp), "mtu")
    assert f.status == Status.fail and "mtu 9000" in f.remedy


def test_active_mtu_low_at_jumbo_warns(mlx5_gpu, make_exp):
    exp = make_exp(lambda d: (d["fabric"].update(mtu=9000, soft_roce=False),
                              [h["fabric"].update(rdma_device="mlx5_0") for h in d["hosts"]]))
    mlx5_gpu.netif.mtu = 9000
    assert one(cr.check_mtu(mlx5_gpu, exp), "mtu").status == Status.ok
    assert one(cr.check_mtu(mlx5_gpu, exp), "active_mtu").status == Status.warn
    mlx5_gpu.ib_devices["mlx5_0"].ports[1].active_mtu = 4096
    assert one(cr.check_mtu(mlx5_gpu, exp), "active_mtu").status == Status.ok


def test_rdma_cm_modes(mlx5_gpu, real_exp):
    fs = cr.check_rdma_cm(mlx5_gpu, real_exp)
    assert one(fs, "rdma_cm_mode").status == Status.ok and one(fs, "rdma_cm_tos").status == Status.ok
    mode = rdma_p.parse_cma_roce_mode(read("real/cma_roce_mode_query_cx4lx_v1_default.txt"))
    mlx5_gpu.rdma_cm[("mlx5_0", 1)] = {"default_roce_mode": mode, "default_roce_tos": "0"}
    fs = cr.check_rdma_cm(mlx5_gpu, real_exp)
    assert one(fs, "rdma_cm_mode").status == Status.fail
    assert one(fs, "rdma_cm_tos").status == Status.warn


def test_rdma_cm_not_exposed_is_na(gpu_facts, lab_exp):
    f = one(cr.check_rdma_cm(gpu_facts, lab_exp))
    assert f.status == Status.na and "not exposed" in f.observed


def test_modules_ok_and_missing(gpu_facts, target_facts, lab_exp):
    assert one(cr.check_modules(gpu_facts, lab_exp)).status == Status.ok
    assert one(cr.check_modules(target_facts, lab_exp)).status == Status.ok
    gpu_facts.modules.discard("nvme_rdma")
    gpu_facts.sys_modules.discard("nvme_rdma")
    f = one(cr.check_modules(gpu_facts, lab_exp))
    assert f.status == Status.fail and "nvme-rdma" in f.remedy


def test_modules_tcp_transport(gpu_facts, make_exp):
    exp = make_exp(lambda d: d["fabric"].update(transport="tcp", soft_roce=False))
    f = one(cr.check_modules(gpu_facts, exp))
    assert f.status == Status.ok and f.expected == "nvme_tcp"


def test_builtin_module_counts(gpu_facts, lab_exp):
    gpu_facts.modules.discard("nvme_rdma")  # still in /sys/module: built in
    assert one(cr.check_modules(gpu_facts, lab_exp)).status == Status.ok


def test_interface_and_ip(gpu_facts, lab_exp):
    fs = cr.check_interface(gpu_facts, lab_exp)
    assert {f.check: f.status for f in fs} == {"fabric_interface": Status.ok, "fabric_ip": Status.ok}
    g2 = copy.deepcopy(gpu_facts)
    g2.links["eth1"].ipv4 = []
    assert one(cr.check_interface(g2, lab_exp), "fabric_ip").status == Status.fail
    g2.netif.exists = False
    assert one(cr.check_interface(g2, lab_exp)).status == Status.fail


def test_tcp_transport_rdma_checks_na(gpu_facts, make_exp):
    exp = make_exp(lambda d: d["fabric"].update(transport="tcp"))
    for check in (cr.check_rdma_device, cr.check_port, cr.check_gid, cr.check_rdma_cm):
        assert one(check(gpu_facts, exp)).status == Status.na
