"""The probe script and its parser, fed real probe outputs (provenance: tests/fixtures/health/PROVENANCE.md):

- ``probe/lab-real/{tgt1,gpu1}-healthy.txt``: ``PROBE_SCRIPT`` stdout captured over SSH from the provisioned
  lab VMs (Debian 12, kernel 6.12.95+deb12-amd64, soft-RoCE ``rxe_eth1``), 2026-11-27;
- ``gpu-node/h100-node-probe.txt``: a real H100 node (Ubuntu 24.04, no RDMA NIC, no NVMe, no configfs),
  written as the probe sections that hold the same outputs by ``tests/fixtures/health/gpu_probe.py``.

Expected values are literals read from those captures (counter deltas are t1 - t0 of the capture's lines).
"""

import shutil
import sys
import subprocess
from pathlib import Path

import pytest

from nvmeofctl.facts.probe import PROBE_SCRIPT, parse_probe_output, probe_command

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "health"
sys.path.insert(0, str(FIX))
from gpu_probe import h100_gpu_node  # noqa: E402
LAB_REAL = FIX / "probe" / "lab-real"

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
    banned = ["mkdir", "modprobe", "rdma link add", "echo 1 >", "> /sys", ">/sys", "dhchap", "mlnx_qos -i \"$IF\" --"]
    for word in banned:
        assert word not in PROBE_SCRIPT, word


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_probe_script_runs_locally_and_parses():
    """The script is valid bash and ends with the end marker even on a host without RDMA."""
    out = subprocess.run(["bash", "-s", "--", "lo", "0"], input=PROBE_SCRIPT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0
    f = parse_probe_output("local", out.stdout)
    assert f.complete and f.kernel and f.interface == "lo"
    assert f.netif is not None and f.netif.exists and f.netif.mtu
    assert f.window_s is not None and f.window_s >= 0


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
    # GID 0 is the link-local fe80::, GID 1 is ::ffff:c0a8:640b
    assert [g.ipv4 for g in dev.ports[1].gids] == [None, "192.168.100.11"]
    assert f.rdma_devs_on("eth1") == ["rxe_eth1"]
    assert f.hw_counters[("rxe_eth1", 1)].deltas()["sent_pkts"] == 24  # 22978 -> 23002
    assert f.rdma_stat[("rxe_eth1", 1)].present
    assert f.rdma_stat[("rxe_eth1", 1)].deltas()["rcvd_pkts"] == 24  # 127580 -> 127604
    assert f.ethtool.deltas()["tx_kicks"] == 23 and f.ethtool.deltas()["rx_drops"] == 0  # 11985 -> 12008
    assert f.pause is not None and not f.pause.supported  # "netlink error: Operation not supported"
    assert f.rdma_cm_configfs and f.rdma_cm == {
        ("rxe_eth1", 1): {"default_roce_mode": "RoCE v2", "default_roce_tos": "106"}}
    assert [(p.id, p.trtype, p.subsystems) for p in f.nvmet_ports] == [("1", "rdma", [CKPT, TRAIN])]
    assert f.nvmet_subsystems[CKPT].allowed_hosts == [GPU1_HOSTNQN]
    assert f.nvmet_subsystems[TRAIN].allowed_hosts == [GPU2_HOSTNQN, GPU1_HOSTNQN]
    assert f.nvme_ctrls == [] and f.etc_hostnqn is None
    assert not f.nvidia_smi and f.mlnx_qos is None and f.ecn is None


def test_lab_gpu_probe():
    f = parse_probe_output("gpu1", lab("gpu1"))
    assert f.complete and not f.nvmet
    assert [(c.name, c.state, c.transport, c.traddr, c.subsysnqn) for c in f.nvme_ctrls] == [
        ("nvme0", "live", "rdma", "192.168.100.11", TRAIN), ("nvme1", "live", "rdma", "192.168.100.11", CKPT)]
    assert [(s.name, s.nqn, s.iopolicy) for s in f.nvme_subsystems] == [
        ("nvme-subsys0", TRAIN, "numa"), ("nvme-subsys1", CKPT, "numa")]
    assert f.etc_hostnqn == GPU1_HOSTNQN and f.etc_hostnqn.endswith("bce6f754-ea93-5cb5-89d7-177f392bcd4b")


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
    f = parse_probe_output("x", "### ib_port\n### hw_counters rxe0 x t0\nfoo\n### nvme_ctrl\n### ts t0\nabc\n")
    assert not f.complete
