"""Data safety under faults: checksummed I/O (fio --verify=crc32c) runs on gpu1 against the
`train` namespace through each fault, and every scenario ends with 0 verify errors and I/O
resumed without a human.

- the target VM rebooted (its configfs, rxe device and exports come back at boot, gpu1's
  controllers reconnect by themselves);
- the target's fabric link down for 30 s;
- the GPU node rebooted mid-run (its connection comes back at boot; the data written before is
  verified after).

The I/O stall of a scenario is the longest completion latency fio saw (an I/O queued while the
path is down completes when it is back). Stalls are printed (see the resolution notes), never
asserted: timings are for benchmarks.
"""

from __future__ import annotations

import time

import pytest

from nvmeofctl.spec import load_spec

from .conftest import fio_json, nvmeofctl_json

pytestmark = pytest.mark.lab

NVMET = "/sys/kernel/config/nvmet"
# gpu1 writes to the second half of `train` (other tests use its first MiBs): two 64 MiB regions
SEQ_REGION = "--offset=128M --size=64M"   # written once, verified after the GPU node's reboot
RUN_REGION = "--offset=192M --size=64M"   # the writer that runs through the faults
# rate-capped: under software emulation an uncapped writer starves the 1-vCPU VM (Soft-RoCE runs
# in its kernel) until its sshd misses the 15 s banner timeout; 1 MiB/s still writes and verifies
# hundreds of MiB across the faults
FIO = ("fio --name=safety --filename={dev} --direct=1 --ioengine=libaio --iodepth=2 --bs=64k --rate=1m "
       "{region} --verify=crc32c --verify_fatal=1 --output-format=json --output={out}")


def _dev(vm, spec, name: str) -> str:
    uuid = next(str(n.uuid) for s in spec.subsystems for n in s.namespaces if n.name == name)
    dev = vm.run(f"readlink -f /dev/disk/by-id/nvme-uuid.{uuid}").strip()
    assert dev.startswith("/dev/nvme"), dev
    return dev


def _start_writer(vm, dev: str, out: str) -> None:
    """Random writes, each block verified shortly after it is written (verify_backlog), for as
    long as the scenario lasts (stopped with SIGINT)."""
    cmd = FIO.format(dev=dev, region=RUN_REGION, out=out) + " --rw=randwrite --verify_backlog=16 --time_based --runtime=1200"
    # fio's own messages (a verify failure names the offset and both checksums) go to OUT.log
    vm.run(f"rm -f {out} {out}.log; nohup {cmd} >{out}.log 2>&1 &")
    time.sleep(5)
    assert vm.run("pgrep -x fio || true").strip(), "fio did not start"


def _stop(vm, out: str) -> dict:
    vm.run("pkill -INT -x fio; for i in $(seq 120); do pgrep -x fio >/dev/null || break; sleep 1; done")
    return fio_json(vm.run(f"cat {out}"))


def _summary(what: str, result: dict, stall: bool = True) -> dict:
    """fio's outcome: errors, MiB written and read back for verification, and (for a job that
    ran through the fault) the I/O stall = the longest completion latency it saw."""
    job = result["jobs"][0]
    w, r = job["write"], job["read"]
    out = {"scenario": what, "error": job["error"], "written_mib": w["io_bytes"] >> 20,
           "verified_mib": r["io_bytes"] >> 20}
    if stall:
        out["stall_s"] = round(max(w["clat_ns"]["max"], r["clat_ns"]["max"]) / 1e9, 1)
    print(f"\n{what}: {out}")
    return out


def _progress(vm, dev: str, seconds: float = 10) -> bool:
    """I/O flows: the device's completed-sector count grows within `seconds`."""
    name = dev.rsplit("/", 1)[1]
    stat = f"awk '{{print $3+$7}}' /sys/block/{name}/stat"
    before = int(vm.run(stat).strip())
    time.sleep(seconds)
    return int(vm.run(stat).strip()) > before


def _live(vm) -> list[str]:
    out = vm.run("for c in /sys/class/nvme/nvme*; do [ -e $c/transport ] && "
                 "echo \"$(cat $c/subsysnqn) $(cat $c/state)\"; done; true")
    return sorted(line.split()[0] for line in out.splitlines() if line.endswith(" live"))


def _wait(pred, timeout: float, what: str, interval: float = 3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s: {what}")


def test_target_reboot_and_link_down_keep_data_intact(healthy_lab):
    """One fio writer through two faults: the target's fabric link down 30 s, then the target
    rebooted. After each, I/O resumes by itself; at the end 0 verify errors."""
    lab = healthy_lab
    spec = load_spec(lab.spec)
    gpu1, tgt1 = lab.vm("gpu1"), lab.vm("tgt1")
    dev = _dev(gpu1, spec, "train")
    out = "/root/fio-target.json"
    configfs_before = tgt1.run(f"cd {NVMET} && find . -type l | sort")
    try:
        _start_writer(gpu1, dev, out)
        # 1. link down for 30 s (the command restores the link by itself, even if SSH is slow)
        tgt1.run("nohup sh -c 'ip link set eth1 down; sleep 30; ip link set eth1 up' >/dev/null 2>&1 &")
        t0 = time.monotonic()
        time.sleep(32)
        _wait(lambda: _progress(gpu1, dev), 240, "I/O to resume after the link came back")
        link_resume = time.monotonic() - t0
        print(f"\nlink down 30 s: I/O flowing again {link_resume:.0f}s after the link went down")
        # 2. target reboot
        t0 = time.monotonic()
        tgt1.reboot()
        # the boot units restored configfs (every link) and the Soft-RoCE device
        assert tgt1.run(f"cd {NVMET} && find . -type l | sort") == configfs_before
        assert tgt1.run("rdma link show | grep -c ACTIVE").strip() == "1"
        _wait(lambda: _progress(gpu1, dev), 300, "I/O to resume after the target's reboot")
        print(f"\ntarget reboot: I/O flowing again {time.monotonic() - t0:.0f}s after the reboot began")
        # gpu2 (no I/O running) reconnected by itself too
        _wait(lambda: _live(lab.vm("gpu2")) == sorted(e.nqn for e in spec.exports_for("gpu2")), 240,
              "gpu2 to reconnect after the target's reboot")
        time.sleep(10)
        s = _summary("link down 30 s + target reboot", _stop(gpu1, out))
        assert s["error"] == 0, (s, gpu1.run(f"tail -n 30 {out}.log; dmesg | grep -i 'nvme\\|I/O error' | tail -n 30"))
        assert s["written_mib"] > 0 and s["verified_mib"] > 0, s
    finally:
        gpu1.run("pkill -INT -x fio || true", check=False)
        tgt1.run("ip link set eth1 up", check=False)


def test_gpu_node_reboot_mid_run_reconnects_and_data_written_before_verifies(healthy_lab):
    """gpu1 writes a region sequentially (every block checksummed), keeps writing, is rebooted
    mid-run; after the reboot its connection is back without a human, and the region written
    before the reboot verifies clean."""
    lab = healthy_lab
    spec = load_spec(lab.spec)
    gpu1 = lab.vm("gpu1")
    dev = _dev(gpu1, spec, "train")
    base = FIO.format(dev=dev, region=SEQ_REGION, out="/root/fio-seq.json")
    try:
        gpu1.run(f"{base} --rw=write --do_verify=0", timeout=900)  # the data to verify later
        _start_writer(gpu1, dev, "/root/fio-mid.json")  # ...and the run that the reboot cuts
        gpu1.run("sync")
        t0 = time.monotonic()
        gpu1.reboot()
        wants = sorted(e.nqn for e in spec.exports_for("gpu1"))

        _wait(lambda: _live(gpu1) == wants, 300, "gpu1's connections to come back after its reboot")
        assert gpu1.run("cat /etc/nvme/hostnqn").strip() == spec.host("gpu1").host_nqn
        print(f"\ngpu1 reboot: connections live again {time.monotonic() - t0:.0f}s after the reboot began")
        dev = _dev(gpu1, spec, "train")
        # verify_only re-runs the sequential job's layout and checks every block's header
        # (offset, seed) and crc32c without writing
        verify = FIO.format(dev=dev, region=SEQ_REGION, out="/root/fio-verify.json")
        res = gpu1.rc(f"{verify} --rw=write --verify_only", timeout=900)
        result = fio_json(gpu1.run("cat /root/fio-verify.json"))
        s = _summary("gpu1 reboot, verify after", result, stall=False)  # a verify-only pass
        assert res[0] == 0 and s["error"] == 0, (res, s)
        assert s["verified_mib"] == 64, s
        # and the tool agrees nothing is left to do
        code, data, err = nvmeofctl_json("apply", "-f", str(lab.spec))
        assert code == 0, err
        assert all(st["changed"] == 0 for st in data["stats"].values()), data["stats"]
        assert all(h["status"] == "ok" and not h["changes"] for h in data["hosts"]), data["hosts"]
    finally:
        gpu1.run("pkill -INT -x fio || true", check=False)
