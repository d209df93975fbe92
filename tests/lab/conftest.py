"""One lab for the whole test run: restored to its pristine booted state at the start.

The lab is named by NVMEOFCTL_TEST_LAB (default ``test``) so a developer's own ``lab`` is never
touched. The first run on a machine builds the image and cold-boots the VMs (a few minutes under
software emulation); later runs restore a saved VM state in seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from nvmeofctl.remote.ssh import SshTarget, run_on

LAB = os.environ.get("NVMEOFCTL_TEST_LAB", "test")
CLI = [sys.executable, "-m", "nvmeofctl"]


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/lab/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)


def nvmeofctl(*args: str, timeout: float = 1800, check: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"nvmeofctl {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def nvmeofctl_json(*args: str, timeout: float = 1800) -> tuple[int, dict, str]:
    """Run the CLI with --output json; returns (exit code, parsed stdout, stderr)."""
    proc = nvmeofctl(*args, "--output", "json", timeout=timeout)
    try:
        data = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except ValueError as exc:
        raise AssertionError(f"not JSON from nvmeofctl {' '.join(args)}: {exc}\n{proc.stdout}\n{proc.stderr}")
    return proc.returncode, data, proc.stderr


@dataclass
class LabVm:
    name: str
    role: str
    fabric_ip: str

    @property
    def target(self) -> SshTarget:
        """Read each time: `lab up` may move a VM's SSH port when another program took it."""
        from nvmeofctl.lab.manager import Lab

        lab = Lab(LAB)
        return lab.ssh_target(lab.layout().vm(self.name))

    def run(self, command: str, timeout: float = 120, check: bool = True) -> str:
        res = run_on(self.target, command, timeout=timeout)
        if not getattr(res, "rc", None) == 0 and check:
            raise AssertionError(f"{self.name}: {command!r} failed: {res}")
        return getattr(res, "stdout", "")

    def reboot(self, timeout: float = 420) -> None:
        """Reboot the VM for real and wait until the NEW boot answers SSH (same pinned host key)
        and systemd has finished starting units."""
        import time

        old = self.run("cat /proc/sys/kernel/random/boot_id").strip()
        self.run("systemd-run --on-active=1 systemctl reboot >/dev/null", timeout=30)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(5)
            res = run_on(self.target, "cat /proc/sys/kernel/random/boot_id; systemctl is-system-running --wait",
                         timeout=180, connect_timeout=10)
            out = getattr(res, "stdout", "").split()
            if out and out[0] != old:
                return
        raise AssertionError(f"{self.name} did not come back from its reboot within {timeout:.0f}s")

    def rc(self, command: str, timeout: float = 120) -> tuple[int, str, str]:
        res = run_on(self.target, command, timeout=timeout)
        if not hasattr(res, "rc"):
            raise AssertionError(f"{self.name} unreachable: {res}")
        return res.rc, res.stdout, res.stderr


@dataclass
class LabInfo:
    name: str
    dir: Path
    spec: Path
    vms: dict[str, LabVm]
    up_json: dict

    def vm(self, name: str) -> LabVm:
        return self.vms[name]


@pytest.fixture(scope="session")
def lab() -> LabInfo:
    if os.environ.get("NVMEOFCTL_SKIP_LAB") == "1":
        pytest.skip("NVMEOFCTL_SKIP_LAB=1")
    # NVMEOFCTL_TEST_REUSE=1 (development only) keeps the VMs' current state instead of --fresh
    fresh = [] if os.environ.get("NVMEOFCTL_TEST_REUSE") == "1" else ["--fresh"]
    proc = nvmeofctl("lab", "up", "--name", LAB, *fresh, "--output", "json")
    sys.stderr.write(proc.stderr)
    assert proc.returncode == 0, f"lab up failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}"
    data = json.loads(proc.stdout)
    from nvmeofctl.lab.manager import Lab

    lab_obj = Lab(LAB)
    vms = {}
    for vm in lab_obj.layout().vms:
        vms[vm.name] = LabVm(vm.name, vm.role, vm.fabric_ip)
    info = LabInfo(LAB, lab_obj.dir, Path(data["spec"]), vms, data)
    yield info
    if os.environ.get("NVMEOFCTL_KEEP_LAB") != "1":
        nvmeofctl("lab", "down", "--name", LAB, "--no-save", timeout=300)
