"""A controller left retrying an export that vanished (what the old unordered removal caused,
and what a target changed by hand causes): the next apply releases it within its bound, the
target then removes the export, and neither `apply` nor `health` gets stuck on it.

The fault: gpu2 is connected to an extra export `scratch`; on tgt1 the export is unlinked from
its port by hand, so gpu2's controller loses its target and reconnects forever
(`ctrl_loss_tmo: -1` in the lab spec). Undone in `finally` (the lab spec applied again), and
`healthy_lab` restores the `provisioned` checkpoint if anything is left.
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
        # the fault: the export vanishes under the connected node
        tgt1.run(f"rm {NVMET}/ports/1/subsystems/{scratch}")
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
        text = str(report)
        assert "connecting" in text or "resetting" in text, text
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
        # nothing is stuck for the next commands either
        code, data, err = nvmeofctl_json("apply", "-f", str(lab.spec), "--allow-disruptive")
        assert code == 0, err
        assert _state(gpu2, scratch) == ""
    finally:
        nvmeofctl("apply", "-f", str(lab.spec), "--allow-disruptive")
