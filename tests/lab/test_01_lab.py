"""The lab behaves like real hosts: SSH with pinned host keys, a shared fabric, the kernel we need."""

from __future__ import annotations

import json

from nvmeofctl.lab.keys import known_hosts_line, write_ed25519_keypair
from nvmeofctl.remote.ssh import SshTarget, run_on

from .conftest import LAB, nvmeofctl

MODULES = ["rdma_rxe", "nvmet", "nvmet_rdma", "nvmet_tcp", "nvme_rdma", "nvme_tcp"]


def test_default_lab_is_one_target_two_gpu_nodes_all_ssh_ready(lab):
    assert {(v["name"], v["role"]) for v in lab.up_json["vms"]} == {
        ("tgt1", "target"), ("gpu1", "gpu_node"), ("gpu2", "gpu_node")
    }
    status = nvmeofctl("lab", "status", "--name", LAB, "--output", "json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["schema_version"] == 1 and data["ready"] is True
    assert all(v["running"] and v["ssh_ready"] for v in data["vms"])
    assert "booted" in data["vms"][0]["snapshots"]


def test_ssh_verifies_pinned_host_keys(lab, tmp_path):
    for vm in lab.vms.values():
        assert vm.run("hostname").strip() == vm.name
    vm = lab.vm("gpu1")
    # a known_hosts that pins another key for the same endpoint must be refused
    impostor = write_ed25519_keypair(tmp_path / "other", "x")
    bad = tmp_path / "known_hosts"
    bad.write_text(known_hosts_line(vm.target.address, vm.target.port, impostor) + "\n")
    res = run_on(SshTarget(vm.name, vm.target.address, vm.target.port, "root", vm.target.key_file, bad), "true")
    assert not res.ok and res.kind == "hostkey"
    # an endpoint missing from known_hosts is refused too (no trust on first use)
    empty = tmp_path / "empty"
    empty.write_text("")
    res = run_on(SshTarget(vm.name, vm.target.address, vm.target.port, "root", vm.target.key_file, empty), "true")
    assert not res.ok and res.kind == "hostkey"


def test_each_vm_has_its_own_identity(lab):
    seen = {}
    for vm in lab.vms.values():
        out = vm.run("cat /etc/ssh/ssh_host_ed25519_key.pub; cat /etc/machine-id; ip -4 -o addr show dev eth1")
        key, machine_id, addr = out.strip().splitlines()
        assert f"inet {vm.fabric_ip}/24" in addr
        seen.setdefault("key", set()).add(key.split()[1])
        seen.setdefault("mid", set()).add(machine_id)
    assert len(seen["key"]) == len(lab.vms) and len(seen["mid"]) == len(lab.vms)


def test_fabric_joins_every_vm_on_one_segment(lab):
    ips = {vm.name: vm.fabric_ip for vm in lab.vms.values()}
    for vm in lab.vms.values():
        others = [ip for name, ip in ips.items() if name != vm.name]
        script = "; ".join(f"ping -c 1 -W 5 {ip} >/dev/null && echo ok {ip} || echo FAIL {ip}" for ip in others)
        out = vm.run(script, timeout=60)
        assert "FAIL" not in out, f"{vm.name}: {out}"
        assert sorted(line.split()[1] for line in out.strip().splitlines()) == sorted(others)


def test_kernel_has_the_modules_and_dhchap(lab):
    for vm in lab.vms.values():
        out = vm.run(
            f"modprobe -a {' '.join(MODULES)} && for m in {' '.join(MODULES)}; do test -d /sys/module/$m && echo $m; done; "
            "uname -r; grep -E '^CONFIG_NVME_(TARGET_)?AUTH=' /boot/config-$(uname -r)"
        )
        lines = out.split()
        assert lines[: len(MODULES)] == MODULES, out
        assert lines[len(MODULES)].startswith("6.12."), out
        assert "CONFIG_NVME_AUTH=y" in out or "CONFIG_NVME_AUTH=m" in out, out
        assert "CONFIG_NVME_TARGET_AUTH=y" in out, out


def test_lab_up_on_a_running_lab_changes_nothing(lab):
    before = json.loads(nvmeofctl("lab", "status", "--name", LAB, "--output", "json").stdout)
    proc = nvmeofctl("lab", "up", "--name", LAB, "--output", "json")
    assert proc.returncode == 0, proc.stderr
    assert "already up: nothing to do" in proc.stderr
    after = json.loads(proc.stdout)
    assert [v["pid"] for v in after["vms"]] == [v["pid"] for v in before["vms"]]


def test_down_then_up_resumes_the_saved_state(lab):
    marker = "/root/nvmeofctl-resume-marker"
    lab.vm("tgt1").run(f"echo kept > {marker}")
    down = nvmeofctl("lab", "down", "--name", LAB, timeout=600)
    assert down.returncode == 0, down.stderr
    stopped = json.loads(nvmeofctl("lab", "status", "--name", LAB, "--output", "json").stdout)
    assert not any(v["running"] for v in stopped["vms"])
    assert all("saved" in v["snapshots"] for v in stopped["vms"])
    up = nvmeofctl("lab", "up", "--name", LAB, "--output", "json", timeout=900)
    assert up.returncode == 0, up.stderr
    assert "restoring saved state 'saved'" in up.stderr
    assert lab.vm("tgt1").run(f"cat {marker}").strip() == "kept"
    # the guest clock was set to now after the restore
    import time

    guest = float(lab.vm("gpu1").run("date +%s").strip())
    assert abs(guest - time.time()) < 30
