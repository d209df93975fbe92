"""rollout.model parts that need only the spec: batches, partners, the ANA states of a drain."""

from __future__ import annotations

import pytest

from nvmeofctl.rollout import model
from nvmeofctl.spec import load_spec

SPEC = """\
name: mp
fabric: {transport: rdma, soft_roce: true}
hosts:
  - {name: tgt1, role: target, ssh: {address: 127.0.0.1, port: 2201}, fabric: {interface: eth1, ips: [10.9.0.11]}}
  - {name: tgt2, role: target, ssh: {address: 127.0.0.1, port: 2202}, fabric: {interface: eth1, ips: [10.9.0.12, 10.9.1.12]}}
  - {name: tgt3, role: target, ssh: {address: 127.0.0.1, port: 2204}, fabric: {interface: eth1, ips: [10.9.0.13]}}
  - {name: gpu1, role: gpu_node, ssh: {address: 127.0.0.1, port: 2203}, fabric: {interface: eth1, ips: [10.9.0.21]}}
subsystems:
  - nqn: nqn.2024-01.io.nvmeofctl.mp:shared
    targets: [tgt1, tgt2]
    allowed_gpu_nodes: [gpu1]
    namespaces:
      - {nsid: 1, name: a, backing: {device: /dev/disk/by-id/virtio-SHARED0}}
      - {nsid: 2, name: b, backing: {device: /dev/disk/by-id/virtio-SHARED1}, preferred_target: tgt2}
"""


@pytest.fixture
def spec(tmp_path):
    p = tmp_path / "cluster.yaml"
    p.write_text(SPEC)
    return load_spec(p)


def test_batches_keep_the_order_given():
    assert model.batches(["b", "a", "c"], 1) == [["b"], ["a"], ["c"]]
    assert model.batches(["b", "a", "c"], 2) == [["b", "a"], ["c"]]


def test_partners_are_the_other_targets_of_shared_subsystems(spec):
    assert model.partners(spec, ["tgt1"]) == ["tgt2"]
    assert model.partners(spec, ["tgt2"]) == ["tgt1"]
    assert model.partners(spec, ["tgt3"]) == []  # serves nothing


def test_drain_states_move_the_groups_off_the_target_on_every_port(spec):
    # groups: 2 = preferred tgt1, 3 = preferred tgt2 (2 + place among the targets)
    assert model.ana_ports(spec, "tgt1", {"tgt1"}) == [
        {"id": 1, "ana_groups": [{"grpid": 2, "state": "inaccessible"}, {"grpid": 3, "state": "inaccessible"}]}]
    # the partner takes over tgt1's group (optimized) and keeps its own; one entry per port
    assert model.ana_ports(spec, "tgt2", {"tgt1"}) == [
        {"id": i, "ana_groups": [{"grpid": 2, "state": "optimized"}, {"grpid": 3, "state": "optimized"}]}
        for i in (1, 2)]
    # nothing down: the spec's states
    assert model.ana_ports(spec, "tgt1", set()) == [
        {"id": 1, "ana_groups": [{"grpid": 2, "state": "optimized"}, {"grpid": 3, "state": "non-optimized"}]}]
    assert model.ana_ports(spec, "tgt3", {"tgt1"}) == []  # no dual-controller subsystem: ANA not managed
