"""Partial failure planning: who is run, who is left untouched and why, and the exit code."""

from __future__ import annotations

from nvmeofctl.exitcodes import ExitCode
from nvmeofctl.plan.preflight import Problem
from nvmeofctl.plan.selection import select_hosts, worst
from nvmeofctl.spec import parse_spec

SPEC = """
name: c
fabric: {transport: tcp}
hosts:
  - {name: tgt1, role: target, ssh: {address: 10.0.0.1}, fabric: {interface: eth1, ips: [10.9.0.1]}}
  - {name: tgt2, role: target, ssh: {address: 10.0.0.2}, fabric: {interface: eth1, ips: [10.9.0.2]}}
  - {name: gpu1, role: gpu_node, ssh: {address: 10.0.0.11}, fabric: {interface: eth1, ips: [10.9.0.11]}}
  - {name: gpu2, role: gpu_node, ssh: {address: 10.0.0.12}, fabric: {interface: eth1, ips: [10.9.0.12]}}
  - {name: gpu3, role: gpu_node, ssh: {address: 10.0.0.13}, fabric: {interface: eth1, ips: [10.9.0.13]}}
subsystems:
  - nqn: nqn.2024-01.io.x:train
    target: tgt1
    allowed_gpu_nodes: [gpu1, gpu2]
    namespaces: [{nsid: 1, name: train, backing: {file: /var/lib/nvmeofctl/train.img, size: 1GiB}}]
  - nqn: nqn.2024-01.io.x:ckpt
    target: tgt2
    allowed_gpu_nodes: [gpu2]
    namespaces: [{nsid: 1, name: ckpt, backing: {file: /var/lib/nvmeofctl/ckpt.img, size: 1GiB}}]
"""
ALL = ["tgt1", "tgt2", "gpu1", "gpu2", "gpu3"]


def spec():
    return parse_spec(SPEC)


def test_everyone_runs_when_preflight_passes():
    sel = select_hosts(spec(), ALL, [])
    assert sel.run == ALL and sel.skipped == [] and sel.exit_code == ExitCode.OK


def test_a_down_gpu_node_stops_only_itself():
    sel = select_hosts(spec(), ALL, [Problem("gpu3", "ssh 10.0.0.13:22: timed out after 15s", "unreachable")])
    assert sel.run == ["tgt1", "tgt2", "gpu1", "gpu2"]
    assert [(s.host, s.status) for s in sel.skipped] == [("gpu3", "unreachable")]
    assert "timed out" in sel.skipped[0].reason and sel.exit_code == ExitCode.UNREACHABLE


def test_a_down_target_skips_the_nodes_that_connect_to_it():
    sel = select_hosts(spec(), ALL, [Problem("tgt2", "ssh 10.0.0.2:22: No route to host", "unreachable")])
    assert sel.run == ["tgt1", "gpu1", "gpu3"]
    got = {s.host: (s.status, s.reason) for s in sel.skipped}
    assert got["tgt2"][0] == "unreachable"
    assert got["gpu2"] == ("skipped", "target tgt2 not configured in this run (unreachable): left untouched")
    assert sel.exit_code == ExitCode.UNREACHABLE


def test_host_key_mismatch_is_a_preflight_failure_exit_4():
    sel = select_hosts(spec(), ALL, [Problem("gpu1", "host key of 10.0.0.11:22 does not match", "hostkey")])
    assert [(s.host, s.status) for s in sel.skipped] == [("gpu1", "preflight failed")]
    assert sel.exit_code == ExitCode.PREFLIGHT


def test_several_problems_of_one_host_are_one_line_and_the_worst_code_wins():
    problems = [Problem("tgt1", "nvmet module missing"), Problem("tgt1", "configfs is not mounted"),
                Problem("gpu3", "timed out", "unreachable")]
    sel = select_hosts(spec(), ALL, problems)
    got = {s.host: s for s in sel.skipped}
    assert got["tgt1"].reason == "nvmet module missing; configfs is not mounted"
    assert got["gpu1"].status == got["gpu2"].status == "skipped"
    assert sel.run == ["tgt2"] and sel.exit_code == ExitCode.UNREACHABLE


def test_limit_is_respected():
    sel = select_hosts(spec(), ["gpu2"], [])
    assert sel.run == ["gpu2"]


def test_worst_outcome():
    assert worst() == ExitCode.OK
    assert worst(ExitCode.PREFLIGHT, ExitCode.TASK_FAILED) == ExitCode.TASK_FAILED
    assert worst(ExitCode.TASK_FAILED, ExitCode.UNREACHABLE, ExitCode.OK) == ExitCode.UNREACHABLE
