"""RDMA device, port, GID, MTU, rdma_cm, module and interface checks on real captures.

Healthy inputs: the lab's real probe outputs (soft-RoCE) and ``real_nic_gpu1()`` (the lab gpu1 capture
with a real ConnectX host's RDMA sections). Faults: explicit edits of that real text (see healthfx)."""

from nvmeofctl.health import checks_rdma as cr
from nvmeofctl.health.common import TCP_NA
from nvmeofctl.health.model import Status

from healthfx import (REAL_NIC_IF, drop_section, edit, edit_block, edit_section, facts, host, lab, read, real_nic,
                      real_nic_gpu1, set_section, show_gids_as_probe)

OK, WARN, FAIL, NA = Status.ok, Status.warn, Status.fail, Status.na


GPU1_LINKS = ('links=[{"ifindex":0,"ifname":"rxe_eth1","port":1,"state":"ACTIVE","physical_state":"LINK_UP",'
              '"netdev":"eth1","netdev_index":3}]')  # gpu1's rdma dump: `rdma -j link show`


def without_rdma_tool(text: str) -> str:
    """A host without iproute2's rdma: the rdma dump's ``links=`` line is empty."""
    return edit_section(text, "rdma", GPU1_LINKS, "links=")


def one(findings, check=None):
    fs = [f for f in findings if check is None or f.check == check]
    assert len(fs) == 1, fs
    return fs[0]


def summary(f):
    return (f.check, f.status, f.observed, f.device)


# ---- rdma_device ---------------------------------------------------------------------------------
def test_lab_rxe_device_bound_to_the_fabric_interface(gpu1_facts, lab_exp):
    f = one(cr.check_rdma_device(gpu1_facts, lab_exp))
    assert summary(f) == ("rdma_device", OK, "rxe_eth1 on eth1", "rxe_eth1")
    assert f.expected == "rxe_eth1 on eth1"


def test_default_name_accepts_the_rxe_device_the_lab_named_rxe0(lab_exp):
    # the 6.1-kernel lab named its device rxe0 (lab/rdma-link-show.json): same capture, that name
    text = edit(lab("gpu1"), "rxe_eth1", "rxe0", count=11)
    f = one(cr.check_rdma_device(facts("gpu1", text), lab_exp))
    assert summary(f) == ("rdma_device", OK, "rxe0 on eth1 (spec default name rxe_eth1)", "rxe0")


def test_rdma_device_removed_real_capture_fails_with_soft_roce_remedy(lab_exp):
    """Real capture: gpu2 right after `rdma link delete rxe_eth1`."""
    f = one(cr.check_rdma_device(facts("gpu2", lab("gpu2", "rxe-removed")), lab_exp))
    assert summary(f) == ("rdma_device", FAIL, "absent (no RDMA devices; on eth1: none)", "rxe_eth1")
    assert f.remedy == "modprobe rdma_rxe && rdma link add rxe_eth1 type rxe netdev eth1"


def test_explicit_device_name_must_exist(gpu1_facts, make_exp):
    exp = make_exp(lambda d: host(d, "gpu1")["fabric"].update(rdma_device="mlx5_0"))
    f = one(cr.check_rdma_device(gpu1_facts, exp))
    assert summary(f) == ("rdma_device", FAIL, "absent (rxe_eth1; on eth1: rxe_eth1)", "mlx5_0")


def test_rdma_device_bound_to_another_netdev(lab_exp):
    text = edit_section(lab("gpu1"), "rdma", '"netdev":"eth1"', '"netdev":"eth0"')
    text = edit_section(text, "ib_gids rxe_eth1 1", "ndev=eth1", "ndev=eth0", count=2)
    f = one(cr.check_rdma_device(facts("gpu1", text), lab_exp))
    assert summary(f) == ("rdma_device", FAIL, "rxe_eth1 on eth0", "rxe_eth1")
    assert f.remedy == "bind the RDMA device to eth1 (soft-RoCE: rdma link delete/add) or fix the spec"


def test_without_rdma_link_output_the_gid_table_names_the_netdev(lab_exp):
    text = without_rdma_tool(lab("gpu1"))
    assert summary(one(cr.check_rdma_device(facts("gpu1", text), lab_exp))) == (
        "rdma_device", OK, "rxe_eth1 on eth1", "rxe_eth1")
    text = edit_section(text, "ib_gids rxe_eth1 1", "ndev=eth1", "ndev=eth0", count=2)
    assert summary(one(cr.check_rdma_device(facts("gpu1", text), lab_exp))) == (
        "rdma_device", FAIL, "rxe_eth1 on eth0", "rxe_eth1")


def test_real_nic_device_bound(mlx5_gpu, real_exp):
    # the netdev the borrowed `rdma link` line was renamed to is the CX-4 Lx host's own
    assert "mlx5_0 port 1 ==> eth01 (Up)" in read("real/ibdev2netdev_cx4lx_eth0x.txt")
    assert summary(one(cr.check_rdma_device(mlx5_gpu, real_exp))) == ("rdma_device", OK, "mlx5_0 on eth01", "mlx5_0")


# ---- rdma_port -------------------------------------------------------------------------------------
def test_port_active_lab_and_real_nic(gpu1_facts, lab_exp, mlx5_gpu, real_exp):
    f = one(cr.check_port(gpu1_facts, lab_exp))
    assert summary(f) == ("rdma_port", OK, "ACTIVE/LINK_UP, Ethernet", "rxe_eth1/1")
    assert f.expected == "ACTIVE/LINK_UP, Ethernet"
    # the ConnectX composite has no sysfs ib_port section: link layer unknown, not a failure
    assert summary(one(cr.check_port(mlx5_gpu, real_exp))) == ("rdma_port", OK, "ACTIVE/LINK_UP, ?", "mlx5_0/1")


def test_port_down_in_real_rdma_link_sample(mlx5_gpu, make_exp):
    """mlx5_1 of the real `rdma link` sample is DOWN/DISABLED (and PORT_DOWN in the CX-4 Lx ibv_devinfo)."""
    def m(d):
        real_nic(d)
        host(d, "gpu1")["fabric"].update(rdma_device="mlx5_1", interface="eth02")
    f = one(cr.check_port(mlx5_gpu, make_exp(m)))
    assert summary(f) == ("rdma_port", FAIL, "DOWN/DISABLED, ?", "mlx5_1/1")
    assert f.remedy == "bring eth02 up and check the cable/switch port (phys_state DISABLED)"


def test_port_down_in_rdma_link(lab_exp):
    # the state words of the real sample's down port (real/rdma_link_mlx5_vpi_..., mlx5_1)
    text = edit_section(lab("gpu1"), "rdma", '"state":"ACTIVE","physical_state":"LINK_UP"',
                        '"state":"DOWN","physical_state":"DISABLED"')
    f = one(cr.check_port(facts("gpu1", text), lab_exp))
    assert summary(f) == ("rdma_port", FAIL, "DOWN/DISABLED, Ethernet", "rxe_eth1/1")
    assert f.remedy == "bring eth1 up and check the cable/switch port (phys_state DISABLED)"


def test_port_down_in_sysfs_without_rdma_tool(lab_exp):
    text = without_rdma_tool(lab("gpu1"))
    text = edit_section(text, "ib_port rxe_eth1 1", "state=4: ACTIVE\nphys_state=5: LinkUp",
                        "state=1: DOWN\nphys_state=3: Disabled")
    assert summary(one(cr.check_port(facts("gpu1", text), lab_exp))) == (
        "rdma_port", FAIL, "DOWN/DISABLED, Ethernet", "rxe_eth1/1")


def test_port_infiniband_link_layer_fails(lab_exp):
    text = edit_section(lab("gpu1"), "ib_port rxe_eth1 1", "link_layer=Ethernet", "link_layer=InfiniBand")
    f = one(cr.check_port(facts("gpu1", text), lab_exp))
    assert summary(f) == ("rdma_port", FAIL, "ACTIVE/LINK_UP, InfiniBand", "rxe_eth1/1")
    assert f.remedy == "the port is InfiniBand: RoCE needs link_layer Ethernet (mlxconfig LINK_TYPE_P1=2)"


def test_port_without_rdma_device_is_na(lab_exp):
    f = one(cr.check_port(facts("gpu2", lab("gpu2", "rxe-removed")), lab_exp))
    assert summary(f) == ("rdma_port", NA, "no RDMA device/port (see rdma_device)", "rxe_eth1")


# ---- roce_v2_gid ----------------------------------------------------------------------------------
def test_gid_lab_index_1(gpu1_facts, lab_exp):
    f = one(cr.check_gid(gpu1_facts, lab_exp))
    assert summary(f) == ("roce_v2_gid", OK, "index 1 = 192.168.100.21 (RoCE v2, eth1)", "rxe_eth1/1")


def test_gid_real_mlx5_index_3(mlx5_gpu, real_exp):
    f = one(cr.check_gid(mlx5_gpu, real_exp))
    assert summary(f) == ("roce_v2_gid", OK, "index 3 = 10.108.164.36 (RoCE v2, eth01)", "mlx5_0/1")


def test_gid_for_another_ip_fails(gpu1_facts, make_exp):
    exp = make_exp(lambda d: host(d, "gpu1")["fabric"].update(ips=["192.168.100.29"]))
    f = one(cr.check_gid(gpu1_facts, exp))
    assert f.status == FAIL
    assert f.observed == "0:fe80:0000:0000:0000:5054:00ff:fefa:0002(RoCE v2), 1:192.168.100.21(RoCE v2)"
    assert f.remedy == "assign the fabric IP to eth1: GIDs follow the netdev's addresses"


def test_gid_only_v1_fails(real_exp):
    text = real_nic_gpu1()
    for line in ('1 fe80:0000:0000:0000:0e42:a1ff:fe40:29a0 type="RoCE v2" ndev=eth01\n',
                 '3 0000:0000:0000:0000:0000:ffff:0a6c:a424 type="RoCE v2" ndev=eth01\n'):
        text = edit_section(text, "ib_gids mlx5_0 1", line, "")  # a NIC/driver without RoCE v2 GIDs
    f = one(cr.check_gid(facts("gpu1", text), real_exp))
    assert summary(f) == ("roce_v2_gid", FAIL, "only IB/RoCE v1 GID for 10.108.164.36", "mlx5_0/1")


def test_gid_table_without_ipv4_real_sample_fails(real_exp):
    """mlx5_bond_0 of the real show_gids sample has only link-local GIDs."""
    gids = show_gids_as_probe(read("real/show_gids_hrn3_plus_mlx5_bond_no_ipv4_on_mlx5.txt"), "mlx5_bond_0")
    text = set_section(real_nic_gpu1(), "ib_gids mlx5_0 1", gids)
    f = one(cr.check_gid(facts("gpu1", text), real_exp))
    assert f.status == FAIL
    assert f.observed == ("0:fe80:0000:0000:0000:0ac0:ebff:fe8c:3b44(IB/RoCE v1), "
                          "1:fe80:0000:0000:0000:0ac0:ebff:fe8c:3b44(RoCE v2)")
    assert f.expected == "RoCE v2 GID for 10.108.164.36"


# ---- mtu / active_mtu ---------------------------------------------------------------------------------
def test_mtu_ok_and_mismatch(gpu1_facts, lab_exp, make_exp):
    fs = cr.check_mtu(gpu1_facts, lab_exp)
    assert [(f.check, f.status, f.observed) for f in fs] == [
        ("mtu", OK, "1500"), ("active_mtu", OK, "1024 at L2 MTU 1500")]
    f = one(cr.check_mtu(gpu1_facts, make_exp(lambda d: d["fabric"].update(mtu=9000))), "mtu")
    assert (f.status, f.observed, f.expected) == (FAIL, "1500", "9000")
    assert f.remedy == "ip link set eth1 mtu 9000 (switch ports too)"


def test_mtu_without_spec_value_is_the_default(gpu1_facts, make_exp):
    f = one(cr.check_mtu(gpu1_facts, make_exp(lambda d: d["fabric"].pop("mtu"))), "mtu")
    assert (f.status, f.observed, f.expected) == (OK, "1500", "1500")  # the spec's default, which rdma_link sets
    bad = edit_section(lab("gpu1"), "netif eth1", "mtu=1500", "mtu=9000")
    f = one(cr.check_mtu(facts("gpu1", bad), make_exp(lambda d: d["fabric"].pop("mtu"))), "mtu")
    assert (f.status, f.observed, f.expected) == (FAIL, "9000", "1500")


def test_mtu_on_a_tcp_fabric_is_not_judged(gpu1_facts, make_exp):
    """apply runs no rdma_link on a TCP fabric, so nothing sets the MTU: plan never changes it, nor
    may health fail it."""
    f = one(cr.check_mtu(gpu1_facts, make_exp(lambda d: d["fabric"].update(transport="tcp", mtu=9000))), "mtu")
    assert (f.status, f.observed, f.expected) == (OK, "1500", "any (nvmeofctl sets the MTU on RDMA fabrics only)")


def test_active_mtu_low_at_jumbo_warns(make_exp):
    exp = make_exp(lambda d: (real_nic(d), d["fabric"].update(mtu=9000)))
    text = edit_section(real_nic_gpu1(), f"netif {REAL_NIC_IF}", "mtu=1500", "mtu=9000")
    fs = cr.check_mtu(facts("gpu1", text), exp)
    assert one(fs, "mtu").status == OK
    a = one(fs, "active_mtu")
    assert (a.status, a.observed, a.expected, a.device) == (WARN, "1024 at L2 MTU 9000", "4096", "mlx5_0/1")
    # mlx5_0's port once the device follows the new MTU (4096 (5), as the real CX-6 Dx and CX-7 samples show)
    body = edit_block(read("real/ibv_devinfo_cx4lx_4ports_one_down.txt"), "hca_id:\tmlx5_0",
                      "active_mtu:\t\t1024 (3)", "active_mtu:\t\t4096 (5)")
    text = set_section(text, "ibv_devinfo", body)
    a = one(cr.check_mtu(facts("gpu1", text), exp), "active_mtu")
    assert (a.status, a.observed) == (OK, "4096 at L2 MTU 9000")


def test_active_mtu_unknown_without_ibv_devinfo(lab_exp):
    text = drop_section(lab("gpu1"), "ibv_devinfo")
    a = one(cr.check_mtu(facts("gpu1", text), lab_exp), "active_mtu")
    assert (a.status, a.observed) == (NA, "unknown (no ibv_devinfo or no RDMA port)")


# ---- rdma_cm ---------------------------------------------------------------------------------------
def test_rdma_cm_lab_soft_roce_mode_only(gpu1_facts, lab_exp):
    # soft-RoCE: the ToS is not judged
    assert [summary(f) for f in cr.check_rdma_cm(gpu1_facts, lab_exp)] == [
        ("rdma_cm_mode", OK, "RoCE v2", "rxe_eth1/1")]


def test_rdma_cm_real_nic_mode_and_tos(mlx5_gpu, real_exp):
    assert [summary(f) for f in cr.check_rdma_cm(mlx5_gpu, real_exp)] == [
        ("rdma_cm_mode", OK, "RoCE v2", "mlx5_0/1"), ("rdma_cm_tos", OK, "106", "mlx5_0/1")]


def test_rdma_cm_v1_default_and_tos_0(real_exp):
    # the mode a CX-4 Lx really reported before it was set (real/cma_roce_mode_query_cx4lx_v1_default.txt);
    # ToS 0 = the kernel's default_roce_tos
    mode = read("real/cma_roce_mode_query_cx4lx_v1_default.txt").strip()
    text = edit_section(real_nic_gpu1(), "rdma", "cm_mode.mlx5_0=RoCE v2", f"cm_mode.mlx5_0={mode}")
    text = edit_section(text, "rdma", "cm_tos.mlx5_0=106", "cm_tos.mlx5_0=0")
    fs = cr.check_rdma_cm(facts("gpu1", text), real_exp)
    m, t = one(fs, "rdma_cm_mode"), one(fs, "rdma_cm_tos")
    assert (m.status, m.observed) == (FAIL, "IB/RoCE v1")
    assert m.remedy == "echo 'RoCE v2' > /sys/kernel/config/rdma_cm/mlx5_0/ports/1/default_roce_mode"
    assert (t.status, t.observed, t.expected) == (WARN, "0", "106")
    assert t.remedy == "echo 106 > /sys/kernel/config/rdma_cm/mlx5_0/ports/1/default_roce_tos"


def test_rdma_cm_not_exposed_is_na(lab_exp):
    # nobody created the configfs entry: the rdma dump lists no device under rdma_cm/
    text = edit_section(lab("gpu1"), "rdma", "cm_mode.rxe_eth1=RoCE v2\ncm_tos.rxe_eth1=106\n", "")
    f = one(cr.check_rdma_cm(facts("gpu1", text), lab_exp))
    assert (f.status, f.observed) == (
        NA, "not exposed (rdma_cm configfs entry for rxe_eth1 not created; upstream kernels default to RoCE v2)")
    text = edit_section(text, "rdma_cm_configfs", "configfs=1\nrdma_cm=1", "configfs=0\nrdma_cm=0")
    text = edit_section(text, "rdma", "cm_exposed=1", "cm_exposed=0")
    f = one(cr.check_rdma_cm(facts("gpu1", text), lab_exp))
    assert f.observed == "not exposed (configfs not mounted; upstream kernels default to RoCE v2)"


# ---- kernel modules ----------------------------------------------------------------------------------
def test_modules_loaded_on_the_real_lab(gpu1_facts, tgt1_facts, lab_exp):
    g, t = one(cr.check_modules(gpu1_facts, lab_exp)), one(cr.check_modules(tgt1_facts, lab_exp))
    assert (g.status, g.observed, g.expected) == (OK, "loaded", "rdma_rxe, nvme_rdma")
    assert (t.status, t.observed, t.expected) == (OK, "loaded", "rdma_rxe, nvmet, nvmet_rdma")


def test_module_missing(lab_exp):
    text = edit_section(lab("gpu1"), "modules", "nvme_rdma\n", "")
    text = edit_section(text, "sys_module", "nvme_rdma\n", "")
    f = one(cr.check_modules(facts("gpu1", text), lab_exp))
    assert (f.status, f.observed) == (FAIL, "missing nvme_rdma")
    assert f.remedy == "modprobe -a nvme-rdma (and persist in /etc/modules-load.d)"


def test_builtin_module_counts(lab_exp):
    text = edit_section(lab("gpu1"), "modules", "nvme_rdma\n", "")  # still in /sys/module: built in
    assert one(cr.check_modules(facts("gpu1", text), lab_exp)).status == OK


def test_tcp_transport_needs_the_tcp_modules_the_lab_does_not_load(gpu1_facts, tgt1_facts, make_exp):
    exp = make_exp(lambda d: d["fabric"].update(transport="tcp", soft_roce=False))
    g, t = one(cr.check_modules(gpu1_facts, exp)), one(cr.check_modules(tgt1_facts, exp))
    assert (g.status, g.observed, g.expected) == (FAIL, "missing nvme_tcp", "nvme_tcp")
    assert g.remedy == "modprobe -a nvme-tcp (and persist in /etc/modules-load.d)"
    assert (t.status, t.observed, t.expected) == (FAIL, "missing nvmet_tcp", "nvmet, nvmet_tcp")


def test_module_list_unreadable_is_na(lab_exp):
    text = drop_section(drop_section(lab("gpu1"), "modules"), "sys_module")
    f = one(cr.check_modules(facts("gpu1", text), lab_exp))
    assert (f.status, f.observed) == (NA, "module list unreadable")


# ---- fabric interface / IP -------------------------------------------------------------------------------
ETH1_INET = ('{"family":"inet","local":"192.168.100.21","prefixlen":24,"broadcast":"192.168.100.255",'
             '"scope":"global","label":"eth1","valid_life_time":4294967295,"preferred_life_time":4294967295}')


def test_interface_and_ip_ok(gpu1_facts, lab_exp):
    assert [summary(f) for f in cr.check_interface(gpu1_facts, lab_exp)] == [
        ("fabric_interface", OK, "operstate up", "eth1"), ("fabric_ip", OK, "192.168.100.21", "eth1")]


def test_fabric_ip_missing(lab_exp):
    text = edit_section(lab("gpu1"), "ip_addr", ETH1_INET, "")
    f = one(cr.check_interface(facts("gpu1", text), lab_exp), "fabric_ip")
    assert (f.status, f.observed, f.expected) == (FAIL, "none", "192.168.100.21")
    assert f.remedy == "ip addr add 192.168.100.21/24 dev eth1 (or `nvmeofctl apply`)"


def test_fabric_interface_down_or_absent(lab_exp):
    text = edit_section(lab("gpu1"), "netif eth1", "operstate=up", "operstate=down")
    f = one(cr.check_interface(facts("gpu1", text), lab_exp), "fabric_interface")
    assert (f.status, f.observed) == (FAIL, "operstate down")
    text = edit_section(lab("gpu1"), "netif eth1", "exists=1", "exists=0")
    f = one(cr.check_interface(facts("gpu1", text), lab_exp))
    assert summary(f) == ("fabric_interface", FAIL, "absent", "eth1")


def test_tcp_transport_rdma_checks_na(gpu1_facts, make_exp):
    exp = make_exp(lambda d: d["fabric"].update(transport="tcp"))
    for check, name in ((cr.check_rdma_device, "rdma_device"), (cr.check_port, "rdma_port"),
                        (cr.check_gid, "roce_v2_gid"), (cr.check_rdma_cm, "rdma_cm_mode")):
        f = one(check(gpu1_facts, exp))
        assert (f.check, f.status, f.observed) == (name, NA, TCP_NA)
    assert TCP_NA == "not applicable: fabric transport is tcp"
