"""The probe script and its parser, fed real probe outputs (provenance: tests/fixtures/health/PROVENANCE.md):

- ``probe/lab-real/{tgt1,gpu1}-healthy.txt``: the probe's stdout captured over SSH from the provisioned
  lab VMs (Debian 12, kernel 6.12.95+deb12-amd64, soft-RoCE ``rxe_eth1``), 2026-11-27, with the module
  dump sections (``nvme_host``, ``nvmet``, ``rdma``) plan captured for real from the same lab
  (``tests/fixtures/health/build_probe_v2.py``);
- ``gpu-node/h100-node-probe.txt``: a real H100 node (Ubuntu 24.04, no RDMA NIC, no NVMe, no configfs),
  written as the probe sections that hold the same outputs by ``tests/fixtures/health/gpu_probe.py``.

Expected values are literals read from those captures (counter deltas are t1 - t0 of the capture's lines).
"""

import shutil
import sys
import subprocess
from pathlib import Path

import pytest

from nvmeofctl.facts import hoststate
from nvmeofctl.facts.probe import STATE_DIR, module_dumps, parse_probe_output, probe_command, probe_script
from nvmeofctl.resources import load_module_utils

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "health"
sys.path.insert(0, str(FIX))
from gpu_probe import h100_gpu_node  # noqa: E402
import build_probe_v2  # noqa: E402
LAB_REAL = FIX / "probe" / "lab-real"
PLAN_REAL = FIX.parent / "plan" / "lab-real"

TRAIN = "nqn.2024-01.io.nvmeofctl.lab:train"
CKPT = "nqn.2024-01.io.nvmeofctl.lab:ckpt"
GPU1_HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:bce6f754-ea93-5cb5-89d7-177f392bcd4b"
GPU2_HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:452a16fc-bb18-5cfa-ba28-8e97503bc225"


def lab(host: str) -> str:
    return (LAB_REAL / f"{host}-healthy.txt").read_text(encoding="utf-8")


def test_probe_command_quotes_interface():
    assert probe_command("eth1", 3) == "bash -s -- eth1 3"
    assert probe_command("a b;rm", 2.6) == "bash -s -- 'a b;rm' 3"
    assert probe_command(None, 0) == "bash -s -- '' 0"


def test_probe_script_is_read_only():
    script = probe_script("eth1")
    own = script.replace(module_dumps("eth1"), "")  # health's own part
    banned = ["mkdir", "modprobe", "rdma link add", "echo 1 >", "> /sys", ">/sys", "dhchap", "mlnx_qos -i \"$IF\" --"]
    for word in banned:
        assert word not in own, word
    for word in banned[:6]:
        assert word not in script, word


def test_probe_embeds_the_module_dumps_plan_runs():
    """One reader per domain: the probe runs the collection's own dump commands, each in a subshell
    reading /dev/null (as facts/hoststate.py does), so plan and health read the same state."""
    script = probe_script("eth1")
    nh, nvmet, rdma = (load_module_utils(n) for n in ("nvme_host", "nvmet", "rdma"))
    for header, command in (("nvme_host", nh.dump_command(state_dir=STATE_DIR)), ("nvmet", nvmet.DUMP_COMMAND),
                            ("rdma", rdma.dump_command("eth1"))):
        assert f"sec {header}\n( {command}\n) </dev/null\n" in script
        assert command in hoststate.host_script("gpu_node" if header == "nvme_host" else "target", "eth1")
    assert STATE_DIR == "/etc/nvmeofctl" and "/etc/nvmeofctl/initiator-managed.json" in script
    # secrets: both dumps hash DH-HMAC-CHAP values on the host (sha256sum), never print them
    assert script.count("sha256sum") == 2
    # no interface in the spec: no rdma_link dump (nothing to observe), the rest unchanged
    assert "sec rdma\n" not in probe_script(None) and "sec nvme_host\n" in probe_script(None)


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_probe_script_runs_locally_and_parses():
    """The script is valid bash and ends with the end marker even on a host without RDMA."""
    out = subprocess.run(["bash", "-s", "--", "lo", "0"], input=probe_script("lo"), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0
    f = parse_probe_output("local", out.stdout)
    assert f.complete and f.kernel and f.interface == "lo"
    assert f.netif is not None and f.netif.exists and f.netif.mtu
    assert f.window_s is not None and f.window_s >= 0
    # the module dumps ran too (in their subshells) and were parsed by the modules' parsers
    assert f.nvme_host is not None and f.nvmet is not None and f.rdma["interface"] == "lo"


def test_lab_target_probe():
    f = parse_probe_output("tgt1", lab("tgt1"))
    # ts t0 1795818544.456067346, t1 1795818549.496128407
    assert f.complete and f.kernel == "6.12.95+deb12-amd64" and f.window_s == pytest.approx(5.040, abs=0.001)
    # /proc/modules says nvmet_rdma: the dashed name must match too
    assert f.module_loaded("rdma_rxe") and f.module_loaded("nvmet-rdma") and not f.module_loaded("nvme-rdma")
    # netif: mtu=1500, speed=-1 (virtio_net reports no speed)
    assert f.links["eth1"].ipv4 == ["192.168.100.11"] and f.netif.mtu == 1500 and f.netif.speed_mbps is None
    dev = f.ib_devices["rxe_eth1"]
    assert dev.is_soft and dev.ports[1].state == "ACTIVE" and dev.ports[1].phys_state == "LINK_UP"
    assert dev.ports[1].active_mtu == 1024
    # GID 0 is the link-local fe80::, GID 1 is ::ffff:c0a8:640b (module_utils/rdma.py parse_gid_table)
    assert [(g["index"], g["ipv4"], g["type"], g["ndev"]) for g in dev.ports[1].gids] == [
        (0, None, "RoCE v2", "eth1"), (1, "192.168.100.11", "RoCE v2", "eth1")]
    assert f.rdma_devs_on("eth1") == ["rxe_eth1"]
    assert f.hw_counters[("rxe_eth1", 1)].deltas()["sent_pkts"] == 24  # 22978 -> 23002
    assert f.rdma_stat[("rxe_eth1", 1)].present
    assert f.rdma_stat[("rxe_eth1", 1)].deltas()["rcvd_pkts"] == 24  # 127580 -> 127604
    assert f.ethtool.deltas()["tx_kicks"] == 23 and f.ethtool.deltas()["rx_drops"] == 0  # 11985 -> 12008
    assert f.pause is not None and not f.pause.supported  # "netlink error: Operation not supported"
    assert f.rdma_cm_configfs and f.rdma_cm == {
        ("rxe_eth1", 1): {"default_roce_mode": "RoCE v2", "default_roce_tos": "106"}}
    assert f.nvmet_configfs
    assert [(pid, p["trtype"], p["subsystems"]) for pid, p in f.nvmet["ports"].items()] == [
        ("1", "rdma", [CKPT, TRAIN])]
    assert f.nvmet["subsystems"][CKPT]["allowed_hosts"] == [GPU1_HOSTNQN]
    assert f.nvmet["subsystems"][TRAIN]["allowed_hosts"] == [GPU2_HOSTNQN, GPU1_HOSTNQN]
    assert f.nvmet["subsystems"][TRAIN]["namespaces"]["1"]["enable"] is True
    # DH-HMAC-CHAP keys: digests only (the dump hashed them on tgt1); gpu2's host has no key set
    gpu1_host = f.nvmet["hosts"][GPU1_HOSTNQN]
    assert gpu1_host["dhchap_key_set"] and len(gpu1_host["dhchap_key_hash"]) == 64
    assert not f.nvmet["hosts"][GPU2_HOSTNQN]["dhchap_key_set"]
    assert [(x.dev, x.port, x.state, x.physical_state, x.netdev) for x in f.rdma_links] == [
        ("rxe_eth1", 1, "ACTIVE", "LINK_UP", "eth1")]
    assert f.nvme_ctrls == [] and f.etc_hostnqn is None
    assert not f.nvidia_smi and f.mlnx_qos is None and f.ecn is None


def test_lab_gpu_probe():
    f = parse_probe_output("gpu1", lab("gpu1"))
    assert f.complete and not f.nvmet_configfs and f.nvmet == {"hosts": {}, "subsystems": {}, "ports": {}}
    assert [(c.name, c.state, c.transport, c.traddr, c.subsysnqn, c.ctrl_loss_tmo) for c in f.nvme_ctrls] == [
        ("nvme0", "live", "rdma", "192.168.100.11", TRAIN, -1), ("nvme1", "live", "rdma", "192.168.100.11", CKPT, -1)]
    assert [(nqn, s["name"], s["iopolicy"]) for nqn, s in f.nvme_host["subsystems"].items()] == [
        (TRAIN, "nvme-subsys0", "numa"), (CKPT, "nvme-subsys1", "numa")]
    assert f.etc_hostnqn == GPU1_HOSTNQN and f.etc_hostnqn.endswith("bce6f754-ea93-5cb5-89d7-177f392bcd4b")
    # the capture's controllers predate hashed dumps: "set" is a flag, no digest (nvme_host.secret_digest)
    assert [(c.dhchap_secret_set, c.dhchap_secret_sha256) for c in f.nvme_ctrls] == [(True, None), (True, None)]


@pytest.mark.parametrize("host,role", [("tgt1", "target"), ("gpu1", "gpu_node"), ("gpu2", "gpu_node")])
def test_probe_and_plan_observe_the_same_state(host, role):
    """The same dump text, the same parser: health's observed state is plan's (facts/hoststate.py)."""
    sections = hoststate.split_sections((PLAN_REAL / f"{host}.txt").read_text())
    plan = hoststate.HostState(host, role, "eth1", True, sections=sections).observed()
    f = parse_probe_output(host, lab(host))
    assert f.rdma == plan["rdma"]
    if role == "target":
        assert f.nvmet == plan["nvmet"]
    else:
        assert f.nvme_host == plan["nvme_host"]


def test_probe_fixtures_are_built_from_the_real_captures():
    """probe/lab-real/*.txt are exactly what build_probe_v2.py makes of the real captures."""
    for name in build_probe_v2.CAPTURES:
        assert (LAB_REAL / f"{name}.txt").read_text(encoding="utf-8") == build_probe_v2.build(name), name


def test_h100_probe():
    f = parse_probe_output("h100", h100_gpu_node())
    assert f.complete and f.nvidia_smi and [g.name for g in f.gpus] == ["NVIDIA H100 80GB HBM3"]
    # nvidia-smi pci.bus_id 00000000:00:06.0; sysfs numa_node -1
    assert f.gpus[0].bus_id == "0000:00:06.0" and f.gpus[0].numa_node is None
    assert f.topology.gpus == ["GPU0"] and f.topology.nics == {}
    assert f.ib_devices == {} and f.nvme_ctrls == [] and f.configfs is False
    assert f.modules == {"nvidia_uvm", "nvidia"} and f.kernel == "6.18.44-fc-v657-gpu"
    # no counters were captured on that node: no ethtool window, no ts window
    assert f.ethtool is None and f.window_s is None and f.hw_counters == {}


def test_truncated_probe_is_incomplete():
    text = lab("tgt1")
    cut = text[: text.index("### netif")]
    f = parse_probe_output("tgt1", cut)
    assert not f.complete and f.netif is None and "rxe_eth1" in f.ib_devices


def test_garbage_does_not_raise():
    f = parse_probe_output("x", "### ib_port\n### hw_counters rxe0 x t0\nfoo\n### nvme_ctrl\n### ts t0\nabc\n"
                                "### nvme_host\nF\tx\n### nvmet\n./a=b\n### rdma\nlinks=[{\"port\":\"x\"}]\nmtu=q\n")
    assert not f.complete
    assert f.rdma["links"] == [] and f.rdma["mtu"] is None and f.nvme_host["controllers"] == {}
