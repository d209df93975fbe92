"""Dual-controller subsystems in the spec (issue #10): `targets`, `preferred_target`, and the
desired state they give each target (ANA groups, disjoint controller ids) and GPU node (a path
per target). Expected values are written out here, never computed by the code under test."""

from __future__ import annotations

from pathlib import Path

import pytest

from nvmeofctl.errors import SpecError
from nvmeofctl.plan.desired import host_vars
from nvmeofctl.spec import load_spec

SPEC = """\
name: mp
fabric: {transport: rdma, soft_roce: true}
hosts:
  - {name: tgt1, role: target, ssh: {address: 127.0.0.1, port: 2201}, fabric: {interface: eth1, ips: [10.9.0.11]}}
  - {name: tgt2, role: target, ssh: {address: 127.0.0.1, port: 2202}, fabric: {interface: eth1, ips: [10.9.0.12]}}
  - {name: gpu1, role: gpu_node, ssh: {address: 127.0.0.1, port: 2203}, fabric: {interface: eth1, ips: [10.9.0.21]}}
subsystems:
  - nqn: nqn.2024-01.io.nvmeofctl.mp:shared
    targets: [tgt1, tgt2]
    allowed_gpu_nodes: [gpu1]
    namespaces:
      - {nsid: 1, name: a, backing: {device: /dev/disk/by-id/virtio-SHARED0}}
      - {nsid: 2, name: b, backing: {device: /dev/disk/by-id/virtio-SHARED1}, preferred_target: tgt2}
  - nqn: nqn.2024-01.io.nvmeofctl.mp:local
    target: tgt1
    allowed_gpu_nodes: [gpu1]
    namespaces:
      - {nsid: 1, name: c, backing: {file: /var/lib/nvmeofctl/c.img, size: 1GiB}}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cluster.yaml"
    p.write_text(text)
    return p


def test_target_accepts_a_list_and_target_alone_stays_a_list_of_one(tmp_path):
    spec = load_spec(write(tmp_path, SPEC))
    shared, local = spec.subsystems
    assert shared.served_by == ["tgt1", "tgt2"] and shared.target == "tgt1" and shared.multipath
    assert local.served_by == ["tgt1"] and not local.multipath
    assert [shared.preferred(ns) for ns in shared.namespaces] == ["tgt1", "tgt2"]
    assert [s.nqn for s in spec.subsystems_on("tgt2")] == ["nqn.2024-01.io.nvmeofctl.mp:shared"]
    # one export per path: the shared subsystem twice (through each target), the local one once
    assert [(e.nqn.rsplit(":", 1)[1], e.target, e.traddr) for e in spec.exports_for("gpu1")] == [
        ("shared", "tgt1", "10.9.0.11"), ("shared", "tgt2", "10.9.0.12"), ("local", "tgt1", "10.9.0.11")]


def test_desired_state_of_a_dual_controller_pair(tmp_path):
    hv = host_vars(load_spec(write(tmp_path, SPEC)))
    t1, t2 = hv["tgt1"]["nvmeofctl_nvmet"], hv["tgt2"]["nvmeofctl_nvmet"]
    s1 = next(s for s in t1["subsystems"] if s["nqn"].endswith(":shared"))
    s2 = t2["subsystems"][0]
    # disjoint controller ids (a host rejects a second path with the same cntlid)
    assert (s1["cntlid_min"], s1["cntlid_max"], s2["cntlid_min"], s2["cntlid_max"]) == (1, 1023, 1025, 2047)
    # the same identity on both targets
    for key in ("nqn", "serial"):
        assert s1[key] == s2[key]
    assert [(n["uuid"], n["nguid"]) for n in s1["namespaces"]] == [(n["uuid"], n["nguid"]) for n in s2["namespaces"]]
    # group = 2 + the preferred target's place among the targets; optimized only on its ports
    assert [n["ana_grpid"] for n in s1["namespaces"]] == [2, 3]
    assert t1["ports"][0]["ana_groups"] == [{"grpid": 1, "state": "optimized"}, {"grpid": 2, "state": "optimized"},
                                            {"grpid": 3, "state": "non-optimized"}]
    assert t2["ports"][0]["ana_groups"] == [{"grpid": 1, "state": "optimized"}, {"grpid": 2, "state": "non-optimized"},
                                            {"grpid": 3, "state": "optimized"}]
    # the single-target subsystem keeps the kernel's defaults (nothing new to write on upgrade)
    local = next(s for s in t1["subsystems"] if s["nqn"].endswith(":local"))
    assert "cntlid_min" not in local and "ana_grpid" not in local["namespaces"][0]
    conns = hv["gpu1"]["nvmeofctl_nvme_host"]["connections"]
    assert [(c["subsysnqn"].rsplit(":", 1)[1], c["traddr"]) for c in conns] == [
        ("shared", "10.9.0.11"), ("shared", "10.9.0.12"), ("local", "10.9.0.11")]


def test_single_target_specs_give_the_same_desired_state_as_before(tmp_path):
    """No ANA or cntlid keys without a dual-controller subsystem: converged clusters stay converged."""
    one = SPEC.replace("    targets: [tgt1, tgt2]\n", "    target: tgt1\n").replace(", preferred_target: tgt2", "")
    hv = host_vars(load_spec(write(tmp_path, one)))
    nvmet = hv["tgt1"]["nvmeofctl_nvmet"]
    assert all("ana_groups" not in p for p in nvmet["ports"])
    assert all("cntlid_min" not in s for s in nvmet["subsystems"])
    assert hv["tgt2"]["nvmeofctl_nvmet"]["subsystems"] == []


@pytest.mark.parametrize("old, new, line, message", [
    ("      - {nsid: 1, name: a, backing: {device: /dev/disk/by-id/virtio-SHARED0}}",
     "      - {nsid: 1, name: a, backing: {file: /var/lib/nvmeofctl/a.img, size: 1GiB}}", 12,
     "subsystems[0].namespaces[0].backing.file: a subsystem served by 2 targets needs one block device they all "
     "reach (backing.device, e.g. a dual-ported NVMe drive or shared LUN): a file lives on one target"),
    ("preferred_target: tgt2", "preferred_target: gpu1", 13,
     "subsystems[0].namespaces[1].preferred_target: 'gpu1' does not serve this subsystem (targets: tgt1, tgt2)"),
    ("targets: [tgt1, tgt2]", "targets: [tgt2, gpu1]", 9,
     "subsystems[0].targets[1]: host 'gpu1' is a gpu_node, not a target"),
    ("targets: [tgt1, tgt2]", "targets: [tgt2, tgt2]", 9, "subsystems[0].targets[1]: target 'tgt2' is listed twice"),
    ("    targets: [tgt1, tgt2]\n", "    target: tgt2\n    targets: [tgt1, tgt2]\n", 9,
     "subsystems[0].target: set target or targets, not both"),
    ("    target: tgt1\n", "", 14, "subsystems[1].target: set target (one target host) or targets (several)"),
])
def test_bad_dual_controller_specs_name_file_line_and_field(tmp_path, old, new, line, message):
    assert old in SPEC
    path = write(tmp_path, SPEC.replace(old, new))
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    assert str(exc.value).splitlines() == [f"{path}:{line} {message}"]
