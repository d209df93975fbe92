import copy

from nvmeofctl.facts import gpu as gpu_p
from nvmeofctl.facts.nvme import NvmeCtrl
from nvmeofctl.health import checks_fleet as cf
from nvmeofctl.health import checks_gpu as cg
from nvmeofctl.health import checks_nvme as cn
from nvmeofctl.health.checks import run_checks
from nvmeofctl.health.model import Status

from healthfx import read

NQN = "nqn.2024-01.io.lab:gpu-pool-1"


def get(findings, check, device=None):
    fs = [x for x in findings if x.check == check and (device is None or x.device == device)]
    assert len(fs) == 1, fs
    return fs[0]


# ---- NVMe host side ----------------------------------------------------------------------------
def test_lab_gpu_nvme_healthy(gpu_facts, lab_exp):
    fs = cn.check_nvme_host(gpu_facts, lab_exp)
    assert {f.check: f.status for f in fs} == {
        "nvme_controller": Status.ok, "nvme_reconnect": Status.ok, "nvme_unexpected": Status.ok,
        "nvme_iopolicy": Status.ok, "host_nqn": Status.ok, "host_id": Status.ok}


def test_controller_missing(gpu_facts, lab_exp):
    gpu_facts.nvme_ctrls = []
    f = get(cn.check_nvme_host(gpu_facts, lab_exp), "nvme_controller")
    assert f.status == Status.fail and f.observed == "not connected" and "-a 192.168.100.1 -s 4420" in f.remedy


def test_controller_connecting(gpu_facts, lab_exp):
    gpu_facts.nvme_ctrls[0].state = "connecting"
    f = get(cn.check_nvme_host(gpu_facts, lab_exp), "nvme_controller")
    assert f.status == Status.fail and "connecting" in f.observed


def test_controller_wrong_transport(gpu_facts, lab_exp):
    gpu_facts.nvme_ctrls[0].transport = "tcp"
    f = get(cn.check_nvme_host(gpu_facts, lab_exp), "nvme_controller")
    assert f.status == Status.fail and "tcp" in f.observed


def test_controller_wrong_address(gpu_facts, lab_exp):
    gpu_facts.nvme_ctrls[0].traddr = "192.168.100.7"
    assert get(cn.check_nvme_host(gpu_facts, lab_exp), "nvme_controller").status == Status.fail


def test_multipath_second_path_is_unexpected(gpu_facts, lab_exp):
    extra = copy.deepcopy(gpu_facts.nvme_ctrls[0])
    extra.name, extra.transport = "nvme1", "tcp"
    other = NvmeCtrl("nvme2", "rdma", "192.168.100.1", "4420", "live", "nqn.2024-01.io.lab:other")
    disc = NvmeCtrl("nvme3", "rdma", "192.168.100.1", "4420", "live", "nqn.2014-08.org.nvmexpress.discovery")
    pcie = NvmeCtrl("nvme4", "pcie", None, None, "live", "nqn.2014.08.org.nvmexpress:local")
    gpu_facts.nvme_ctrls += [extra, other, disc, pcie]
    fs = cn.check_nvme_host(gpu_facts, lab_exp)
    assert get(fs, "nvme_controller").status == Status.ok
    u = get(fs, "nvme_unexpected")
    assert u.status == Status.warn and "nqn.2024-01.io.lab:other" in u.observed
    assert "nvme4" not in u.observed and "nvme3" not in u.observed


def test_reconnect_policy(gpu_facts, make_exp):
    exp = make_exp(lambda d: d["fabric"]["reconnect"].update(ctrl_loss_tmo=-1, reconnect_delay=10))
    f = get(cn.check_nvme_host(gpu_facts, exp), "nvme_reconnect")
    assert f.status == Status.warn and "ctrl_loss_tmo=60" in f.observed and "ctrl_loss_tmo=-1" in f.expected
    gpu_facts.nvme_ctrls[0].ctrl_loss_tmo, gpu_facts.nvme_ctrls[0].reconnect_delay = -1, 10  # sysfs "off"
    assert get(cn.check_nvme_host(gpu_facts, exp), "nvme_reconnect").status == Status.ok


def test_iopolicy(gpu_facts, make_exp):
    exp = make_exp(lambda d: d["fabric"].update(iopolicy="queue-depth"))
    f = get(cn.check_nvme_host(gpu_facts, exp), "nvme_iopolicy")
    assert f.status == Status.warn and "nvme-subsys0/iopolicy" in f.remedy
    gpu_facts.nvme_subsystems[0].iopolicy = None
    assert get(cn.check_nvme_host(gpu_facts, exp), "nvme_iopolicy").status == Status.na


def test_host_identity(gpu_facts, lab_exp):
    gpu_facts.etc_hostnqn = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555"
    fs = cn.check_nvme_host(gpu_facts, lab_exp)
    assert get(fs, "host_nqn").status == Status.fail
    gpu_facts.etc_hostid = None
    assert get(cn.check_nvme_host(gpu_facts, lab_exp), "host_id").status == Status.fail
    gpu_facts.nvme_ctrls[0].hostnqn = "nqn.2014-08.org.nvmexpress:uuid:other"
    assert get(cn.check_nvme_host(gpu_facts, lab_exp), "host_nqn_in_use").status == Status.warn


# ---- nvmet target side -------------------------------------------------------------------------
def test_lab_target_nvmet_healthy(target_facts, lab_exp):
    fs = cn.check_nvmet(target_facts, lab_exp)
    assert get(fs, "nvmet_port").status == Status.ok and get(fs, "nvmet_subsystem").status == Status.ok


def test_nvmet_no_listener(target_facts, make_exp):
    exp = make_exp(lambda d: d["fabric"].update(port=4421))
    f = get(cn.check_nvmet(target_facts, exp), "nvmet_port")
    assert f.status == Status.fail and "1:rdma 192.168.100.1:4420" in f.observed


def test_nvmet_subsystem_problems(target_facts, lab_exp):
    target_facts.nvmet_ports[0].subsystems = []
    s = target_facts.nvmet_subsystems[NQN]
    s.allow_any_host, s.allowed_hosts = True, []
    f = get(cn.check_nvmet(target_facts, lab_exp), "nvmet_subsystem")
    assert f.status == Status.fail
    for word in ("not linked", "allow_any_host=1", "not allowed"):
        assert word in f.observed
    del target_facts.nvmet_subsystems[NQN]
    assert get(cn.check_nvmet(target_facts, lab_exp), "nvmet_subsystem").observed == "absent"


def test_nvmet_absent(target_facts, lab_exp):
    target_facts.nvmet, target_facts.nvmet_ports, target_facts.nvmet_subsystems = False, [], {}
    f = get(cn.check_nvmet(target_facts, lab_exp), "nvmet_port")
    assert f.status == Status.fail and "modprobe -a nvmet nvmet-rdma" in f.remedy


def test_nvme_checks_by_role(target_facts, gpu_facts, lab_exp):
    assert cn.check_nvme_host(target_facts, lab_exp) == []
    assert cn.check_nvmet(gpu_facts, lab_exp) == []


# ---- GPU ---------------------------------------------------------------------------------------
def _gpu_exp(make_exp, name="h100", iface="eth0", dev=None):
    def m(d):
        d["fabric"]["soft_roce"] = False
        d["hosts"].append({"name": name, "role": "gpu_node", "ssh": {"address": "10.0.0.9", "port": 22, "user": "root"},
                           "fabric": {"interface": iface, "ips": ["172.16.0.2"], **({"rdma_device": dev} if dev else {})}})
    return make_exp(m)


def test_h100_without_rdma_nic(h100_facts, make_exp):
    fs = cg.check_gpus(h100_facts, _gpu_exp(make_exp))
    assert get(fs, "gpus").status == Status.ok and get(fs, "gpus").observed == "1x NVIDIA H100 80GB HBM3"
    a = get(fs, "gpu_nic_affinity")
    assert a.status == Status.na and a.observed == "no RDMA NIC: GPU-NIC affinity not applicable"


def test_not_a_gpu_host(gpu_facts, lab_exp):
    fs = cg.check_gpus(gpu_facts, lab_exp)
    assert all(f.status == Status.na and f.observed == "not a GPU host (no nvidia-smi)" for f in fs)


def test_gpus_missing(h100_facts, make_exp):
    h100_facts.gpus = []
    assert get(cg.check_gpus(h100_facts, _gpu_exp(make_exp)), "gpus").status == Status.fail


def _with_topo(facts, sample, dev):
    from nvmeofctl.facts import rdma as rdma_p
    facts.topology = gpu_p.parse_topo(read(f"real/{sample}"))
    facts.ib_devices = {dev: rdma_p.IbDevice(dev, driver="mlx5_core", pci="0000:0c:00.0")}
    return facts


def test_affinity_h100_pix_node_sys(h100_facts, make_exp):
    f = _with_topo(h100_facts, "nvidia_smi_topo_m_8xH100_NV18_8nic_pix_node_sys_spaces.txt", "mlx5_0")
    fs = cg.check_gpus(f, _gpu_exp(make_exp, dev="mlx5_0"))
    st = {x.device: x.status for x in fs if x.check == "gpu_nic_affinity"}
    assert st["GPU0"] == Status.ok and st["GPU1"] == Status.warn and st["GPU4"] == Status.fail
    assert len(st) == 8
    assert "nearest RDMA NIC mlx5_1 (PIX)" in get(fs, "gpu_nic_affinity", "GPU1").observed


def test_affinity_a100_storage_nic_is_sys(h100_facts, make_exp):
    f = _with_topo(h100_facts, "nvidia_smi_topo_m_8xA100_NV12_10nic_dgxa100like_tabs.txt", "mlx5_8")
    fs = cg.check_gpus(f, _gpu_exp(make_exp, dev="mlx5_8"))
    assert all(x.status == Status.fail for x in fs if x.check == "gpu_nic_affinity")
    f = _with_topo(h100_facts, "nvidia_smi_topo_m_8xA100_NV12_10nic_dgxa100like_tabs.txt", "mlx5_0")
    fs = cg.check_gpus(f, _gpu_exp(make_exp, dev="mlx5_0"))
    assert get(fs, "gpu_nic_affinity", "GPU0").status == Status.ok  # PXB


def test_affinity_device_not_in_topology(h100_facts, make_exp):
    f = _with_topo(h100_facts, "nvidia_smi_topo_m_4xRTX6000Ada_4nic_node_sys_pix_spaces.txt", "mlx5_9")
    assert get(cg.check_gpus(f, _gpu_exp(make_exp, dev="mlx5_9")), "gpu_nic_affinity").status == Status.warn


# ---- fleet -------------------------------------------------------------------------------------
def _two_gpus(make_exp, gpu_facts):
    def m(d):
        g2 = copy.deepcopy(d["hosts"][1])
        g2.update(name="gpu2", host_nqn="nqn.2014-08.org.nvmexpress:uuid:22222222-0000-4000-8000-000000000002",
                  host_id="22222222-0000-4000-8000-000000000002")
        g2["fabric"]["ips"] = ["192.168.100.3"]
        d["hosts"].append(g2)
        d["subsystems"][0]["allowed_gpu_nodes"].append("gpu2")
    exp = make_exp(m)
    g2 = copy.deepcopy(gpu_facts)
    g2.host = "gpu2"
    return exp, {"gpu1": gpu_facts, "gpu2": g2}


def test_duplicate_hostnqn_names_both_hosts(make_exp, gpu_facts):
    exp, facts = _two_gpus(make_exp, gpu_facts)  # gpu2 is a clone: same /etc/nvme/hostnqn + hostid
    fs = cf.check_unique_identity(facts, exp)
    g1, g2 = get([f for f in fs if f.host == "gpu1"], "host_nqn_unique"), get([f for f in fs if f.host == "gpu2"], "host_nqn_unique")
    assert g1.status == g2.status == Status.fail
    assert g1.observed == "same as gpu2" and g2.observed == "same as gpu1"
    assert all(f.status == Status.fail for f in fs if f.check == "host_id_unique")
    facts["gpu2"].etc_hostnqn = "nqn.2014-08.org.nvmexpress:uuid:22222222-0000-4000-8000-000000000002"
    facts["gpu2"].etc_hostid = "22222222-0000-4000-8000-000000000002"
    assert all(f.status == Status.ok for f in cf.check_unique_identity(facts, exp))


def test_mtu_inconsistent(make_exp, gpu_facts, target_facts, lab_exp):
    target_facts.netif.mtu = 9000
    fs = cf.check_fabric_consistency({"stor1": target_facts, "gpu1": gpu_facts}, lab_exp)
    mt = [f for f in fs if f.check == "mtu_consistent"]
    assert any(f.status == Status.fail for f in mt)


def test_link_speed(make_exp, gpu_facts, target_facts, lab_exp):
    gpu_facts.netif.speed_mbps, target_facts.netif.speed_mbps = 100000, 25000
    fs = cf.check_fabric_consistency({"stor1": target_facts, "gpu1": gpu_facts}, lab_exp)
    sp = {f.host: f for f in fs if f.check == "link_speed"}
    assert sp["gpu1"].status == Status.warn and "stor1 25" in sp["gpu1"].observed
    target_facts.netif.speed_mbps = 100000
    fs = cf.check_fabric_consistency({"stor1": target_facts, "gpu1": gpu_facts}, lab_exp)
    assert all(f.status == Status.ok for f in fs if f.check == "link_speed")


# ---- run_checks --------------------------------------------------------------------------------
def test_unreachable_host_one_finding_others_checked(gpu_facts, lab_exp):
    fs = run_checks({"gpu1": gpu_facts}, lab_exp, unreachable={"stor1": "ssh 127.0.0.1:2201: timed out after 15s"})
    stor = [f for f in fs if f.host == "stor1"]
    assert [(f.check, f.status) for f in stor] == [("ssh", Status.unreachable)]
    assert any(f.host == "gpu1" and f.check == "nvme_controller" and f.status == Status.ok for f in fs)


def test_buggy_check_becomes_one_finding(gpu_facts, lab_exp, monkeypatch):
    from nvmeofctl.health import checks

    def boom(f, e):
        raise KeyError("x")

    monkeypatch.setattr(checks, "HOST_CHECKS", [boom, *checks.HOST_CHECKS])
    fs = run_checks({"gpu1": gpu_facts}, lab_exp)
    assert any(f.check == "boom" and "internal error" in f.observed for f in fs)
    assert any(f.check == "rdma_port" for f in fs)
