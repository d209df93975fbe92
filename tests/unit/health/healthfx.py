"""Shared helpers for the health tests (imported by conftest.py and test modules by this unique name):
the soft-RoCE lab spec as plain namespaces (like the spec models) and the captured probe outputs."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from nvmeofctl.facts.probe import parse_probe_output
from nvmeofctl.health.expect import expectations_from_spec

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "health"


def ns(obj):
    """dict/list tree -> attribute access like the pydantic spec models."""
    if isinstance(obj, dict):
        return SimpleNamespace(**{k: ns(v) for k, v in obj.items()})
    if isinstance(obj, list):
        return [ns(v) for v in obj]
    return obj


def read(rel: str) -> str:
    return (FIX / rel).read_text(encoding="utf-8", errors="surrogateescape")


@pytest.fixture
def lab_dict():
    return copy.deepcopy(yaml.safe_load(read("lab-cluster.yaml")))


@pytest.fixture
def lab_exp(lab_dict):
    return expectations_from_spec(ns(lab_dict))


@pytest.fixture
def make_exp(lab_dict):
    """make_exp(lambda d: ...mutate the spec dict...) -> Expectations."""

    def build(mutate=None):
        d = copy.deepcopy(lab_dict)
        if mutate:
            mutate(d)
        return expectations_from_spec(ns(d))

    return build


@pytest.fixture
def target_facts():
    return parse_probe_output("stor1", read("probe/lab-target.txt"))


@pytest.fixture
def gpu_facts():
    return parse_probe_output("gpu1", read("probe/lab-gpu1.txt"))


@pytest.fixture
def h100_facts():
    return parse_probe_output("h100", read("probe/h100-gpu-node.txt"))


# ---- a real-NIC (mlx5) GPU node built from the real samples -----------------------------------
from nvmeofctl.facts import net as net_p  # noqa: E402
from nvmeofctl.facts import rdma as rdma_p  # noqa: E402
from nvmeofctl.facts.probe import CounterWindow  # noqa: E402


def mlx5_gids(ip_hex: str) -> list:
    return [
        rdma_p.Gid(0, "fe80:0000:0000:0000:9640:c9ff:fe8c:a09c", "IB/RoCE v1", "eth1"),
        rdma_p.Gid(1, "fe80:0000:0000:0000:9640:c9ff:fe8c:a09c", "RoCE v2", "eth1"),
        rdma_p.Gid(2, f"0000:0000:0000:0000:0000:ffff:{ip_hex}", "IB/RoCE v1", "eth1"),
        rdma_p.Gid(3, f"0000:0000:0000:0000:0000:ffff:{ip_hex}", "RoCE v2", "eth1"),
    ]


@pytest.fixture
def real_exp(make_exp):
    def mutate(d):
        d["fabric"]["soft_roce"] = False
        for h in d["hosts"]:
            h["fabric"]["rdma_device"] = "mlx5_0"

    return make_exp(mutate)


@pytest.fixture
def mlx5_gpu(gpu_facts):
    """gpu1 as if it had a ConnectX-5 (mlx5_0 on eth1): healthy QoS, flat counters."""
    f = gpu_facts
    counters = rdma_p.parse_counters(read("real/show_counters_mlx5_0_cx4lx_out_of_buffer.txt"))
    eth = net_p.parse_ethtool_stats(read("real/ethtool_S_cx4lx_ubuntu1804_k4.15_healthy_TRUNCATED.txt"))
    f.ib_devices = {
        "mlx5_0": rdma_p.IbDevice("mlx5_0", driver="mlx5_core", pci="0000:3b:00.0", numa_node=0, ports={
            1: rdma_p.IbPort(1, "ACTIVE", "LINK_UP", "100 Gb/sec (4X EDR)", 100.0, "Ethernet",
                             mlx5_gids("c0a8:6402"), active_mtu=1024, max_mtu=4096)})
    }
    f.rdma_links = [rdma_p.RdmaLink("mlx5_0", 1, "ACTIVE", "LINK_UP", "eth1")]
    f.hw_counters = {("mlx5_0", 1): CounterWindow(dict(counters), dict(counters))}
    f.rdma_stat = {}
    f.ethtool = CounterWindow(dict(eth), dict(eth))
    f.mlnx_qos = net_p.parse_mlnx_qos(read("real/mlnx_qos_cx5_trust_dscp_pfc3_dcbx_fw.txt"))
    f.ecn = {"roce_np": {i: i == 3 for i in range(8)}, "roce_rp": {i: i == 3 for i in range(8)}}
    f.pause = net_p.PauseParams(True, False, False, False)
    f.rdma_cm = {("mlx5_0", 1): {"default_roce_mode": "RoCE v2", "default_roce_tos": "106"}}
    f.netif.speed_mbps = 100000
    f.modules.discard("rdma_rxe")
    f.sys_modules.discard("rdma_rxe")
    return f
