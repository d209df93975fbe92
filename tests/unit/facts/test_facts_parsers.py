import pytest

from nvmeofctl.facts import gpu, net, nvme, perftest
from nvmeofctl.resources import load_module_utils


# ---- mlnx_qos ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,trust,pfc",
    [
        ("mlnx_qos_cx5_trust_dscp_pfc3_dcbx_fw.txt", "dscp", [3]),
        ("mlnx_qos_att_netarbiter_eth4_trust_dscp_pfc3.txt", "dscp", [3]),
        ("mlnx_qos_centos12_ens6_trust_pcp_pfc_off.txt", "pcp", []),
        ("mlnx_qos_centos12_ens6_trust_dscp_pfc_off.txt", "dscp", []),
        ("mlnx_qos_ens14f0_trust_dscp_pfc3_modified_dscp2prio.txt", "dscp", [3]),
        ("mlnx_qos_ens14f0_trust_pcp_pfc3.txt", "pcp", [3]),
        ("mlnx_qos_husky_rdma0_trust_dscp_TRUNCATED.txt", "dscp", None),
    ],
)
def test_mlnx_qos_variants(fx, name, trust, pfc):
    q = net.parse_mlnx_qos(fx(f"real/{name}"))
    assert q.trust == trust
    assert q.pfc_enabled == pfc


def test_mlnx_qos_dscp2prio_default_and_modified(fx):
    q = net.parse_mlnx_qos(fx("real/mlnx_qos_cx5_trust_dscp_pfc3_dcbx_fw.txt"))
    assert q.dscp2prio[26] == 3 and q.dscp2prio[0] == 0 and len(q.dscp2prio) == 64
    assert q.dcbx_mode == "Firmware controlled" and q.pfc_buffer == [0, 0, 0, 1, 0, 0, 0, 0]
    m = net.parse_mlnx_qos(fx("real/mlnx_qos_ens14f0_trust_dscp_pfc3_modified_dscp2prio.txt"))
    assert m.dscp2prio[30] == 6 and m.dscp2prio[48] == 6 and m.dscp2prio[26] == 3
    assert m.pfc_buffer == [0, 2, 5, 7, 1, 2, 3, 6]
    pcp = net.parse_mlnx_qos(fx("real/mlnx_qos_centos12_ens6_trust_pcp_pfc_off.txt"))
    assert pcp.dscp2prio == {}
    tab = net.parse_mlnx_qos(fx("real/mlnx_qos_husky_rdma0_trust_dscp_TRUNCATED.txt"))
    assert tab.dscp2prio[26] == 3


# ---- ethtool ----------------------------------------------------------------------------------
def test_ethtool_s_truncated_healthy(fx):
    s = net.parse_ethtool_stats(fx("real/ethtool_S_cx4lx_ubuntu1804_k4.15_healthy_TRUNCATED.txt"))
    assert len(s) == 23 and s["tx_queue_stopped"] == 0 and "rx_discards_phy" not in s


@pytest.mark.parametrize("name", ["ethtool_S_cx6dx_k5.15_xdp_overload_nonzero_only.txt",
                                  "ethtool_S_cx6dx_k6.5_xdp_overload_nonzero_only.txt"])
def test_ethtool_s_overload(fx, name):
    s = net.parse_ethtool_stats(fx(f"real/{name}"))
    assert s["rx_discards_phy"] > 10**10 and s["rx_out_of_buffer"] > 0 and s["rx_prio0_discards"] > 0
    assert s["tx_global_pause"] > 0 and "NIC statistics" not in s


def test_ethtool_pause():
    p = net.parse_ethtool_pause("Pause parameters for ens1f0np0:\nAutonegotiate:\toff\nRX:\t\ton\nTX:\t\toff\n")
    assert p.supported and p.rx is True and p.tx is False
    n = net.parse_ethtool_pause("Pause parameters for eth1:\nCannot get device pause settings: Operation not supported")
    assert not n.supported


def test_ecn_lines():
    e = net.parse_ecn("roce_np/3=1\nroce_np/0=0\nroce_rp/3=1\njunk\n")
    assert e == {"roce_np": {3: True, 0: False}, "roce_rp": {3: True}}


def test_ip_json_merges_link_and_addr():
    link = '[{"ifindex":3,"ifname":"eth1","mtu":9000,"operstate":"UP","link_type":"ether"}]'
    addr = '[{"ifindex":3,"ifname":"eth1","mtu":9000,"addr_info":[{"family":"inet","local":"192.168.50.11","prefixlen":24},{"family":"inet6","local":"fe80::1"}]}]'
    links = net.parse_ip_json(link, addr)
    assert links["eth1"].mtu == 9000 and links["eth1"].ipv4 == ["192.168.50.11"]


# ---- nvidia-smi -------------------------------------------------------------------------------
def test_topo_a100_tabs(fx):
    t = gpu.parse_topo(fx("real/nvidia_smi_topo_m_8xA100_NV12_10nic_dgxa100like_tabs.txt"))
    assert len(t.gpus) == 8 and len(t.nics) == 10
    assert t.relation("GPU0", "mlx5_0") == "PXB" and t.relation("GPU0", "mlx5_8") == "SYS"
    assert t.relation("GPU7", "mlx5_7") == "PXB"
    assert t.numa_affinity["GPU2"] == "1" and t.cpu_affinity["GPU0"] == "48-63,176-191"


def test_topo_h100_spaces(fx):
    t = gpu.parse_topo(fx("real/nvidia_smi_topo_m_8xH100_NV18_8nic_pix_node_sys_spaces.txt"))
    assert len(t.gpus) == 8 and t.nics["NIC7"] == "mlx5_7"
    assert t.relation("GPU3", "mlx5_3") == "PIX" and t.relation("GPU3", "mlx5_0") == "NODE"
    assert t.relation("GPU3", "mlx5_4") == "SYS" and t.relation("GPU0", "mlx5_0") == "PIX"
    assert t.matrix["NIC7"]["NIC7"] == "X"


def test_topo_rtx_spaces(fx):
    t = gpu.parse_topo(fx("real/nvidia_smi_topo_m_4xRTX6000Ada_4nic_node_sys_pix_spaces.txt"))
    assert t.relation("GPU0", "mlx5_0") == "NODE" and t.relation("GPU2", "mlx5_0") == "SYS"


def test_topo_h100_node_without_nic_with_ansi(fx):
    raw = fx("gpu-node/h100-node-probe.txt").split("== topo\n", 1)[1].split("\n== ", 1)[0]
    assert "\x1b[4m" in raw
    t = gpu.parse_topo(raw)
    assert t.gpus == ["GPU0"] and t.nics == {} and t.cpu_affinity["GPU0"] == "0-15"


def test_topo_error_text():
    assert gpu.parse_topo("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.") is None


def test_nvidia_smi_l_and_pci(fx):
    raw = fx("gpu-node/h100-node-probe.txt").split("== nvidia-smi\n", 1)[1]
    gpus = gpu.parse_nvidia_smi_l(raw)
    assert [(g.index, g.name) for g in gpus] == [(0, "NVIDIA H100 80GB HBM3")]
    assert gpus[0].uuid.startswith("GPU-94750347")
    assert gpu.parse_gpu_pci("0, 00000000:00:06.0\n") == {0: "0000:00:06.0"}


def test_pci_numa_from_h100_sample(fx):
    raw = fx("gpu-node/h100-node-probe.txt").split("== numa of gpu\n", 1)[1].split("\n== ", 1)[0]
    numa = gpu.parse_pci_numa(raw)
    assert numa == {"0000:00:03.0": None, "0000:00:06.0": None}


# ---- NVMe: the views over nvme_host's observed state (its reader: module_utils/nvme_host.py) ------
def _as_host_dump(name: str, sysfs_kv: str) -> str:
    """A controller's sysfs ``attr=value`` lines (lab/sysfs-nvme0.txt) as nvme_host's dump prints the same files."""
    lines = [f"D\t/sys/class/nvme/{name}"]
    attrs = (x.partition("=") for x in sysfs_kv.splitlines())
    lines += [f"F\t/sys/class/nvme/{name}/{k}\t{v}" for k, _, v in attrs if k]
    return "\n".join(lines) + "\n"


def test_controller_views_over_the_module_observed(fx):
    nh = load_module_utils("nvme_host")
    sysfs = fx("lab/sysfs-nvme0.txt")
    pcie = sysfs.replace("transport=rdma", "transport=pcie").replace("address=traddr=192.168.100.1,trsvcid=4420",
                                                                      "address=0000:00:04.0")
    disc = sysfs.replace("subsysnqn=nqn.2024-01.io.lab:gpu-pool-1", f"subsysnqn={nvme.DISCOVERY_NQN}")
    obs = nh.parse_dump(_as_host_dump("nvme0", sysfs) + _as_host_dump("nvme1", pcie) + _as_host_dump("nvme2", disc))
    c = nvme.controllers(obs)[0]
    assert (c["transport"], c["traddr"], c["trsvcid"], c["state"]) == ("rdma", "192.168.100.1", "4420", "live")
    assert (c["ctrl_loss_tmo"], c["reconnect_delay"], c["kato"]) == (60, 5, 5)
    assert [c["name"] for c in nvme.io_fabric_controllers(obs)] == ["nvme0"]  # not the PCIe drive nor discovery
    views = [nvme.ctrl_view(c) for c in nvme.controllers(obs)]
    assert [(v.name, v.is_fabrics, v.is_discovery) for v in views] == [
        ("nvme0", True, False), ("nvme1", False, False), ("nvme2", True, True)]
    assert nvme.controllers(None) == [] and nvme.is_discovery({"cntrltype": "discovery"})


# ---- perftest / rping ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,bw,gid,mtu",
    [
        ("lab/ib_write_bw-client-gid1.txt", 0.065614, 1, 1024),
        ("lab/ib_write_bw-client-rdmacm.txt", 0.042363, 1, 1024),
        ("lab/ib_write_bw-server-rdmacm.txt", 0.042363, 1, 1024),
        ("real/ib_write_bw_bidir_100gbe_cx5.txt", 98.02, 4, 4096),
        ("real/ib_write_bw_cx4_100gbe_b2b_rocep4s0_39gbps_underperforming.txt", 39.20, 3, 4096),
        ("real/ib_write_bw_cx7_gb10_200gbe_rocep1s0f0_EXCERPT.txt", 109.17, 3, 4096),
        ("real/ib_write_bw_sweep_a_100gbe_roce_gid5_cuda_dmabuf_doc_indented.txt", 92.39, 5, 1024),
    ],
)
def test_ib_write_bw(fx, name, bw, gid, mtu):
    r = perftest.parse_ib_bw(fx(name))
    assert r is not None and r.bw_avg_gbps == pytest.approx(bw)
    assert r.gid_index == gid and r.mtu == mtu


def test_ib_write_bw_details(fx):
    bi = perftest.parse_ib_bw(fx("real/ib_write_bw_bidir_100gbe_cx5.txt"))
    assert bi.bidirectional and bi.device == "mlx5_0" and bi.link_type == "Ethernet"
    sweep = perftest.parse_ib_bw(fx("real/ib_write_bw_sweep_a_100gbe_roce_gid5_cuda_dmabuf_doc_indented.txt"))
    assert sweep.msg_bytes == 8388608
    cm = perftest.parse_ib_bw(fx("lab/ib_write_bw-client-rdmacm.txt"))
    assert cm.rdma_cm is True and cm.device == "rxe0"
    assert perftest.parse_ib_bw(" Couldn't connect to 192.168.100.1:18515\nUnable to init the socket connection") is None


def test_ib_write_bw_mb_units():
    text = " #bytes     #iterations    BW peak[MB/sec]    BW average[MB/sec]   MsgRate[Mpps]\n 65536      5000             11000.00            11000.00              0.176\n"
    assert perftest.parse_ib_bw(text).bw_avg_gbps == pytest.approx(88.0)


def test_rping(fx):
    ok = perftest.parse_rping(fx("lab/rping-client.txt"), fx("lab/rping-client.txt.stderr"), 0)
    assert ok.ok and ok.pings == 5
    bad = perftest.parse_rping("", "cma event RDMA_CM_EVENT_REJECTED, error 8\nconnect error -1\n", 1)
    assert not bad.ok and "REJECTED" in bad.error
    tmo = perftest.parse_rping("", "", 124)
    assert not tmo.ok and tmo.error == "timed out"
