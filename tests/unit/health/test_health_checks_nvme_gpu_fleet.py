"""NVMe-oF host/target, GPU and fleet checks on real captures.

NVMe and nvmet inputs: the lab's real probe outputs (gpu1: two live controllers, train + ckpt;
gpu2: train; tgt1: port 1 with both subsystems), whose ``nvme_host`` / ``nvmet`` sections are the
collection's own dumps (``F<TAB>path<TAB>value`` lines of sysfs, ``./path=value`` lines of configfs). GPU inputs: the real H100 node
(``h100_gpu_node()``) and real ``nvidia-smi topo -m`` outputs of 8xH100 / 8xA100 / 4xRTX 6000 servers.
Faults are explicit edits of that text (healthfx)."""

from nvmeofctl.health import checks_fleet as cf
from nvmeofctl.health import checks_gpu as cg
from nvmeofctl.health import checks_nvme as cn
from nvmeofctl.health.checks import run_checks
from nvmeofctl.health.model import Status
from nvmeofctl.resources import load_module_utils

from healthfx import (CKPT, GPU1_HOSTID, GPU1_HOSTNQN, GPU2_HOSTID, GPU2_HOSTNQN, TRAIN, add_section, drop_lines,
                      edit, edit_section, facts, h100_gpu_node, insert_lines, lab, pin_identity, read, section,
                      set_section,
                      sysfs_as_dump)

OK, WARN, FAIL, NA = Status.ok, Status.warn, Status.fail, Status.na
# the host NQN nvme-cli's package baked into the lab image (lab/sysfs-nvme0.txt, 6.1-kernel run; FACTS.md)
BAKED_HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:f4a3064a-a702-4134-ab62-ed4d001ffe8b"
NVME0 = "F\t/sys/class/nvme/nvme0"  # the nvme_host dump's attribute lines of controller nvme0


def get(findings, check, device=None):
    fs = [x for x in findings if x.check == check and (device is None or x.device == device)]
    assert len(fs) == 1, fs
    return fs[0]


def rows(findings):
    return [(f.check, f.device, f.status, f.observed) for f in findings]


# ---- NVMe host side --------------------------------------------------------------------------------
def test_real_gpu1_nvme_healthy(gpu1_facts, lab_exp):
    assert rows(cn.check_nvme_host(gpu1_facts, lab_exp)) == [
        ("nvme_controller", TRAIN, OK, "nvme0 live rdma 192.168.100.11:4420"),
        ("nvme_reconnect", TRAIN, OK, "ctrl_loss_tmo=-1 reconnect_delay=5 kato=5"),
        ("nvme_controller", CKPT, OK, "nvme1 live rdma 192.168.100.11:4420"),
        ("nvme_reconnect", CKPT, OK, "ctrl_loss_tmo=-1 reconnect_delay=5 kato=5"),
        ("nvme_unexpected", None, OK, "none"),
        # the spec's default iopolicy (numa), which apply passes to nvme_host
        ("nvme_iopolicy", TRAIN, OK, "numa"),
        ("nvme_iopolicy", CKPT, OK, "numa"),
        ("host_nqn", None, OK, GPU1_HOSTNQN),
        ("host_id", None, OK, GPU1_HOSTID),
    ]


def test_controller_missing_real_capture(lab_exp):
    """Real capture: gpu2 after its RDMA device was deleted; the controller is gone."""
    f = get(cn.check_nvme_host(facts("gpu2", lab("gpu2", "rxe-removed")), lab_exp), "nvme_controller")
    assert (f.status, f.observed, f.device) == (FAIL, "not connected", TRAIN)
    assert f.remedy == ("nvmeofctl apply (or nvme connect -t rdma -a 192.168.100.11 -s 4420 "
                        "-n nqn.2024-01.io.nvmeofctl.lab:train)")


def test_one_of_two_controllers_missing(lab_exp):
    # nvme1's 23 dump lines: its directory, 16 attributes, its namespace path (directory + 5 attributes)
    fs = cn.check_nvme_host(facts("gpu1", drop_lines(lab("gpu1"), "nvme_host", "/sys/class/nvme/nvme1", 23)), lab_exp)
    assert get(fs, "nvme_controller", TRAIN).status == OK
    f = get(fs, "nvme_controller", CKPT)
    assert (f.status, f.observed) == (FAIL, "not connected")


def test_controller_connecting(lab_exp):
    text = edit_section(lab("gpu1"), "nvme_host", "nvme0/state\tlive", "nvme0/state\tconnecting")
    f = get(cn.check_nvme_host(facts("gpu1", text), lab_exp), "nvme_controller", TRAIN)
    assert (f.status, f.observed) == (FAIL, "nvme0 connecting")
    assert f.remedy == ("controller not live: reconnecting, the target at 192.168.100.11 does not answer for this "
                        "path (target or link down, or the export removed); it comes back by itself when the "
                        "target does, and nvmeofctl apply disconnects it if the spec dropped the export")


def test_controller_being_deleted_says_what_the_kernel_and_the_tool_do(lab_exp):
    text = edit_section(lab("gpu1"), "nvme_host", "nvme0/state\tlive", "nvme0/state\tdeleting")
    f = get(cn.check_nvme_host(facts("gpu1", text), lab_exp), "nvme_controller", TRAIN)
    assert (f.status, f.observed) == (FAIL, "nvme0 deleting")
    assert f.remedy.startswith("controller being deleted: the kernel finishes it when its outstanding I/O ends")


def test_controller_state_unknown_keeps_the_generic_hint(lab_exp):
    text = edit_section(lab("gpu1"), "nvme_host", "nvme0/state\tlive", "nvme0/state\tnew")
    f = get(cn.check_nvme_host(facts("gpu1", text), lab_exp), "nvme_controller", TRAIN)
    assert f.remedy == "controller not live: check the target and the fabric path to 192.168.100.11"


def test_controller_wrong_transport(lab_exp):
    text = edit_section(lab("gpu1"), "nvme_host", "nvme0/transport\trdma", "nvme0/transport\ttcp")
    f = get(cn.check_nvme_host(facts("gpu1", text), lab_exp), "nvme_controller", TRAIN)
    assert (f.status, f.observed) == (FAIL, "nvme0 tcp 192.168.100.11:4420")


def test_controller_wrong_address(lab_exp):
    text = edit_section(lab("gpu1"), "nvme_host", "nvme0/address\ttraddr=192.168.100.11",
                        "nvme0/address\ttraddr=192.168.100.7")
    f = get(cn.check_nvme_host(facts("gpu1", text), lab_exp), "nvme_controller", TRAIN)
    assert (f.status, f.observed) == (FAIL, "nvme0 rdma 192.168.100.7:4420")


def test_unexpected_controllers(lab_exp):
    text = lab("gpu1")
    nvme0 = "\n".join(x for x in section(text, "nvme_host").split("\n") if "/sys/class/nvme/nvme0" in x)
    other = read("lab/sysfs-nvme0.txt")  # a real controller to a subsystem this spec does not have
    add = [
        sysfs_as_dump("nvme2", other),
        # the same sysfs with the discovery controller's NQN/type
        sysfs_as_dump("nvme3", edit(edit(other, "subsysnqn=nqn.2024-01.io.lab:gpu-pool-1",
                                         "subsysnqn=nqn.2014-08.org.nvmexpress.discovery"),
                                    "cntrltype=io", "cntrltype=discovery")),
        # a local PCIe drive: transport pcie, address = its PCI function
        sysfs_as_dump("nvme4", edit(edit(other, "transport=rdma", "transport=pcie"),
                                    "address=traddr=192.168.100.1,trsvcid=4420", "address=0000:00:04.0")),
        # a second path to train over TCP (the lab serves both; lab/nvme-list-subsys-tcp.json)
        # (its 23 lines name /nvme0 29 times: the namespace's path names it twice)
        edit(edit(nvme0, "/nvme0", "/nvme5", 29), "nvme5/transport\trdma", "nvme5/transport\ttcp"),
    ]
    for body in add:
        text = insert_lines(text, "nvme_host", "D\t/sys/class/nvme-subsystem/nvme-subsys0", body)
    fs = cn.check_nvme_host(facts("gpu1", text), lab_exp)
    assert get(fs, "nvme_controller", TRAIN).status == OK
    u = get(fs, "nvme_unexpected")
    assert (u.status, u.observed) == (WARN, "nvme2 nqn.2024-01.io.lab:gpu-pool-1 rdma 192.168.100.1")


def test_reconnect_policy(lab_exp, make_exp):
    exp = make_exp(lambda d: d["fabric"]["reconnect"].update(ctrl_loss_tmo=600, reconnect_delay=10))
    f = get(cn.check_nvme_host(facts("gpu1", lab("gpu1")), exp), "nvme_reconnect", TRAIN)
    assert (f.status, f.observed, f.expected) == (
        WARN, "ctrl_loss_tmo=-1 reconnect_delay=5 kato=5", "ctrl_loss_tmo=600 reconnect_delay=10 kato=5")
    text = edit_section(lab("gpu1"), "nvme_host", f"nvme0/ctrl_loss_tmo\toff\n{NVME0}/reconnect_delay\t5",
                        f"nvme0/ctrl_loss_tmo\t600\n{NVME0}/reconnect_delay\t10")
    assert get(cn.check_nvme_host(facts("gpu1", text), exp), "nvme_reconnect", TRAIN).status == OK
    # the 6.1 lab's controller really ran with ctrl_loss_tmo=60 (lab/sysfs-nvme0.txt)
    text = edit_section(lab("gpu1"), "nvme_host", "nvme0/ctrl_loss_tmo\toff", "nvme0/ctrl_loss_tmo\t60")
    f = get(cn.check_nvme_host(facts("gpu1", text), lab_exp), "nvme_reconnect", TRAIN)
    assert (f.status, f.observed) == (WARN, "ctrl_loss_tmo=60 reconnect_delay=5 kato=5")
    # no reconnect policy in the spec: the spec's defaults, which apply passes (forever, every 10 s)
    defaults = make_exp(lambda d: d["fabric"].pop("reconnect"))
    f = get(cn.check_nvme_host(facts("gpu1", lab("gpu1")), defaults), "nvme_reconnect", TRAIN)
    assert (f.status, f.observed, f.expected) == (
        WARN, "ctrl_loss_tmo=-1 reconnect_delay=5 kato=5", "ctrl_loss_tmo=-1 reconnect_delay=10 kato=5")


def test_expected_ctrl_loss_tmo_is_what_the_kernel_shows():
    """nvme-fabrics keeps max_reconnects = ceil(ctrl_loss_tmo / reconnect_delay) and sysfs shows
    max_reconnects * reconnect_delay ("off" for -1): 600 every 7 s is 86 attempts, shown as 602."""
    nh = load_module_utils("nvme_host")
    assert nh.expected_ctrl_loss_tmo(600, 7) == 602
    assert nh.expected_ctrl_loss_tmo(60, 5) == 60  # lab/sysfs-nvme0.txt: ctrl_loss_tmo=60 reconnect_delay=5
    assert nh.expected_ctrl_loss_tmo(-1, 5) == -1  # lab-real gpu1: ctrl_loss_tmo=off


def test_rounded_ctrl_loss_tmo_is_converged(make_exp):
    """Spec 600 s every 7 s: the kernel shows 602, which plan calls converged; health must agree."""
    exp = make_exp(lambda d: d["fabric"]["reconnect"].update(ctrl_loss_tmo=600, reconnect_delay=7))
    text = edit_section(lab("gpu1"), "nvme_host", f"nvme0/ctrl_loss_tmo\toff\n{NVME0}/reconnect_delay\t5",
                        f"nvme0/ctrl_loss_tmo\t602\n{NVME0}/reconnect_delay\t7")
    f = get(cn.check_nvme_host(facts("gpu1", text), exp), "nvme_reconnect", TRAIN)
    assert (f.status, f.observed, f.expected) == (
        OK, "ctrl_loss_tmo=602 reconnect_delay=7 kato=5", "ctrl_loss_tmo=602 (spec 600) reconnect_delay=7 kato=5")
    # (tests/unit/plan/test_one_translation.py: plan calls the same controller converged)
    # a literal 600 next to delay 7 is not what this kernel would show: warned
    text = edit(text, "nvme0/ctrl_loss_tmo\t602", "nvme0/ctrl_loss_tmo\t600")
    assert get(cn.check_nvme_host(facts("gpu1", text), exp), "nvme_reconnect", TRAIN).status == WARN


def test_iopolicy(gpu1_facts, make_exp):
    numa = make_exp(lambda d: d["fabric"].update(iopolicy="numa"))
    assert [(f.device, f.status) for f in cn.check_nvme_host(gpu1_facts, numa) if f.check == "nvme_iopolicy"] == [
        (TRAIN, OK), (CKPT, OK)]
    rr = make_exp(lambda d: d["fabric"].update(iopolicy="round-robin"))
    f = get(cn.check_nvme_host(gpu1_facts, rr), "nvme_iopolicy", TRAIN)
    assert (f.status, f.observed, f.expected) == (WARN, "numa", "round-robin")
    assert f.remedy == "echo round-robin > /sys/class/nvme-subsystem/nvme-subsys0/iopolicy (persist via udev rule)"
    text = edit_section(lab("gpu1"), "nvme_host", "F\t/sys/class/nvme-subsystem/nvme-subsys0/iopolicy\tnuma\n", "")
    f = get(cn.check_nvme_host(facts("gpu1", text), rr), "nvme_iopolicy", TRAIN)
    assert (f.status, f.observed) == (NA, "no iopolicy (native NVMe multipath off)")
    text = drop_lines(lab("gpu1"), "nvme_host", "/sys/class/nvme-subsystem/nvme-subsys1", 3)
    f = get(cn.check_nvme_host(facts("gpu1", text), rr), "nvme_iopolicy", CKPT)
    assert (f.status, f.observed) == (NA, "subsystem not present (see nvme_controller)")


def test_host_identity(make_exp):
    pinned = make_exp(pin_identity)
    assert {(f.check, f.status) for f in cn.check_nvme_host(facts("gpu1", lab("gpu1")), pinned)
            if f.check.startswith("host_")} == {("host_nqn", OK), ("host_id", OK)}
    # /etc/nvme/hostnqn still the one the image baked in
    text = edit_section(lab("gpu1"), "nvme_host", f"/etc/nvme/hostnqn\t{GPU1_HOSTNQN}",
                        f"/etc/nvme/hostnqn\t{BAKED_HOSTNQN}")
    f = get(cn.check_nvme_host(facts("gpu1", text), pinned), "host_nqn")
    assert (f.status, f.observed, f.expected) == (FAIL, BAKED_HOSTNQN, GPU1_HOSTNQN)
    text = edit_section(lab("gpu1"), "nvme_host", f"F\t/etc/nvme/hostid\t{GPU1_HOSTID}\n", "")
    f = get(cn.check_nvme_host(facts("gpu1", text), pinned), "host_id")
    assert (f.status, f.observed) == (FAIL, "/etc/nvme/hostid missing")
    # the controller was connected before the NQN was fixed
    text = edit_section(lab("gpu1"), "nvme_host", f"nvme0/hostnqn\t{GPU1_HOSTNQN}", f"nvme0/hostnqn\t{BAKED_HOSTNQN}")
    f = get(cn.check_nvme_host(facts("gpu1", text), pinned), "host_nqn_in_use")
    assert (f.status, f.observed) == (WARN, "nvme0 connected with another host NQN")


# ---- nvmet target side ---------------------------------------------------------------------------------
def test_real_target_healthy(tgt1_facts, make_exp):
    assert rows(cn.check_nvmet(tgt1_facts, make_exp(pin_identity))) == [
        ("nvmet_port", "1", OK, "port 1 rdma 192.168.100.11:4420"),
        ("nvmet_subsystem", TRAIN, OK, "linked, ns 1, 2 host(s)"),
        ("nvmet_subsystem", CKPT, OK, "linked, ns 1, 1 host(s)"),
    ]


def test_nvmet_no_listener_on_the_spec_port(tgt1_facts, make_exp):
    f = get(cn.check_nvmet(tgt1_facts, make_exp(lambda d: d["fabric"].update(port=4421))), "nvmet_port")
    assert (f.status, f.observed, f.expected) == (FAIL, "1:rdma 192.168.100.11:4420", "rdma 192.168.100.11:4421")


def test_nvmet_subsystem_problems(make_exp):
    text = drop_lines(lab("tgt1"), "nvmet", f"./ports/1/subsystems/{CKPT} -> ", 1)
    text = edit_section(text, "nvmet", f"{CKPT}/attr_allow_any_host=0", f"{CKPT}/attr_allow_any_host=1")
    text = drop_lines(text, "nvmet", f"./subsystems/{CKPT}/allowed_hosts/{GPU1_HOSTNQN} -> ", 1)
    fs = cn.check_nvmet(facts("tgt1", text), make_exp(pin_identity))
    f = get(fs, "nvmet_subsystem", CKPT)
    assert (f.status, f.observed) == (
        FAIL, "not linked to the listening port; allow_any_host=1; 1 GPU node NQN(s) not allowed")
    assert get(fs, "nvmet_subsystem", TRAIN).status == OK


def test_nvmet_namespace_disabled_or_subsystem_absent(tgt1_facts, lab_exp):
    text = edit_section(lab("tgt1"), "nvmet", f"{CKPT}/namespaces/1/enable=1", f"{CKPT}/namespaces/1/enable=0")
    f = get(cn.check_nvmet(facts("tgt1", text), lab_exp), "nvmet_subsystem", CKPT)
    assert (f.status, f.observed) == (FAIL, "no enabled namespace")
    text = drop_lines(lab("tgt1"), "nvmet", f"./subsystems/{CKPT}/", 16)
    f = get(cn.check_nvmet(facts("tgt1", text), lab_exp), "nvmet_subsystem", CKPT)
    assert (f.status, f.observed) == (FAIL, "absent")


def test_nvmet_absent(lab_exp):
    # nvmet not loaded: no /sys/kernel/config/nvmet, the dump prints nothing
    text = set_section(edit_section(lab("tgt1"), "nvmet_configfs", "present=1", "present=0"), "nvmet", "")
    (f,) = cn.check_nvmet(facts("tgt1", text), lab_exp)
    assert (f.check, f.status, f.observed) == ("nvmet_port", FAIL, "nvmet configfs absent")
    assert f.remedy == "modprobe -a nvmet nvmet-rdma && nvmeofctl apply"


def test_nvme_checks_by_role(tgt1_facts, gpu1_facts, lab_exp):
    assert cn.check_nvme_host(tgt1_facts, lab_exp) == []
    assert cn.check_nvmet(gpu1_facts, lab_exp) == []


# ---- GPU ------------------------------------------------------------------------------------------------
def _gpu_exp(make_exp, dev=None):
    """The lab spec plus the H100 node; ``dev``: a RoCE fabric whose hosts use that RDMA device,
    else a TCP fabric (the node has no RDMA NIC)."""
    def m(d):
        d["fabric"]["soft_roce"] = False
        if dev is None:
            d["fabric"]["transport"] = "tcp"
        d["hosts"].append({"name": "h100", "role": "gpu_node",
                           "ssh": {"address": "10.0.0.9", "port": 22, "user": "root"},
                           "fabric": {"interface": "eth0", "ips": ["192.168.100.31"]}})
        for h in d["hosts"]:
            if dev:
                h["fabric"]["rdma_device"] = dev
    return make_exp(m)


def with_topo(sample):
    return set_section(h100_gpu_node(), "nvidia_topo", read(f"real/{sample}"))


def test_real_h100_node_without_rdma_nic(make_exp):
    fs = cg.check_gpus(facts("h100", h100_gpu_node()), _gpu_exp(make_exp))
    assert [(f.check, f.status, f.observed) for f in fs] == [
        ("gpus", OK, "1x NVIDIA H100 80GB HBM3"),
        ("gpu_nic_affinity", NA, "no RDMA NIC: GPU-NIC affinity not applicable"),
    ]


def test_not_a_gpu_host(gpu1_facts, tgt1_facts, lab_exp):
    fs = cg.check_gpus(gpu1_facts, lab_exp)
    assert [(f.check, f.status, f.observed) for f in fs] == [
        ("gpus", NA, "not a GPU host (no nvidia-smi)"), ("gpu_nic_affinity", NA, "not a GPU host (no nvidia-smi)")]
    assert cg.check_gpus(tgt1_facts, lab_exp) == []


def test_gpus_missing(make_exp):
    text = edit_section(h100_gpu_node(), "nvidia_smi_L",
                        "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-94750347-6fec-801c-906b-28afe1c3248b)\n", "")
    fs = cg.check_gpus(facts("h100", text), _gpu_exp(make_exp))
    assert [(f.check, f.status, f.observed) for f in fs] == [
        ("gpus", FAIL, "nvidia-smi lists no GPU"), ("gpu_nic_affinity", NA, "no GPUs")]


def test_soft_roce_gpu_node_has_no_pcie_position(lab_exp):
    """The lab's gpu1 capture plus the real H100 node's nvidia-smi sections."""
    text = lab("gpu1")
    gpu = h100_gpu_node()
    for s in ("nvidia_smi_L", "nvidia_smi_pci", "nvidia_topo", "gpu_numa"):
        text = add_section(text, s, section(gpu, s), before="ts t1")
    f = get(cg.check_gpus(facts("gpu1", text), lab_exp), "gpu_nic_affinity")
    assert (f.status, f.observed) == (NA, "soft-RoCE device rxe_eth1 has no PCIe position")


def test_affinity_h100_pix_node_sys(make_exp):
    f = facts("h100", with_topo("nvidia_smi_topo_m_8xH100_NV18_8nic_pix_node_sys_spaces.txt"))
    fs = [x for x in cg.check_gpus(f, _gpu_exp(make_exp, dev="mlx5_0")) if x.check == "gpu_nic_affinity"]
    assert [(x.device, x.status) for x in fs] == [
        ("GPU0", OK), ("GPU1", WARN), ("GPU2", WARN), ("GPU3", WARN),
        ("GPU4", FAIL), ("GPU5", FAIL), ("GPU6", FAIL), ("GPU7", FAIL)]
    assert get(fs, "gpu_nic_affinity", "GPU1").observed == "GPU1-mlx5_0: NODE; nearest RDMA NIC mlx5_1 (PIX)"
    assert get(fs, "gpu_nic_affinity", "GPU0").observed == "GPU0-mlx5_0: PIX"


def test_affinity_a100_storage_nic_is_sys(make_exp):
    f = facts("h100", with_topo("nvidia_smi_topo_m_8xA100_NV12_10nic_dgxa100like_tabs.txt"))
    fs = [x for x in cg.check_gpus(f, _gpu_exp(make_exp, dev="mlx5_8")) if x.check == "gpu_nic_affinity"]
    assert len(fs) == 8 and {x.status for x in fs} == {FAIL}
    fs = cg.check_gpus(f, _gpu_exp(make_exp, dev="mlx5_0"))
    g0 = get(fs, "gpu_nic_affinity", "GPU0")
    assert (g0.status, g0.observed) == (OK, "GPU0-mlx5_0: PXB")


def test_affinity_device_not_in_topology(make_exp):
    f = facts("h100", with_topo("nvidia_smi_topo_m_4xRTX6000Ada_4nic_node_sys_pix_spaces.txt"))
    a = get(cg.check_gpus(f, _gpu_exp(make_exp, dev="mlx5_9")), "gpu_nic_affinity")
    assert (a.status, a.observed) == (WARN, "mlx5_9 not in nvidia-smi topo -m (mlx5_0, mlx5_1, mlx5_2, mlx5_3)")


# ---- fleet ---------------------------------------------------------------------------------------------
def test_real_gpu_nodes_have_unique_identities(gpu1_facts, gpu2_facts, tgt1_facts, lab_exp):
    fs = cf.check_unique_identity({"tgt1": tgt1_facts, "gpu1": gpu1_facts, "gpu2": gpu2_facts}, lab_exp)
    assert [(f.host, f.check, f.status, f.observed) for f in fs] == [
        ("gpu1", "host_nqn_unique", OK, "unique"), ("gpu2", "host_nqn_unique", OK, "unique"),
        ("gpu1", "host_id_unique", OK, "unique"), ("gpu2", "host_id_unique", OK, "unique")]


def test_cloned_hostnqn_names_both_hosts(gpu1_facts, lab_exp):
    # gpu2 as a clone of gpu1's image: its /etc/nvme carries gpu1's NQN and ID
    text = edit_section(lab("gpu2"), "nvme_host", f"/etc/nvme/hostnqn\t{GPU2_HOSTNQN}",
                        f"/etc/nvme/hostnqn\t{GPU1_HOSTNQN}")
    text = edit_section(text, "nvme_host", f"/etc/nvme/hostid\t{GPU2_HOSTID}", f"/etc/nvme/hostid\t{GPU1_HOSTID}")
    fs = cf.check_unique_identity({"gpu1": gpu1_facts, "gpu2": facts("gpu2", text)}, lab_exp)
    assert [(f.host, f.check, f.status, f.observed) for f in fs] == [
        ("gpu1", "host_nqn_unique", FAIL, "same as gpu2"), ("gpu2", "host_nqn_unique", FAIL, "same as gpu1"),
        ("gpu1", "host_id_unique", FAIL, "same as gpu2"), ("gpu2", "host_id_unique", FAIL, "same as gpu1")]
    assert fs[0].remedy.startswith("generate a per-node value")


def test_identity_falls_back_to_live_controllers(gpu1_facts, lab_exp):
    text = drop_lines(lab("gpu2"), "nvme_host", "F\t/etc/nvme/host", 2)  # /etc/nvme/host* absent
    fs = cf.check_unique_identity({"gpu1": gpu1_facts, "gpu2": facts("gpu2", text)}, lab_exp)
    assert {f.status for f in fs} == {OK}  # gpu2's controller still carries its own NQN/ID
    gone = drop_lines(lab("gpu2", "rxe-removed"), "nvme_host", "F\t/etc/nvme/host", 2)
    fs = cf.check_unique_identity({"gpu1": gpu1_facts, "gpu2": facts("gpu2", gone)}, lab_exp)
    assert [(f.host, f.status, f.observed) for f in fs if f.check == "host_nqn_unique"] == [
        ("gpu1", OK, "unique"), ("gpu2", NA, "no host NQN/ID on this node")]


def _fleet(tgt1=None, gpu1=None, gpu2=None):
    return {"tgt1": facts("tgt1", tgt1 or lab("tgt1")), "gpu1": facts("gpu1", gpu1 or lab("gpu1")),
            "gpu2": facts("gpu2", gpu2 or lab("gpu2"))}


def test_mtu_consistent_and_not(lab_exp):
    fs = cf.check_fabric_consistency(_fleet(), lab_exp)
    assert [(f.host, f.status, f.observed) for f in fs if f.check == "mtu_consistent"] == [
        ("tgt1", OK, "1500"), ("gpu1", OK, "1500"), ("gpu2", OK, "1500")]
    fs = cf.check_fabric_consistency(_fleet(tgt1=edit_section(lab("tgt1"), "netif eth1", "mtu=1500", "mtu=9000")),
                                     lab_exp)
    assert [(f.host, f.status, f.observed) for f in fs if f.check == "mtu_consistent"] == [
        ("tgt1", FAIL, "9000 (fleet: tgt1=9000, gpu1=1500, gpu2=1500)"),
        ("gpu1", OK, "1500 (fleet: tgt1=9000, gpu1=1500, gpu2=1500)"),
        ("gpu2", OK, "1500 (fleet: tgt1=9000, gpu1=1500, gpu2=1500)")]


def test_active_mtu_consistency(lab_exp):
    fs = cf.check_fabric_consistency(_fleet(), lab_exp)
    assert {(f.host, f.status) for f in fs if f.check == "active_mtu_consistent"} == {
        ("tgt1", OK), ("gpu1", OK), ("gpu2", OK)}
    tgt = edit_section(lab("tgt1"), "ibv_devinfo", "active_mtu:\t\t1024 (3)", "active_mtu:\t\t4096 (5)")
    fs = cf.check_fabric_consistency(_fleet(tgt1=tgt), lab_exp)
    a = [(f.host, f.status, f.observed) for f in fs if f.check == "active_mtu_consistent"]
    assert a[0] == ("tgt1", WARN, "4096 (fleet: tgt1=4096, gpu1=1024, gpu2=1024)")


def test_link_speed(lab_exp):
    # virtio reports speed -1 and soft-RoCE's 2.5 Gb/s is not a link speed: unknown everywhere
    fs = cf.check_fabric_consistency(_fleet(), lab_exp)
    assert {(f.status, f.observed) for f in fs if f.check == "link_speed"} == {
        (NA, "speed unknown here or on the peers")}
    g = edit_section(lab("gpu1"), "netif eth1", "speed=-1", "speed=100000")
    fs = cf.check_fabric_consistency(_fleet(gpu1=g, tgt1=edit_section(lab("tgt1"), "netif eth1", "speed=-1",
                                                                     "speed=25000")), lab_exp)
    sp = {f.host: (f.status, f.observed) for f in fs if f.check == "link_speed"}
    assert sp == {"tgt1": (WARN, "25 Gb/s vs gpu1 100"), "gpu1": (WARN, "100 Gb/s vs tgt1 25"),
                  "gpu2": (NA, "speed unknown here or on the peers")}
    fs = cf.check_fabric_consistency(_fleet(gpu1=g, tgt1=edit_section(lab("tgt1"), "netif eth1", "speed=-1",
                                                                     "speed=100000")), lab_exp)
    assert {f.host: f.status for f in fs if f.check == "link_speed" and f.host != "gpu2"} == {"tgt1": OK, "gpu1": OK}


# ---- run_checks -----------------------------------------------------------------------------------------
def test_unreachable_host_one_finding_others_checked(gpu1_facts, lab_exp):
    fs = run_checks({"gpu1": gpu1_facts}, lab_exp, unreachable={"tgt1": "ssh 127.0.0.1:54115: timed out after 15s"})
    assert [(f.check, f.status, f.observed) for f in fs if f.host == "tgt1"] == [
        ("ssh", Status.unreachable, "ssh 127.0.0.1:54115: timed out after 15s")]
    assert get([f for f in fs if f.host == "gpu1"], "nvme_controller", TRAIN).status == OK


def test_probe_error_is_a_fail(gpu1_facts, lab_exp):
    fs = run_checks({"gpu1": gpu1_facts}, lab_exp, probe_errors={"gpu2": "probe output incomplete"})
    (p,) = [f for f in fs if f.host == "gpu2"]
    assert (p.check, p.status, p.observed) == ("probe", FAIL, "probe output incomplete")


def test_buggy_check_becomes_one_finding(gpu1_facts, lab_exp, monkeypatch):
    from nvmeofctl.health import checks

    def boom(f, e):
        raise KeyError("x")

    monkeypatch.setattr(checks, "HOST_CHECKS", [boom, *checks.HOST_CHECKS])
    fs = run_checks({"gpu1": gpu1_facts}, lab_exp)
    b = get(fs, "boom")
    assert (b.host, b.status, b.observed) == ("gpu1", FAIL, "internal error: KeyError: 'x'")
    assert get(fs, "rdma_port").status == OK


def test_every_check_runs_on_each_real_capture(lab_exp):
    """host x check pairs the three real captures produce (checks that judge nothing return no finding)."""
    fs = run_checks(_fleet(), lab_exp)
    per_host = {h: {f.check for f in fs if f.host == h} for h in ("tgt1", "gpu1", "gpu2")}
    common = {"kernel_modules", "fabric_interface", "fabric_ip", "rdma_device", "rdma_port", "roce_v2_gid", "mtu",
              "active_mtu", "rdma_cm_mode", "dscp_trust", "dscp_priority", "pfc", "ecn", "global_pause", "nic_drops",
              "link_errors", "rdma_drops", "transport_retries", "cqe_errors", "congestion", "lossless_class_traffic",
              "mtu_consistent", "active_mtu_consistent", "link_speed"}
    gpu = {"nvme_controller", "nvme_reconnect", "nvme_unexpected", "nvme_iopolicy", "host_nqn", "host_id", "gpus",
           "gpu_nic_affinity", "host_nqn_unique", "host_id_unique"}
    assert per_host == {"tgt1": common | {"nvmet_port", "nvmet_subsystem"}, "gpu1": common | gpu, "gpu2": common | gpu}
    assert [(f.host, f.check, f.status.value) for f in fs if f.status not in (OK, NA)] == []
