"""`connect` / `disconnect --node` (plan/node_ops.py) over the real lab captures
(tests/fixtures/plan/lab-real): which subsystems, what is refused, and the changes nvme_host's own
diff makes of them."""

from __future__ import annotations

import pytest

from nvmeofctl.errors import UsageError
from nvmeofctl.plan import node_ops
from nvmeofctl.spec import load_spec

TRAIN = "nqn.2024-01.io.nvmeofctl.lab:train"
CKPT = "nqn.2024-01.io.nvmeofctl.lab:ckpt"


@pytest.fixture
def spec(real_spec):
    return real_spec


def test_what_each_command_acts_on(spec):
    assert node_ops.subsystems_for(spec, "gpu1", None) == [TRAIN, CKPT]
    assert node_ops.subsystems_for(spec, "gpu1", "ckpt") == [CKPT]
    assert node_ops.subsystems_for(spec, "gpu2", "train") == [TRAIN]


@pytest.mark.parametrize("node, namespace, message", [
    ("gpu2", "ckpt", f"--namespace ckpt (subsystem {CKPT}) is not exported to gpu2: the spec allows it to gpu1"),
    ("gpu2", "scratch", "--namespace scratch: no namespace of that name in the spec (ckpt, train)"),
    ("tgt1", None, "--node tgt1: a target, not a GPU node"),
    ("gpu9", None, "--node gpu9: no host of that name in the spec (GPU nodes: gpu1, gpu2)"),
])
def test_what_the_spec_does_not_export_there_is_refused(spec, node, namespace, message):
    with pytest.raises(UsageError) as err:
        node_ops.subsystems_for(spec, node, namespace)
    assert str(err.value) == message


def test_connect_on_a_converged_node_changes_nothing(spec, real_observed):
    args = node_ops.node_args(spec, "gpu1", [TRAIN, CKPT], "connect")
    assert args["only"] == [CKPT, TRAIN] and args["allow_disruptive"] is False
    assert node_ops.node_changes("gpu1", args, real_observed["gpu1"]) == []


def test_disconnect_drops_exactly_the_asked_path(spec, real_observed):
    obs = real_observed["gpu1"]
    args = node_ops.node_args(spec, "gpu1", [CKPT], "disconnect")
    assert [c["subsysnqn"] for c in args["connections"]] == [TRAIN] and args["allow_disruptive"] is True
    changes = node_ops.node_changes("gpu1", args, obs)
    assert [(c.action, c.object, c.disruptive) for c in changes] == [("disconnect", "controller:nvme1", True)]
    assert node_ops.devices_of(obs, [CKPT]) == ["nvme1n1"]


def test_connect_after_a_manual_disconnect_connects_only_what_was_asked(spec, real_observed):
    obs = real_observed["gpu1"]
    del obs["nvme_host"]["controllers"]["nvme0"]  # train's path, gone (`nvme disconnect -d nvme0`)
    del obs["nvme_host"]["controllers"]["nvme1"]  # ckpt's too
    changes = node_ops.node_changes("gpu1", node_ops.node_args(spec, "gpu1", [TRAIN], "connect"), obs)
    assert [(c.action, c.object) for c in changes] == [
        ("connect", f"connection:rdma://192.168.100.11:4420/{TRAIN}")]
