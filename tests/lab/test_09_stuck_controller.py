"""Controllers left retrying a target port that vanished (what a target changed by hand, or
the old unordered removal, leaves behind): `health` names their state promptly, the next apply
releases the one whose export the spec dropped within its bound, restores the port, and the
others come back by themselves; nothing stays stuck for the commands after.

The fault: gpu2 is connected to an extra export `scratch`; on tgt1 the whole port is removed by
hand, so every controller loses its listener and reconnects forever (`ctrl_loss_tmo: -1` in the
lab spec). (Only unlinking one subsystem from the port is not enough: the target then answers
the reconnect with a do-not-retry status and the kernel deletes the controller by itself within
seconds.) Undone in `finally` (the lab spec applied again), and `healthy_lab` restores the
`provisioned` checkpoint if anything is left.
"""

from __future__ import annotations

import time

import pytest

from nvmeofctl.spec import load_spec

from .conftest import nvmeofctl, nvmeofctl_json, spec_with_scratch

pytestmark = pytest.mark.lab

NVMET = "/sys/kernel/config/nvmet"


def _state(vm, nqn: str) -> str:
    return vm.run(
        "for c in /sys/class/nvme/nvme*; do [ -e $c/transport ] && "
        f"[ \"$(cat $c/subsysnqn)\" = '{nqn}' ] && cat $c/state; done; true"
    ).strip()


def test_apply_releases_a_controller_retrying_a_vanished_export(healthy_lab):
    lab = healthy_lab
    spec = load_spec(lab.spec)
    gpu2, tgt1 = lab.vm("gpu2"), lab.vm("tgt1")
    scratch = f"nqn.2024-01.io.nvmeofctl.{spec.name}:scratch"
    edited = str(spec_with_scratch(lab, spec.name, "cluster-scratch-stuck.yaml"))
    try:
        code, _data, err = nvmeofctl_json("apply", "-f", edited)
        assert code == 0, err
        assert _state(gpu2, scratch) == "live"
        # the fault: the target's port vanishes under the connected nodes
        tgt1.run(f"cd {NVMET}/ports/1 && rm -f subsystems/* && cd .. && rmdir 1")
        deadline = time.monotonic() + 120
        while _state(gpu2, scratch) == "live" and time.monotonic() < deadline:
            time.sleep(2)
        stuck = _state(gpu2, scratch)
        assert stuck in ("connecting", "resetting"), stuck
        # health says so, promptly, naming the state (it does not hang on the controller)
        t0 = time.monotonic()
        code, report, err = nvmeofctl_json("health", "-f", edited, "--limit", "gpu2")
        health_s = time.monotonic() - t0
        assert code != 0, report
        bad = [f for f in report["findings"] if f["check"] == "nvme_controller" and f["status"] == "fail"]
        assert bad and all(f["observed"].endswith((" connecting", " resetting")) for f in bad), bad
        assert all("reconnecting, the target at 192.168.100.11 does not answer" in f["remedy"] for f in bad), bad
        # back to the lab spec: gpu2 releases the path first (bounded), then tgt1 removes scratch
        t0 = time.monotonic()
        code, data, err = nvmeofctl_json("apply", "-f", str(lab.spec), "--allow-disruptive")
        apply_s = time.monotonic() - t0
        print(f"\nstuck controller ({stuck}): health {health_s:.0f}s, apply exit {code} in {apply_s:.0f}s")
        row = next(h for h in data["hosts"] if h["host"] == "gpu2")
        if code == 0:
            assert _state(gpu2, scratch) == ""  # gone
            assert scratch not in tgt1.run(f"ls {NVMET}/subsystems")
            assert data["order"]["release"] == ["gpu2"]
        else:  # bounded, reported with the controller's state, and the target left alone
            assert code == 5 and "controller state:" in (row["failure"] or ""), (code, row)
            assert "not run" in next(h for h in data["hosts"] if h["host"] == "tgt1")["failure"]
        # nothing is stuck for the next commands either: the port is back, scratch gone, and
        # every other controller reconnected by itself
        code, data, err = nvmeofctl_json("apply", "-f", str(lab.spec), "--allow-disruptive")
        assert code == 0, err
        assert _state(gpu2, scratch) == ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            code, report, err = nvmeofctl_json("health", "-f", str(lab.spec))
            if code == 0:
                break
            time.sleep(5)
        assert code == 0, [f for f in report["findings"] if f["status"] not in ("ok", "na")]
    finally:
        nvmeofctl("apply", "-f", str(lab.spec), "--allow-disruptive")
