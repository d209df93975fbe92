"""Inventory from the spec (host keys always checked) and runner outcomes -> exit codes."""

from __future__ import annotations

from pathlib import Path

from nvmeofctl.exitcodes import ExitCode
from nvmeofctl.plan.desired import host_vars
from nvmeofctl.run.inventory import build_inventory
from nvmeofctl.run.runner import RunResult
from nvmeofctl.spec import load_spec

LAB = Path(__file__).resolve().parents[2] / "fixtures" / "specs" / "good" / "lab.yaml"


def test_inventory_groups_roles_and_pins_host_keys():
    spec = load_spec(LAB)
    inv = build_inventory(spec, host_vars(spec))
    groups = inv["all"]["children"]
    assert list(groups["targets"]["hosts"]) == ["stor1"]
    assert list(groups["gpu_nodes"]["hosts"]) == ["gpu1", "gpu2"]
    gpu1 = groups["gpu_nodes"]["hosts"]["gpu1"]
    assert (gpu1["ansible_host"], gpu1["ansible_port"], gpu1["ansible_user"]) == ("127.0.0.1", 2202, "root")
    args = gpu1["ansible_ssh_common_args"]
    assert "StrictHostKeyChecking=yes" in args and f'UserKnownHostsFile="{spec.host("gpu1").ssh.known_hosts}"' in args
    assert "StrictHostKeyChecking=no" not in args
    assert gpu1["nvmeofctl_nvme_host"]["hostnqn"] == spec.host("gpu1").host_nqn
    assert "nvmeofctl_nvmet" in groups["targets"]["hosts"]["stor1"]


def _result(**per_host) -> RunResult:
    base = {"ok": 1, "changed": 0, "failures": 0, "unreachable": 0, "skipped": 0}
    return RunResult(rc=0, stats={h: {**base, **v} for h, v in per_host.items()}, tasks=[])


def test_exit_codes_from_runner_stats():
    assert _result(a={}, b={}).exit_code == ExitCode.OK
    assert _result(a={"changed": 1}).exit_code == ExitCode.OK
    r = _result(a={"failures": 1}, b={})
    assert r.exit_code == ExitCode.TASK_FAILED and r.host_status("a") == "failed" and r.host_status("b") == "ok"
    r = _result(a={"failures": 1}, b={"unreachable": 1})
    assert r.exit_code == ExitCode.UNREACHABLE and r.host_status("b") == "unreachable"
    assert RunResult(rc=2, stats={}, tasks=[]).exit_code == ExitCode.TASK_FAILED
