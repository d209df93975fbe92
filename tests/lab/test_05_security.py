"""Security on the real lab: a hostile spec runs nothing on the control machine, reaches nothing
outside its objects on the target, and leaves no key behind (issue: Security).

Runs on pristine VMs (`lab up --fresh`). Every fault it injects (a mounted loop device on the
target) is undone in `finally`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nvmeofctl.plan.desired import host_vars
from nvmeofctl.resources import collections_dir
from nvmeofctl.run.inventory import build_inventory, unsafe_yaml
from nvmeofctl.run.rundir import runs_parent
from nvmeofctl.spec import load_spec

from .conftest import CLI, LAB, nvmeofctl, nvmeofctl_json

pytestmark = pytest.mark.lab

NVMET = "/sys/kernel/config/nvmet"
# '/' cannot be part of a directory name: `cd` (to $HOME) then a relative path
MARK_NAME = "nvmeofctl-pwned"
LOOKUP = "{{ lookup('pipe', 'cd; touch %s') }}" % MARK_NAME
MARKERS = [Path.home() / MARK_NAME, Path("/tmp") / MARK_NAME]
CONFIGFS_SNAPSHOT = f"find {NVMET} | sort | sha256sum"


def _no_marker() -> list[str]:
    return [str(m) for m in MARKERS if m.exists()]


@pytest.fixture(scope="module")
def fresh(lab):
    proc = nvmeofctl("lab", "up", "--name", LAB, "--fresh", timeout=900)
    assert proc.returncode == 0, proc.stderr
    for m in MARKERS:
        m.unlink(missing_ok=True)
    return lab


def _spec_text(lab) -> str:
    return lab.spec.read_text()


def _write(lab, name: str, text: str) -> Path:
    path = lab.dir / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------
# 1. template injection


def named_fields(lab_name: str) -> list[tuple[str, str]]:
    """(text in the lab spec, hostile replacement): fields that name things, each refused."""
    train = f"nqn.2024-01.io.nvmeofctl.{lab_name}:train"
    return [
        (f"name: {lab_name}\n", f"name: \"{LOOKUP}\"\n"),
        ("  - name: tgt1\n", f"  - name: \"{LOOKUP}\"\n"),
        ("address: 127.0.0.1, port:", f"address: \"{LOOKUP}\", port:"),
        ("user: root,", f"user: \"{LOOKUP}\","),
        ("{interface: eth1,", f"{{interface: \"{LOOKUP}\","),
        (f"  - nqn: {train}\n", f"  - nqn: \"nqn.2024-01.io.nvmeofctl.{lab_name}:{LOOKUP}\"\n"),
        ("    target: tgt1\n", f"    target: \"{LOOKUP}\"\n"),
        ("        name: train\n", f"        name: \"{LOOKUP}\"\n"),
        ("{file: /var/lib/nvmeofctl/train.img,", f"{{file: \"/var/lib/nvmeofctl/{LOOKUP}.img\","),
        ("allowed_gpu_nodes: [gpu1, gpu2]", f"allowed_gpu_nodes: [gpu1, \"{LOOKUP}\"]"),
    ]


def test_hostile_strings_run_nothing_on_the_control_machine(fresh):
    lab = fresh
    base = _spec_text(lab)
    # fields that name things: refused at load (exit 3), before any SSH or Ansible
    for old, new in named_fields(lab.name):
        assert old in base, old
        path = _write(lab, "hostile.yaml", base.replace(old, new, 1))
        for check in (["--check"], []):
            proc = nvmeofctl("apply", "-f", str(path), *check, timeout=120)
            assert proc.returncode == 3, (old, proc.stderr)
            assert "hostile.yaml:" in proc.stderr and "Traceback" not in proc.stderr
            assert not _no_marker(), (old, check)
    # free text that may hold braces reaches Ansible and the hosts as data: the SSH key and
    # known_hosts paths (their folder is named after the lookup), and a subsystem serial
    evil = lab.dir / LOOKUP
    evil.mkdir(exist_ok=True)
    for name in ("id_ed25519", "known_hosts"):
        shutil.copy2(lab.dir / name, evil / name)
    (evil / "id_ed25519").chmod(0o600)
    text = base.replace("key: id_ed25519, known_hosts: known_hosts",
                        f"key: \"{evil}/id_ed25519\", known_hosts: \"{evil}/known_hosts\"")
    text = text.replace("    target: tgt1\n", "    target: tgt1\n    serial: \"{{ 7*7 }}\"\n", 1)
    assert text.count(LOOKUP) == 6 and "{{ 7*7 }}" in text
    path = _write(lab, "hostile-free-text.yaml", text)
    spec = load_spec(path)
    train = spec.subsystems[0].nqn
    gpu1 = lab.vm("gpu1")
    sampler = _ArgvSampler(gpu1)
    sampler.start()
    try:
        code, data, err = nvmeofctl_json("apply", "-f", str(path), "--check")
        assert code == 0, err
        assert not _no_marker()
        code, data, err = nvmeofctl_json("apply", "-f", str(path))
        assert code == 0, err
    finally:
        seen = sampler.stop()
    assert not _no_marker()
    # the serial is on the target as written, not evaluated (49)
    assert lab.vm("tgt1").run(f"cat {NVMET}/subsystems/{train}/attr_serial").strip() == "{{ 7*7 }}"
    # 7. the DH-HMAC-CHAP connect (gpu1 -> ckpt, bidirectional) worked, and no process on gpu1
    # showed a key in its argv while the apply ran (sampled every ~0.2 s)
    ckpt = spec.subsystems[1].nqn
    out = gpu1.run("for c in /sys/class/nvme/nvme*; do echo $(cat $c/subsysnqn) $(cut -c1-7 $c/dhchap_secret) "
                   "$(cut -c1-7 $c/dhchap_ctrl_secret) $(cat $c/state); done")
    assert f"{ckpt} DHHC-1: DHHC-1: live" in out, out
    assert seen["samples"] > 20 and seen["planted"] >= 1, seen
    assert seen["with_key"] == [], seen


class _ArgvSampler:
    """Samples every process's argv on a VM in a loop until stopped, keeping the ones that hold a
    DH-HMAC-CHAP key. A planted process with a fake key shows that the sampler does see argv."""

    def __init__(self, vm):
        self.vm = vm
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.result = ""

    def _run(self):
        # 'DHHC-[1]:' matches a key but not the sampler's own command line
        self.result = self.vm.run(
            "rm -f /run/argv-stop /run/argv-hits; n=0; while [ ! -e /run/argv-stop ] && [ $n -lt 3000 ]; do "
            "for f in $(grep -l -a 'DHHC-[1]:' /proc/[0-9]*/cmdline 2>/dev/null); do "
            "tr '\\0' ' ' < $f >> /run/argv-hits 2>/dev/null; echo >> /run/argv-hits; done; "
            "n=$((n+1)); sleep 0.2; done; echo $n",
            timeout=1200,
        )

    def start(self):
        self.thread.start()
        time.sleep(2)

    def stop(self) -> dict:
        self.vm.run("sh -c 'sleep 2' DHHC-1:planted: ; sleep 1")
        self.vm.run("touch /run/argv-stop")
        self.thread.join(timeout=120)
        hits = [h for h in self.vm.run("cat /run/argv-hits 2>/dev/null || true").splitlines() if h.strip()]
        return {"samples": int(self.result.split()[-1]), "planted": sum("planted" in h for h in hits),
                "with_key": [h[:80] for h in hits if "planted" not in h]}


# --------------------------------------------------------------------------------------------
# 3. configfs traversal: the module itself refuses, on the real target


def _run_module(lab, host: str, module: str, args: dict) -> tuple[int, str]:
    """Run one collection module on one lab host with ad-hoc `ansible` (the spec would refuse
    these inputs before they reach a module: this shows the module's own line of defence)."""
    spec = load_spec(lab.spec)
    inv = build_inventory(spec, host_vars(spec))
    tmp = lab.dir / "adhoc"
    tmp.mkdir(exist_ok=True, mode=0o700)
    (tmp / "hosts.yml").write_text(unsafe_yaml(inv))
    text = json.dumps(args)
    assert "{{" not in text and "{%" not in text
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_dir()), ANSIBLE_HOST_KEY_CHECKING="True",
               ANSIBLE_NOCOLOR="True")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), host, "-i", str(tmp / "hosts.yml"), "-m", module,
         "-a", text],
        capture_output=True, text=True, timeout=600, env=env,
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("where", ["subsystem", "host"])
def test_configfs_traversal_is_refused_on_the_target(fresh, where):
    lab = fresh
    tgt = lab.vm("tgt1")
    before = tgt.run(CONFIGFS_SNAPSHOT)
    evil = "nqn.2024-01.io.x:train/../../../../tmp/nvmeofctl-escape"
    host_nqn = evil if where == "host" else "nqn.2024-01.io.x:gpu"
    args = {
        "hosts": [{"nqn": host_nqn}],
        "subsystems": [{"nqn": evil if where == "subsystem" else "nqn.2024-01.io.x:train",
                        "allowed_hosts": [host_nqn],
                        "namespaces": [{"nsid": 1, "device_path": "/var/lib/nvmeofctl/escape.img",
                                        "create_file": True, "size": 1 << 20}]}],
        "ports": [], "persist": False, "allow_disruptive": False,
    }
    rc, out = _run_module(lab, "tgt1", "nvmeofctl.fabric.nvmet_target", args)
    assert rc != 0, out
    assert "not a valid NQN" in out, out
    assert tgt.run(CONFIGFS_SNAPSHOT) == before  # nothing created in configfs or /tmp
    assert tgt.rc("test -e /tmp/nvmeofctl-escape")[0] != 0
    assert tgt.rc("test -e /var/lib/nvmeofctl/escape.img")[0] != 0


# --------------------------------------------------------------------------------------------
# 4. a mounted (or formatted) block device is not exported


def test_mounted_and_formatted_devices_are_refused(fresh):
    lab = fresh
    tgt = lab.vm("tgt1")
    dev = tgt.run("truncate -s 64M /var/tmp/nvmeofctl-mnt.img && losetup -f --show /var/tmp/nvmeofctl-mnt.img").strip()
    try:
        tgt.run(f"mkfs.ext4 -q -F {dev} && mkdir -p /mnt/nvmeofctl-mnt && mount {dev} /mnt/nvmeofctl-mnt",
                timeout=300)
        base = _spec_text(lab).replace("subsystems:\n", "backing_prefixes: [\"/dev/loop*\"]\nsubsystems:\n", 1)
        export = ("  - nqn: nqn.2024-01.io.nvmeofctl.lab:mounted\n    target: tgt1\n    allowed_gpu_nodes: [gpu2]\n"
                  f"    namespaces:\n      - nsid: 1\n        name: mounted\n        backing: {{device: {dev}}}\n")
        path = _write(lab, "mounted.yaml", base.rstrip("\n") + "\n" + export)
        before = tgt.run(CONFIGFS_SNAPSHOT)
        # --limit tgt1: the refusal is the target's (GPU nodes would only wait for the export)
        code, data, err = nvmeofctl_json("apply", "-f", str(path), "--limit", "tgt1")
        assert code == 5, err
        row = next(h for h in data["hosts"] if h["host"] == "tgt1")
        assert row["status"] == "failed"
        assert "mounted" in row["failure"] and "/mnt/nvmeofctl-mnt" in row["failure"], row
        assert "nqn.2024-01.io.nvmeofctl.lab:mounted" in row["failure"], row
        assert tgt.run(CONFIGFS_SNAPSHOT) == before  # the target changed nothing
        # unmounted, it still holds an ext4 filesystem the spec does not acknowledge
        tgt.run("umount /mnt/nvmeofctl-mnt")
        code, data, err = nvmeofctl_json("apply", "-f", str(path), "--limit", "tgt1")
        assert code == 5, err
        row = next(h for h in data["hosts"] if h["host"] == "tgt1")
        assert "ext4" in row["failure"] and "signature" in row["failure"], row
        assert tgt.run(CONFIGFS_SNAPSHOT) == before
        # the root disk is never exported either
        root = _write(lab, "rootdisk.yaml", path.read_text().replace(dev, "/dev/vda").replace(
            "backing_prefixes: [\"/dev/loop*\"]", "backing_prefixes: [\"/dev/loop*\", \"/dev/vd*\"]"))
        code, data, err = nvmeofctl_json("apply", "-f", str(root), "--limit", "tgt1")
        assert code == 5, err
        row = next(h for h in data["hosts"] if h["host"] == "tgt1")
        assert "root" in row["failure"], row
        assert tgt.run(CONFIGFS_SNAPSHOT) == before
    finally:
        tgt.run(f"umount /mnt/nvmeofctl-mnt 2>/dev/null; losetup -d {dev}; rm -f /var/tmp/nvmeofctl-mnt.img; "
                "rmdir /mnt/nvmeofctl-mnt 2>/dev/null; true", check=False)


# --------------------------------------------------------------------------------------------
# 7. a killed apply leaves no key on the control machine


def _keys(lab) -> list[str]:
    return [p.read_text().strip() for p in (lab.dir / "secrets").iterdir()]


def _files_holding(keys: list[str], roots: list[Path]) -> list[str]:
    hits = []
    for root in roots:
        if not root.exists():
            continue
        for p in root.rglob("*"):
            try:
                if p.is_file() and not p.is_symlink():
                    data = p.read_bytes()
                    if any(k.encode() in data for k in keys):
                        hits.append(str(p))
            except OSError:
                continue
    return hits


def _start_apply_and_wait_for_run_dir(spec: Path) -> tuple[subprocess.Popen, Path]:
    parent = runs_parent()
    before = set(parent.iterdir()) if parent.exists() else set()
    proc = subprocess.Popen([*CLI, "apply", "-f", str(spec), "--check"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        new = [p for p in (set(parent.iterdir()) if parent.exists() else set()) - before
               if (p / "inventory").exists()]
        if new:
            time.sleep(1)  # ansible-runner is under way
            return proc, new[0]
        if proc.poll() is not None:
            raise AssertionError(f"apply ended before its run dir appeared: {proc.communicate()}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("no run directory appeared")


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_a_killed_apply_leaves_no_key(fresh, sig):
    lab = fresh
    keys = _keys(lab)
    assert keys
    roots = [runs_parent(), Path("/tmp")]
    assert not _files_holding(keys, roots)
    proc, run_dir = _start_apply_and_wait_for_run_dir(lab.spec)
    assert _files_holding(keys, [run_dir])  # the keys really were in the run dir (0600, 0700 dir)
    assert run_dir.stat().st_mode & 0o077 == 0
    try:
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if sig != signal.SIGKILL:
        assert proc.returncode in (-sig, 128 + sig), proc.returncode
        assert not run_dir.exists()
        assert not _files_holding(keys, roots)
        return
    # SIGKILL cannot be caught: the next run removes the dead run's directory
    assert run_dir.exists()
    proc2 = nvmeofctl("apply", "-f", str(lab.spec), "--check", timeout=600)
    assert proc2.returncode == 0, proc2.stderr
    assert not run_dir.exists()
    assert not _files_holding(keys, roots)
