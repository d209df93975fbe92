"""Day-2 operations on the provisioned lab (issue #11), read back from the VMs themselves:
`status` against what the kernel shows, `topology`, `connect`/`disconnect` on one node (a manual
`nvme disconnect` repaired, a path held open refused), and `teardown` (refused while mounted,
then everything nvmeofctl created gone, then idempotent). Each test undoes its faults in
`finally`; teardown restores the `provisioned` checkpoint."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import pytest

from nvmeofctl.spec import load_spec

from .conftest import PROVISIONED, lab_problems, nvmeofctl, nvmeofctl_json

pytestmark = pytest.mark.lab


def _nqn(spec, name):
    return next(s.nqn for s in spec.subsystems if any(ns.name == name for ns in s.namespaces))


def _uuid(spec, name):
    return next(str(ns.uuid) for s in spec.subsystems for ns in s.namespaces if ns.name == name)


def _live(vm) -> dict[str, str]:
    """subsysnqn -> state of the node's fabrics controllers (sysfs)."""
    out = vm.run("for c in /sys/class/nvme/nvme*; do [ -e $c/transport ] && echo \"$(cat $c/subsysnqn) "
                 "$(cat $c/state)\"; done; true")
    return dict(line.split(" ", 1) for line in out.strip().splitlines() if line)


def _paths(status: dict) -> dict[tuple[str, str], dict]:
    return {(ns["name"], p["node"]): p for ns in status["namespaces"] for p in ns["paths"]}


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(3)
    raise AssertionError(f"timed out waiting for {what}")


def test_status_topology_connect_and_disconnect_on_one_node(healthy_lab, tmp_path):
    lab = healthy_lab
    spec = load_spec(lab.spec)
    gpu1, gpu2 = lab.vm("gpu1"), lab.vm("gpu2")
    train, ckpt = _nqn(spec, "train"), _nqn(spec, "ckpt")
    try:
        # 1. status of the provisioned lab: what the spec says, each device checked on its node
        code, st, err = nvmeofctl_json("status", "-f", str(lab.spec))
        assert code == 0 and st["drift"] == 0, err
        paths = _paths(st)
        assert sorted(paths) == [("ckpt", "gpu1"), ("train", "gpu1"), ("train", "gpu2")]
        for (name, node), p in paths.items():
            assert p["state"] == "connected" and p["transport"] == "rdma" and p["traddr"] == "192.168.100.11"
            dev = p["device"]
            uuid = lab.vm(node).run(f"cat /sys/block/{dev.rsplit('/', 1)[1]}/uuid").strip()
            assert uuid == _uuid(spec, name), (name, node, dev)  # the device IS that namespace

        # 2. topology: a valid SVG naming every host and namespace
        svg = tmp_path / "fabric.svg"
        proc = nvmeofctl("topology", "-f", str(lab.spec), "--format", "svg", "--out", str(svg))
        assert proc.returncode == 0, proc.stderr
        texts = [t.text for t in ET.parse(svg).getroot().iter("{http://www.w3.org/2000/svg}text")]
        for name in ("tgt1", "gpu1", "gpu2", "train", "ckpt"):
            assert name in texts

        # 3. a manual disconnect on gpu2 shows as missing; connect refuses what gpu2 is not given,
        #    and restores what it is
        gpu2.run(f"nvme disconnect -n {train}")
        code, st, _ = nvmeofctl_json("status", "-f", str(lab.spec))
        assert code == 10 and _paths(st)[("train", "gpu2")]["state"] == "missing" and st["drift"] == 1
        proc = nvmeofctl("connect", "-f", str(lab.spec), "--node", "gpu2", "--namespace", "ckpt")
        assert proc.returncode == 2 and "is not exported to gpu2" in proc.stderr, proc.stderr
        assert train not in _live(gpu2)
        code, res, err = nvmeofctl_json("connect", "-f", str(lab.spec), "--node", "gpu2")
        assert code == 0, err
        assert [c["action"] for c in res["changes"] if c["object"].startswith("connection:")] == ["connect"]
        _wait(lambda: _live(gpu2).get(train) == "live", 60, "gpu2's train path live again")
        code, st, _ = nvmeofctl_json("status", "-f", str(lab.spec))
        assert code == 0 and st["drift"] == 0

        # 4. disconnect refuses a namespace held open, naming device and process; nothing changes
        dev = _paths(st)[("ckpt", "gpu1")]["device"]
        gpu1.run(f"setsid sh -c 'exec sleep 600 < {dev}' >/dev/null 2>&1 & echo $! > /root/holder.pid")
        _wait(lambda: gpu1.rc("pgrep -x sleep")[0] == 0, 20, "the holder process")
        proc = nvmeofctl("disconnect", "-f", str(lab.spec), "--node", "gpu1", "--namespace", "ckpt")
        assert proc.returncode == 7, proc.stderr
        assert f"{dev} open by pid" in proc.stderr and "(sleep)" in proc.stderr, proc.stderr
        assert _live(gpu1) == {train: "live", ckpt: "live"}
        gpu1.run("pkill -x sleep; true")

        # 5. ... and, once free, drops exactly that path (across reboots too: the boot file says so)
        code, res, err = nvmeofctl_json("disconnect", "-f", str(lab.spec), "--node", "gpu1", "--namespace", "ckpt")
        assert code == 0, err
        _wait(lambda: ckpt not in _live(gpu1), 60, "gpu1's ckpt path gone")
        assert _live(gpu1) == {train: "live"}
        assert ckpt not in gpu1.run("cat /etc/nvmeofctl/connections.json")
        code, st, _ = nvmeofctl_json("status", "-f", str(lab.spec))
        assert code == 10 and _paths(st)[("ckpt", "gpu1")]["state"] == "missing"
        code, res, err = nvmeofctl_json("connect", "-f", str(lab.spec), "--node", "gpu1")
        assert code == 0, err
        _wait(lambda: _live(gpu1) == {train: "live", ckpt: "live"}, 60, "gpu1's paths back")
        assert ckpt in gpu1.run("cat /etc/nvmeofctl/connections.json")
        code, again, _ = nvmeofctl_json("connect", "-f", str(lab.spec), "--node", "gpu1")
        assert code == 0 and again["changes"] == []  # nothing left to do
    finally:
        gpu1.run("pkill -x sleep; true", check=False)
        for vm, nqn in ((gpu2, train),):
            if nqn not in _live(vm):
                nvmeofctl("connect", "-f", str(lab.spec), "--node", vm.name)
        if ckpt not in _live(gpu1) or train not in _live(gpu1):
            nvmeofctl("connect", "-f", str(lab.spec), "--node", "gpu1")


def test_teardown_refuses_while_mounted_then_removes_everything_once(healthy_lab):
    from nvmeofctl.lab.manager import LabManager

    lab = healthy_lab
    spec = load_spec(lab.spec)
    gpu1, tgt1 = lab.vm("gpu1"), lab.vm("tgt1")
    ours = sorted(s.nqn for s in spec.subsystems)
    try:
        code, st, _ = nvmeofctl_json("status", "-f", str(lab.spec))
        assert code == 0
        dev = _paths(st)[("ckpt", "gpu1")]["device"]
        gpu1.run(f"mkfs.ext4 -q -F {dev} && mkdir -p /mnt/ckpt && mount {dev} /mnt/ckpt")
        # 1. mounted: refused, naming node, device and mountpoint; nothing changed anywhere
        code, res, err = nvmeofctl_json("teardown", "-f", str(lab.spec), "--yes")
        assert code == 7, err
        assert f"gpu1: {dev} mounted on /mnt/ckpt" in err, err
        assert lab_problems(lab) == []
        gpu1.run("umount /mnt/ckpt")
        # 2. off a terminal without --yes: refused too; --check lists and changes nothing
        proc = nvmeofctl("teardown", "-f", str(lab.spec))
        assert proc.returncode == 2 and "--yes" in proc.stderr, proc.stderr
        code, chk, err = nvmeofctl_json("teardown", "-f", str(lab.spec), "--check")
        assert code == 0 and all(h["changes"] for h in chk["hosts"]), err
        assert lab_problems(lab) == []
        # 3. torn down: read back from each VM
        code, res, err = nvmeofctl_json("teardown", "-f", str(lab.spec), "--yes")
        assert code == 0, err
        assert res["kept_backing_files"] == ["tgt1:/var/lib/nvmeofctl/train.img", "tgt1:/var/lib/nvmeofctl/ckpt.img"]
        subs = tgt1.run("ls /sys/kernel/config/nvmet/subsystems /sys/kernel/config/nvmet/ports").split()
        assert not set(ours) & set(subs), subs
        for vm in lab.vms.values():
            if vm.role == "gpu_node":
                assert _live(vm) == {}, vm.name
            units = vm.run("ls /etc/systemd/system /etc/systemd/system/multi-user.target.wants | grep nvmeofctl; true")
            assert units.strip() == "", (vm.name, units)
            left = vm.run("ls /etc/nvmeofctl /usr/local/lib/nvmeofctl 2>/dev/null; true").split()
            assert not {"nvmet.json", "connections.json", "nvmeofctl-boot.pyz", "rdma-restore.sh",
                        "rdma-device"} & set(left), (vm.name, left)
        assert {"ckpt.img", "train.img"} <= set(tgt1.run("ls /var/lib/nvmeofctl").split())  # data kept
        # 4. again: nothing to remove, no Ansible run
        code, again, err = nvmeofctl_json("teardown", "-f", str(lab.spec), "--yes")
        assert code == 0 and [h["changes"] for h in again["hosts"]] == [[], [], []], err
        assert "tearing down" not in err
    finally:
        gpu1.run("umount /mnt/ckpt 2>/dev/null; true", check=False)
        LabManager(lab.name).restore(PROVISIONED)
        _wait(lambda: lab_problems(lab) == [], 180, "the provisioned lab back")
