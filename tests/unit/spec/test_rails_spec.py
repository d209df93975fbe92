"""Several fabric interfaces (rails) per host (issue #10): `rails` in the spec, the paths they
give a GPU node (its rail N to each target's rail N), the nvmet ports and RDMA links they give
each host. Expected values are written out here, never computed by the code under test."""

from __future__ import annotations

from pathlib import Path

import pytest

from nvmeofctl.errors import SpecError
from nvmeofctl.plan.desired import desired_state, host_vars
from nvmeofctl.plan.teardown import host_vars as teardown_vars
from nvmeofctl.plan.teardown import teardown_args
from nvmeofctl.spec import load_spec

SPEC = """\
name: rails
fabric: {transport: rdma, soft_roce: true}
hosts:
  - name: tgt1
    role: target
    ssh: {address: 127.0.0.1, port: 2201}
    fabric: {interface: eth1, ips: [10.9.0.11]}
    rails:
      - {interface: eth2, ips: [10.9.1.11]}
  - name: tgt2
    role: target
    ssh: {address: 127.0.0.1, port: 2202}
    fabric: {interface: eth1, ips: [10.9.0.12]}
  - name: gpu1
    role: gpu_node
    ssh: {address: 127.0.0.1, port: 2203}
    fabric: {interface: eth1, ips: [10.9.0.21]}
    rails:
      - {interface: eth2, ips: [10.9.1.21]}
subsystems:
  - nqn: nqn.2024-01.io.nvmeofctl.rails:shared
    targets: [tgt1, tgt2]
    allowed_gpu_nodes: [gpu1]
    namespaces:
      - {nsid: 1, name: a, backing: {device: /dev/disk/by-id/virtio-SHARED0}}
  - nqn: nqn.2024-01.io.nvmeofctl.rails:local
    target: tgt1
    allowed_gpu_nodes: [gpu1]
    namespaces:
      - {nsid: 1, name: c, backing: {file: /var/lib/nvmeofctl/c.img, size: 1GiB}}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cluster.yaml"
    p.write_text(text)
    return p


def test_a_gpu_node_gets_one_path_per_rail_both_ends_have(tmp_path):
    spec = load_spec(write(tmp_path, SPEC))
    assert [f.interface for f in spec.host("tgt1").fabrics] == ["eth1", "eth2"]
    assert [str(ip) for ip in spec.host("tgt1").fabric_ips] == ["10.9.0.11", "10.9.1.11"]
    # tgt1 has two rails, tgt2 one: shared gets three paths, local (tgt1 only) two
    assert [(e.nqn.rsplit(":", 1)[1], e.target, e.traddr, e.rail) for e in spec.exports_for("gpu1")] == [
        ("shared", "tgt1", "10.9.0.11", 1), ("shared", "tgt1", "10.9.1.11", 2), ("shared", "tgt2", "10.9.0.12", 1),
        ("local", "tgt1", "10.9.0.11", 1), ("local", "tgt1", "10.9.1.11", 2)]


def test_desired_state_listens_and_links_on_every_rail(tmp_path):
    spec = load_spec(write(tmp_path, SPEC))
    hv = host_vars(spec)
    ports = hv["tgt1"]["nvmeofctl_nvmet"]["ports"]
    assert [(p["id"], p["traddr"]) for p in ports] == [(1, "10.9.0.11"), (2, "10.9.1.11")]
    # both ports carry both subsystems and the same ANA states (the rail does not change the preference)
    assert ports[0]["subsystems"] == ports[1]["subsystems"] and ports[0]["ana_groups"] == ports[1]["ana_groups"]
    # rail 1 keeps the options a one-rail host has; rail 2 is numbered (its boot files are its own)
    assert hv["tgt1"]["nvmeofctl_rdma"] == {"interface": "eth1", "mtu": 1500, "soft_roce": True,
                                            "roce_mode": "RoCE v2", "roce_tos": 106}
    assert hv["tgt1"]["nvmeofctl_rdma_rails"] == [{"interface": "eth2", "mtu": 1500, "soft_roce": True,
                                                   "roce_mode": "RoCE v2", "roce_tos": 106, "rail": 2}]
    assert "nvmeofctl_rdma_rails" not in hv["tgt2"]  # one rail: the host vars of before
    conns = hv["gpu1"]["nvmeofctl_nvme_host"]["connections"]
    assert [(c["subsysnqn"].rsplit(":", 1)[1], c["traddr"]) for c in conns] == [
        ("shared", "10.9.0.11"), ("shared", "10.9.1.11"), ("shared", "10.9.0.12"),
        ("local", "10.9.0.11"), ("local", "10.9.1.11")]
    rails = desired_state(spec).hosts["gpu1"].rails
    assert [(r.rail, r.interface, r.ips) for r in rails] == [(1, "eth1", ("10.9.0.21",)), (2, "eth2", ("10.9.1.21",))]


def test_teardown_removes_every_rails_boot_files(tmp_path):
    spec = load_spec(write(tmp_path, SPEC))
    hv = teardown_vars(teardown_args(spec, spec.host("gpu1")))
    assert hv["nvmeofctl_rdma"]["persist"] is False
    assert [(r["interface"], r["rail"], r["persist"]) for r in hv["nvmeofctl_rdma_rails"]] == [("eth2", 2, False)]


def test_tcp_fabric_sets_up_no_rdma_on_any_rail(tmp_path):
    spec = load_spec(write(tmp_path, SPEC.replace("transport: rdma", "transport: tcp")))
    hv = host_vars(spec)
    assert hv["tgt1"]["nvmeofctl_rdma"] == {} and "nvmeofctl_rdma_rails" not in hv["tgt1"]
    assert len(hv["tgt1"]["nvmeofctl_nvmet"]["ports"]) == 2  # it still listens on both rails


@pytest.mark.parametrize("old, new, line, message", [
    ("      - {interface: eth2, ips: [10.9.1.11]}", "      - {interface: eth1, ips: [10.9.1.11]}", 9,
     "hosts[0].rails[0].interface: interface eth1 is already rail 1 (hosts[0].fabric)"),
    ("      - {interface: eth2, ips: [10.9.1.21]}", "      - {interface: eth2, ips: [10.9.1.11]}", 19,
     "hosts[2].rails[0].ips[0]: duplicate fabric IP 10.9.1.11 (also hosts[0].rails[0].ips[0])"),
    ("      - {interface: eth2, ips: [10.9.1.11]}", "      - {interface: eth2}", 9,
     "hosts[0].rails[0].ips: field required"),
    ("      - {interface: eth2, ips: [10.9.1.11]}", "      - {interface: 'eth2;reboot', ips: [10.9.1.11]}", 9,
     "hosts[0].rails[0].interface: not a valid network interface name (1-15 of letters, digits, '.', '_', '@', "
     "'-'; no '/', ':' or spaces)"),
    ("      - {interface: eth2, ips: [10.9.1.11]}", "      - {interface: eth2@1, ips: [10.9.1.11]}", 9,
     "hosts[0].rails[0].interface: interface eth2@1: a rail after the first names its boot unit after its "
     "interface, and systemd reads '@' in a unit name as a template instance"),
])
def test_bad_rails_name_file_line_and_field(tmp_path, old, new, line, message):
    assert old in SPEC
    path = write(tmp_path, SPEC.replace(old, new))
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    assert str(exc.value).splitlines() == [f"{path}:{line} {message}"]


def test_a_real_rdma_fabric_needs_a_device_on_every_rail(tmp_path):
    text = (SPEC.replace("soft_roce: true", "soft_roce: false")
            .replace("ips: [10.9.0.11]}", "ips: [10.9.0.11], rdma_device: mlx5_0}")
            .replace("ips: [10.9.0.12]}", "ips: [10.9.0.12], rdma_device: mlx5_0}")
            .replace("ips: [10.9.0.21]}", "ips: [10.9.0.21], rdma_device: mlx5_0}")
            .replace("ips: [10.9.1.21]}", "ips: [10.9.1.21], rdma_device: mlx5_1}"))
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    assert str(exc.value).splitlines() == [
        f"{path}:9 hosts[0].rails[0].rdma_device: transport rdma needs an RDMA device: set rdma_device, "
        "or fabric.soft_roce: true, or fabric.transport: tcp"]
