"""`nvmeofctl export` on the lab (issue #12): the exported project, run with plain
`ansible-playbook` (no nvmeofctl involved), repairs drift as `apply` would; afterwards
`nvmeofctl plan` finds 0 changes on every host. Then the same through `ansible-navigator run`
when it is installed."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from nvmeofctl.spec import load_spec

from .conftest import PROVISIONED, nvmeofctl, nvmeofctl_json

pytestmark = pytest.mark.lab


def test_exported_project_runs_with_plain_ansible_playbook(healthy_lab, tmp_path):
    lab = healthy_lab
    spec = load_spec(lab.spec)
    gpu1, gpu2 = lab.vm("gpu1"), lab.vm("gpu2")
    train = next(s.nqn for s in spec.subsystems if s.nqn.endswith(":train"))
    pw = tmp_path / "vault-pass"
    pw.write_text("lab vault password\n")
    project = tmp_path / "project"
    proc = nvmeofctl("export", "-f", str(lab.spec), "--to", str(project), "--vault-password-file", str(pw))
    assert proc.returncode == 0, proc.stderr
    done = False
    try:
        # drift for the project to repair: a path dropped by hand, a boot unit edited by hand
        gpu2.run(f"nvme disconnect -n {train}")
        gpu1.run("echo '# edited' >> /etc/systemd/system/nvmeofctl-connect.service")
        code, plan, err = nvmeofctl_json("plan", "-f", str(lab.spec))
        assert code == 0 and plan["changes"] >= 2, err
        _run_project([str(Path(sys.executable).parent / "ansible-playbook"), "site.yml",
                      "--vault-password-file", str(pw)], project)
        _repaired(lab, train)
        _navigator_repairs_the_same_drift(lab, project, pw, train)
        done = True
    finally:
        if not done:  # the drift this test made, undone whatever failed
            from nvmeofctl.lab.manager import LabManager

            LabManager(lab.name).restore(PROVISIONED)


def _navigator_repairs_the_same_drift(lab, project: Path, pw: Path, train: str) -> None:
    """The same project through `ansible-navigator run` (no execution environment: the control
    machine's Ansible, as AWX's execution nodes run it) when ansible-navigator is installed
    (NVMEOFCTL_NAVIGATOR, or on PATH): the path dropped by hand comes back and plan finds 0 changes."""
    import os
    import shutil

    nav = os.environ.get("NVMEOFCTL_NAVIGATOR") or shutil.which("ansible-navigator")
    if not nav:
        print("\nansible-navigator not installed: its half of the export test did not run")
        return
    lab.vm("gpu2").run(f"nvme disconnect -n {train}")
    _run_project([nav, "run", "site.yml", "--ee", "false", "--mode", "stdout", "--pae", "false",
                  "--lf", str(project / "navigator.log"), "--vault-password-file", str(pw)], project)
    _repaired(lab, train)
    print(f"\nansible-navigator {nav}: the exported project repaired the drift, plan 0 changes")


def _run_project(argv: list[str], project: Path) -> None:
    """Run the exported project with nothing but Ansible (the tool's own folder on PATH)."""
    run = subprocess.run(argv, cwd=project, capture_output=True, text=True, timeout=1200,
                         env={"PATH": f"{Path(argv[0]).parent}:/usr/bin:/bin", "HOME": str(Path.home()),
                              "ANSIBLE_NOCOLOR": "1"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "failed=0" in run.stdout and "unreachable=0" in run.stdout


def _repaired(lab, train: str) -> None:
    """gpu2's dropped path is back and `plan` finds 0 changes on every host."""
    gpu2 = lab.vm("gpu2")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and train not in gpu2.run("cat /sys/class/nvme/nvme*/subsysnqn"):
        time.sleep(3)
    code, plan, _err = nvmeofctl_json("plan", "-f", str(lab.spec))
    assert code == 0 and plan["changes"] == 0, plan
    assert all(h["converged"] for h in plan["hosts"]), plan
