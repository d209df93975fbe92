"""One GPU node down does not stop the fleet: the others are configured, the down node is
reported unreachable (exit 6), and --strict keeps the all-or-nothing behaviour.

The fault: gpu2's VM is paused through its QEMU monitor (`stop`), so SSH to it times out as it
would for a powered-off node; it is resumed (`cont`) in `finally`.
"""

from __future__ import annotations

import pytest

from nvmeofctl.lab.manager import Lab
from nvmeofctl.lab.process import monitor_command
from nvmeofctl.spec import load_spec

from .conftest import LAB, nvmeofctl, nvmeofctl_json
from .test_02_provision import controllers, nqn_of

pytestmark = pytest.mark.lab

NVMET = "/sys/kernel/config/nvmet"


def _monitor(vm_name: str, command: str) -> str:
    lab = Lab(LAB)
    return monitor_command(lab.vm_files(lab.layout().vm(vm_name)).monitor, command, timeout=60)


def test_a_down_gpu_node_does_not_stop_the_fleet(lab):
    proc = nvmeofctl("lab", "up", "--name", LAB, "--fresh", timeout=900)
    assert proc.returncode == 0, proc.stderr
    spec = load_spec(lab.spec)
    tgt, gpu1 = lab.vm("tgt1"), lab.vm("gpu1")
    _monitor("gpu2", "stop")
    try:
        # --strict: all or nothing, nothing changed anywhere
        code, data, err = nvmeofctl_json("apply", "-f", str(lab.spec), "--strict")
        assert code == 6, err
        assert "gpu2" in err and tgt.run(f"ls {NVMET}/subsystems | wc -l").strip() == "0"
        # default: the reachable hosts are configured, gpu2 is reported with why
        code, data, err = nvmeofctl_json("apply", "-f", str(lab.spec))
        assert code == 6, err
        rows = {h["host"]: h for h in data["hosts"]}
        assert rows["tgt1"]["status"] == "changed" and rows["gpu1"]["status"] == "changed", rows
        assert rows["gpu2"]["status"] == "unreachable" and "gpu2" not in data["stats"], rows
        assert "127.0.0.1" in rows["gpu2"]["failure"], rows["gpu2"]  # why: the SSH endpoint did not answer
        assert data["exit_code"] == 6
        assert sorted(tgt.run(f"ls {NVMET}/subsystems").split()) == sorted(
            [nqn_of(spec, "train"), nqn_of(spec, "ckpt")])
        assert {c["nqn"] for c in controllers(gpu1).values()} == {nqn_of(spec, "train"), nqn_of(spec, "ckpt")}
    finally:
        _monitor("gpu2", "cont")
    # back: the next apply configures gpu2 alone, exit 0
    code, data, err = nvmeofctl_json("apply", "-f", str(lab.spec))
    assert code == 0, err
    rows = {h["host"]: h["status"] for h in data["hosts"]}
    assert rows == {"tgt1": "ok", "gpu1": "ok", "gpu2": "changed"}, rows
