"""DH-HMAC-CHAP end to end on the lab: authentication really happens, a wrong key is refused
within the tool's own bound naming authentication, and a key rotation re-authenticates the live
controller in place while a reader keeps reading.

The lab spec exports `ckpt` to gpu1 with bidirectional DH-HMAC-CHAP (host and controller keys
in the lab's secrets/ folder). Every fault is undone in `finally`, and `healthy_lab` restores
the `provisioned` checkpoint if a test leaves the lab damaged anyway.
"""

from __future__ import annotations

import os
import time

import pytest

from nvmeofctl.lab.clusterspec import generate_dhchap_secret
from nvmeofctl.spec import load_spec

from .conftest import fio_json, nvmeofctl, nvmeofctl_json

pytestmark = pytest.mark.lab

NVMET = "/sys/kernel/config/nvmet"


def _ckpt(spec):
    return next(s for s in spec.subsystems if s.nqn.endswith(":ckpt"))


def _ctrl_of(vm, nqn: str) -> str | None:
    out = vm.run(f"grep -lx '{nqn}' /sys/class/nvme/nvme*/subsysnqn 2>/dev/null || true")
    paths = out.split()
    return paths[0].split("/")[4] if paths else None


def _uptime(vm) -> float:
    return float(vm.run("cut -d' ' -f1 /proc/uptime").strip())


def _kernel_log_since(vm, since: float) -> list[str]:
    """Kernel log lines stamped at or after `since` (seconds of uptime)."""
    lines = []
    for line in vm.run("dmesg").splitlines():
        if line.startswith("[") and "]" in line:
            try:
                stamp = float(line[1:line.index("]")])
            except ValueError:
                continue
            if stamp >= since:
                lines.append(line[line.index("]") + 1:].strip())
    return lines


def test_authentication_happens_on_connect(healthy_lab):
    """(a) gpu1 connects to ckpt with the spec's keys and both ends log the negotiation."""
    lab = healthy_lab
    spec = load_spec(lab.spec)
    gpu1, tgt1 = lab.vm("gpu1"), lab.vm("tgt1")
    nqn = _ckpt(spec).nqn
    name = _ctrl_of(gpu1, nqn)
    assert name, "gpu1 has no ckpt controller on the provisioned lab"
    since_gpu, since_tgt = _uptime(gpu1), _uptime(tgt1)
    try:
        gpu1.run(f"nvme disconnect -d {name}", timeout=60)  # out of band: the next apply reconnects
        code, data, err = nvmeofctl_json("apply", "-f", str(lab.spec), "--limit", "gpu1")
        assert code == 0, err
        changes = [c for h in data["hosts"] for c in h["changes"]]
        assert [c["action"] for c in changes if nqn in c["object"]] == ["connect"], changes
        new = _ctrl_of(gpu1, nqn)
        log = [line for line in _kernel_log_since(gpu1, since_gpu) if f"{new}:" in line]
        # host side: DH-HMAC-CHAP negotiated with the spec's hash and group, and the controller
        # proved its own key back (bidirectional)
        assert f"nvme {new}: qid 0: authenticated with hash hmac(sha256) dhgroup ffdhe2048" in log, log
        assert f"nvme {new}: qid 0: controller authenticated" in log, log
        # target side: the controller for gpu1 was created with DH-HMAC-CHAP
        tlog = _kernel_log_since(tgt1, since_tgt)
        made = [line for line in tlog if "for subsystem " + nqn in line and spec.host("gpu1").host_nqn in line]
        assert made and all("with DH-HMAC-CHAP" in line for line in made), tlog
    finally:
        if not _ctrl_of(gpu1, nqn):
            nvmeofctl("apply", "-f", str(lab.spec), "--limit", "gpu1")


def test_wrong_key_on_the_target_is_refused_naming_authentication(healthy_lab):
    """(b) the target's key for gpu1 changed out of band: gpu1's connect is refused, the error
    names DH-HMAC-CHAP authentication, and the apply ends within the tool's connect bound."""
    lab = healthy_lab
    spec = load_spec(lab.spec)
    gpu1, tgt1 = lab.vm("gpu1"), lab.vm("tgt1")
    nqn = _ckpt(spec).nqn
    host_dir = f"{NVMET}/hosts/{spec.host('gpu1').host_nqn}"
    name = _ctrl_of(gpu1, nqn)
    assert name
    try:
        tgt1.run(f"echo '{generate_dhchap_secret()}' > {host_dir}/dhchap_key")  # the fault
        gpu1.run(f"nvme disconnect -d {name}", timeout=60)
        t0 = time.monotonic()
        code, data, err = nvmeofctl_json("apply", "-f", str(lab.spec), "--limit", "gpu1")
        elapsed = time.monotonic() - t0
        print(f"\nwrong key: apply exit {code} after {elapsed:.0f}s")
        assert code == 5, (code, err)
        row = next(h for h in data["hosts"] if h["host"] == "gpu1")
        assert row["status"] == "failed"
        failure = row["failure"] or ""
        assert "DH-HMAC-CHAP" in failure and "authentic" in failure, failure
        assert nqn in failure
        # the secret never shows, not even the wrong one
        assert "DHHC-1:" not in failure and "DHHC-1:" not in err
        # bounded by the tool (connect_timeout 30 s per attempt, no retry of an auth failure),
        # not by the kernel's ~370 s hang
        assert elapsed < 300, elapsed
    finally:
        # undo: the target's key back from the spec (gpu1 is not in this run: disruptive), then
        # gpu1 reconnects; healthy_lab restores the checkpoint if a blocked connect remains
        nvmeofctl("apply", "-f", str(lab.spec), "--limit", "tgt1", "--allow-disruptive")
        nvmeofctl("apply", "-f", str(lab.spec), "--limit", "gpu1")


def test_key_rotation_reauthenticates_in_place_under_a_running_reader(healthy_lab):
    """(c) a new host key in the key file: plan says rekey (not disruptive), apply changes the
    target first and re-authenticates gpu1's live controller in place: same controller, a
    reader running through it sees no I/O error."""
    lab = healthy_lab
    spec = load_spec(lab.spec)
    gpu1 = lab.vm("gpu1")
    ckpt = _ckpt(spec)
    key_rel = ckpt.dhchap["gpu1"].secret_file
    key_path = (lab.spec.parent / key_rel)
    original = key_path.read_text()
    ns_uuid = str(ckpt.namespaces[0].uuid)
    name = _ctrl_of(gpu1, ckpt.nqn)
    cntlid = gpu1.run(f"cat /sys/class/nvme/{name}/cntlid").strip()
    dev = gpu1.run(f"readlink -f /dev/disk/by-id/nvme-uuid.{ns_uuid}").strip()
    # rate-capped (see test_08): the VM must stay responsive for SSH while it reads
    reader = ("nohup fio --name=reader --filename=%s --rw=read --bs=64k --direct=1 --ioengine=libaio "
              "--iodepth=2 --rate=2m --time_based --runtime=600 --output-format=json --output=/root/reader.json "
              ">/dev/null 2>&1 &" % dev)
    try:
        gpu1.run(reader)
        time.sleep(3)
        rotated = generate_dhchap_secret()
        fd = os.open(key_path, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, (rotated + "\n").encode())
        finally:
            os.close(fd)
        code, plan, err = nvmeofctl_json("plan", "-f", str(lab.spec))
        assert code == 0, err
        by_host = {h["host"]: h["changes"] for h in plan["hosts"]}
        # the key is gpu1's on tgt1 (configfs hosts/<nqn>/dhchap_key), so both its paths to tgt1
        # (train and ckpt) re-authenticate, in place
        paths = [c for c in by_host["gpu1"] if not c["object"].startswith("file ")]
        assert sorted((c["object"].rsplit(":", 1)[1], c["action"], c["disruptive"]) for c in paths) == [
            ("ckpt", "rekey", False), ("train", "rekey", False)], by_host["gpu1"]
        # and the boot-time connections file, which holds the key, is rewritten (the plan covers it)
        assert [(c["object"], c["action"], c["disruptive"]) for c in by_host["gpu1"] if c not in paths] == [
            ("file /etc/nvmeofctl/connections.json", "update", False)], by_host["gpu1"]
        tgt = [c for c in by_host["tgt1"] if c["action"] == "update"]
        assert tgt and not any(c["disruptive"] for c in tgt), tgt
        assert plan["disruptive"] == 0
        since = _uptime(gpu1)
        code, data, err = nvmeofctl_json("apply", "-f", str(lab.spec))  # no --allow-disruptive
        assert code == 0, err
        assert data["order"]["playbook"] == "site_ordered.yml", data["order"]
        # the same controller, re-authenticated in place with the new key
        assert _ctrl_of(gpu1, ckpt.nqn) == name
        assert gpu1.run(f"cat /sys/class/nvme/{name}/cntlid").strip() == cntlid
        assert gpu1.run(f"cat /sys/class/nvme/{name}/state").strip() == "live"
        log = [line for line in _kernel_log_since(gpu1, since) if f"{name}:" in line]
        assert any("qid 0: authenticated" in line for line in log), log
        assert gpu1.run(f"cat /sys/class/nvme/{name}/dhchap_secret").strip() == rotated
        time.sleep(3)
        gpu1.run("pkill -INT -x fio; for i in $(seq 60); do pgrep -x fio >/dev/null || break; sleep 1; done")
        result = fio_json(gpu1.run("cat /root/reader.json"))
        job = result["jobs"][0]
        print(f"\nrotation: reader read {job['read']['io_bytes'] >> 20} MiB, "
              f"max latency {job['read']['clat_ns']['max'] / 1e6:.0f} ms")
        assert job["error"] == 0 and job["read"]["io_bytes"] > 0
    finally:
        gpu1.run("pkill -INT -x fio || true; rm -f /root/reader.json")
        fd = os.open(key_path, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, original.encode())
        finally:
            os.close(fd)
        nvmeofctl("apply", "-f", str(lab.spec), "--allow-disruptive")
