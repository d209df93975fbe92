import shutil
import subprocess
from pathlib import Path

import pytest

from nvmeofctl.facts.probe import PROBE_SCRIPT, parse_probe_output, probe_command

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "health" / "probe"


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
    f = parse_probe_output("stor1", (FIX / "lab-target.txt").read_text())
    assert f.complete and f.kernel == "6.12.95+deb12-amd64" and f.window_s == pytest.approx(3.007, abs=0.01)
    assert f.module_loaded("rdma_rxe") and f.module_loaded("nvmet-rdma")
    assert f.links["eth1"].ipv4 == ["192.168.100.1"] and f.netif.mtu == 1500 and f.netif.speed_mbps is None
    dev = f.ib_devices["rxe0"]
    assert dev.is_soft and dev.ports[1].state == "ACTIVE" and dev.ports[1].phys_state == "LINK_UP"
    assert dev.ports[1].active_mtu == 1024
    assert [g.ipv4 for g in dev.ports[1].gids] == [None, "192.168.100.1"]
    assert f.rdma_devs_on("eth1") == ["rxe0"]
    assert f.hw_counters[("rxe0", 1)].deltas()["sent_pkts"] == 73383
    assert f.rdma_stat[("rxe0", 1)].present
    assert f.ethtool.deltas()["rx_queue_0_packets"] == 40
    assert f.pause is not None and not f.pause.supported
    assert f.rdma_cm_configfs and f.rdma_cm == {}
    assert [(p.id, p.trtype, p.subsystems) for p in f.nvmet_ports] == [
        ("1", "rdma", ["nqn.2024-01.io.lab:gpu-pool-1"]), ("2", "tcp", ["nqn.2024-01.io.lab:gpu-pool-1"])]
    assert f.nvmet_subsystems["nqn.2024-01.io.lab:gpu-pool-1"].allowed_hosts
    assert not f.nvidia_smi and f.mlnx_qos is None and f.ecn is None


def test_lab_gpu_probe():
    f = parse_probe_output("gpu1", (FIX / "lab-gpu1.txt").read_text())
    assert f.complete
    (c,) = f.nvme_ctrls
    assert (c.state, c.transport, c.traddr) == ("live", "rdma", "192.168.100.1")
    assert f.nvme_subsystems[0].iopolicy == "numa"
    assert f.etc_hostnqn.endswith("f4a3064a-a702-4134-ab62-ed4d001ffe8b")


def test_h100_probe():
    f = parse_probe_output("h100", (FIX / "h100-gpu-node.txt").read_text(errors="surrogateescape"))
    assert f.complete and f.nvidia_smi and [g.name for g in f.gpus] == ["NVIDIA H100 80GB HBM3"]
    assert f.gpus[0].bus_id == "0000:00:06.0" and f.gpus[0].numa_node is None
    assert f.topology.gpus == ["GPU0"] and f.topology.nics == {}
    assert f.ib_devices == {} and f.nvme_ctrls == [] and f.configfs is False
    assert f.ethtool is not None and not f.ethtool.t0


def test_truncated_probe_is_incomplete():
    text = (FIX / "lab-target.txt").read_text()
    cut = text[: text.index("### netif")]
    f = parse_probe_output("stor1", cut)
    assert not f.complete and f.netif is None and "rxe0" in f.ib_devices


def test_garbage_does_not_raise():
    f = parse_probe_output("x", "### ib_port\n### hw_counters rxe0 x t0\nfoo\n### nvme_ctrl\n### ts t0\nabc\n")
    assert not f.complete
