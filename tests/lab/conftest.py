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


# what a guest kernel prints when it dies (Soft-RoCE's rdma_rxe has panicked the lab's kernel
# under load: slab corruption in rxe_requester); a failed lab test names it, so the failure reads
# as the guest's crash and not as a timeout of the feature under test
GUEST_CRASH = ("Kernel panic", "BUG: ", "Oops: ", "general protection fault", "list_del corruption",
               "watchdog: BUG: soft lockup")


def guest_crashes(since: float) -> list[str]:
    """Crash lines in the console logs of this run's labs written since ``since`` (epoch s)."""
    from nvmeofctl.lab.paths import lab_dir

    found = []
    for name in {LAB, os.environ.get("NVMEOFCTL_TEST_MP_LAB", "test-mp")}:
        for log in sorted(lab_dir(name).glob("*/console.log")):
            try:
                if log.stat().st_mtime < since:
                    continue
                lines = log.read_text(errors="replace").splitlines()
            except OSError:
                continue
            hits = [ln.strip() for ln in lines if any(m in ln for m in GUEST_CRASH)]
            if hits:
                found.append(f"{name}/{log.parent.name}: " + " | ".join(hits[:4]))
    return found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    import time

    outcome = yield
    report = outcome.get_result()
    if report.failed and "tests/lab/" in str(item.fspath):
        crashes = guest_crashes(time.time() - (call.stop - call.start) - 5)
        if crashes:
            report.sections.append(("guest kernel crash (console.log)", "\n".join(crashes)))
            sys.stderr.write("\nguest kernel crash during this test: " + "; ".join(crashes) + "\n")


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
def state_dir(tmp_path_factory) -> Path:
    """nvmeofctl's state directory (run records) for this test run: the CLI subprocesses
    inherit it, so `history` shows exactly the applies of this run."""
    path = tmp_path_factory.mktemp("nvmeofctl-state")
    os.environ["NVMEOFCTL_STATE"] = str(path)
    return path


@pytest.fixture(scope="session")
def lab(state_dir) -> LabInfo:
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


# --------------------------------------------------------------------------- fault-test hygiene
PROVISIONED = "provisioned"  # checkpoint: the lab applied from its spec, every path live


def lab_problems(lab: LabInfo) -> list[str]:
    """What is wrong with the provisioned lab, one SSH round trip per VM (empty: healthy).

    Healthy = every VM answers; the fabric link is up with its Soft-RoCE device ACTIVE; on the
    target every subsystem of the spec is exported; on each GPU node exactly the spec's paths,
    all `live`, and no fio or fault helper left running."""
    from nvmeofctl.spec import load_spec

    spec = load_spec(lab.spec)
    problems = []
    for vm in lab.vms.values():
        cmd = ("ip -br link show eth1 | awk '{print $2}'; rdma link show 2>/dev/null | grep -c ACTIVE; "
               "pgrep -x fio >/dev/null && echo fio-running || echo no-fio; "
               "ls /sys/kernel/config/nvmet/subsystems 2>/dev/null | tr '\\n' ' '; echo; "
               "for c in /sys/class/nvme/nvme*; do [ -e $c/transport ] && echo \"$(cat $c/subsysnqn)=$(cat $c/state)\"; done")
        try:
            rc, out, err = vm.rc(cmd, timeout=60)
        except AssertionError as exc:
            problems.append(f"{vm.name}: {exc}")
            continue
        lines = out.splitlines()
        if len(lines) < 4:
            problems.append(f"{vm.name}: probe cut short: {out!r} {err!r}")
            continue
        link, active, fio, subsystems, ctrls = lines[0], lines[1], lines[2], lines[3].split(), lines[4:]
        if link not in ("UP", "UNKNOWN"):
            problems.append(f"{vm.name}: eth1 {link}")
        if active.strip() != "1":
            problems.append(f"{vm.name}: rdma link not ACTIVE")
        if fio == "fio-running":
            problems.append(f"{vm.name}: fio still running")
        if vm.role == "target":
            want = sorted(s.nqn for s in spec.subsystems if s.target == vm.name)
            if sorted(subsystems) != want:
                problems.append(f"{vm.name}: subsystems {sorted(subsystems)} != {want}")
        else:
            want = sorted(e.nqn for e in spec.exports_for(vm.name))
            have = sorted(c.split("=")[0] for c in ctrls)
            if have != want or any(not c.endswith("=live") for c in ctrls):
                problems.append(f"{vm.name}: controllers {ctrls} (want {want}, all live)")
    return problems


@pytest.fixture(scope="session")
def provisioned(lab) -> LabInfo:
    """The lab applied from its spec, saved once per run as checkpoint `provisioned` (all VMs
    paused at one moment) so a fault test that leaves damage can be undone in seconds."""
    from nvmeofctl.lab.manager import LabManager

    proc = nvmeofctl("apply", "-f", str(lab.spec), "--allow-disruptive")
    assert proc.returncode == 0, f"apply before the checkpoint failed:\n{proc.stdout}\n{proc.stderr}"
    import time

    deadline = time.monotonic() + 180
    while (problems := lab_problems(lab)) and time.monotonic() < deadline:
        time.sleep(5)
    assert not problems, f"lab not healthy after apply: {problems}"
    took = LabManager(lab.name).checkpoint(PROVISIONED)
    sys.stderr.write(f"\ncheckpoint {PROVISIONED!r} saved in {took:.0f}s\n")
    return lab


@pytest.fixture
def healthy_lab(provisioned) -> LabInfo:
    """Before a fault test: the lab is healthy, or is restored from checkpoint `provisioned`
    (and the test fails loudly if even that does not give a healthy lab). After it: the same
    check, so a test whose `finally` could not undo its fault does not cascade."""
    _ensure_healthy(provisioned, "before")
    yield provisioned
    _ensure_healthy(provisioned, "after")


def _ensure_healthy(lab: LabInfo, when: str) -> None:
    import time

    from nvmeofctl.lab.manager import LabManager

    problems = lab_problems(lab)
    if not problems:
        return
    sys.stderr.write(f"\nlab unhealthy {when} the test ({'; '.join(problems)}): restoring {PROVISIONED!r}\n")
    took = LabManager(lab.name).restore(PROVISIONED)
    deadline = time.monotonic() + 120
    while (problems := lab_problems(lab)) and time.monotonic() < deadline:
        time.sleep(3)
    assert not problems, f"lab still unhealthy after restoring {PROVISIONED!r} ({took:.0f}s): {problems}"


def spec_with_scratch(lab: LabInfo, lab_name: str, filename: str) -> Path:
    """A copy of the lab spec with one more subsystem, `scratch` (64 MiB file), exported to gpu2
    only; written next to the lab spec (so its relative key paths still resolve)."""
    text = lab.spec.read_text() + (
        f"  - nqn: nqn.2024-01.io.nvmeofctl.{lab_name}:scratch\n"
        "    target: tgt1\n"
        "    allowed_gpu_nodes: [gpu2]\n"
        "    namespaces:\n"
        "      - nsid: 1\n"
        "        name: scratch\n"
        "        backing: {file: /var/lib/nvmeofctl/scratch.img, size: 64MiB}\n"
    )
    path = lab.dir / filename
    path.write_text(text)
    return path


def fio_json(text: str) -> dict:
    """fio's --output-format=json file: fio writes 'fio: terminating on signal 2' lines ahead of
    the JSON document when it was stopped with SIGINT."""
    start = text.find("{")
    assert start >= 0, f"no JSON in fio's output: {text[:300]!r}"
    return json.loads(text[start:])
