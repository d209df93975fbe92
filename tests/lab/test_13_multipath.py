"""No single point of failure (issue #10), on a lab of its own: two targets (tgt1, tgt2) that
both export one disk attached to both VMs (`lab up --shared-disk`), and one GPU node (gpu1) with
native NVMe multipath: one block device, a controller (path) through each target, ANA-optimized
through tgt1. Every VM has two fabric NICs (`--rails 2`); scenarios 1-4 below use rail 1 only,
the rails scenario at the end adds rail 2.

One checksummed fio writer+reader (fio --verify=crc32c with verify_backlog: every block read back
and checked shortly after it is written) runs on gpu1 through the whole scenario:

1. `rollout` refuses, changing nothing, while tgt2's fabric link is down: the namespace would
   lose its last live path (gpu1 and the namespace are named);
2. with the link back, `rollout --reboot` reboots tgt1 then tgt2 in turn: 0 I/O errors, 0 verify
   errors; the longest I/O stall (fio's longest completion latency) and the throughput before,
   during and after are printed (never asserted: timings are for benchmarks);
3. a port move (`fabric.port` 4420 -> 4421 on both targets): `plan` keeps it DISRUPTIVE (every
   path moves) and names `rollout` and the path that carries the I/O meanwhile; `rollout` moves
   tgt1's path, then tgt2's (the GPU node's other path untouched each time): 0 I/O errors, and
   `plan` shows 0 changes afterwards;
4. health counts the live paths per namespace and their ANA states;
5. rails (the issue's scenario 1: two rails, one target): the spec gains rail 2 on every host and
   a subsystem only tgt1 serves; gpu1 gets a path to it on each rail. A second checksummed fio
   runs on it while tgt1's rail 1 is down: I/O continues on rail 2 with no error, health says
   degraded (exit 10) naming the path; link back up, every path live again (health: paths and
   links ok), and health exit 0 once the I/O has stopped;
   rail 2 dropped from the spec again: its ports, paths and boot units go.

The lab's VMs are the main lab's (`test`) image with another layout; the main lab is stopped
first (two labs at once overload a 2-core machine).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from nvmeofctl.remote.ssh import run_on

from .conftest import LAB, fio_json, nvmeofctl, nvmeofctl_json

pytestmark = pytest.mark.lab

MP_LAB = os.environ.get("NVMEOFCTL_TEST_MP_LAB", "test-mp")
NVMET = "/sys/kernel/config/nvmet"
FIO = ("fio --name=mp --filename={dev} --direct=1 --ioengine=libaio --iodepth=2 --bs=64k --rate=1m "
       "--offset=0 --size=96M --rw=randwrite --verify=crc32c --verify_backlog=16 --verify_fatal=1 "
       "--time_based --runtime=2400 --write_bw_log=/root/mp --log_avg_msec=1000 "
       "--output-format=json --output=/root/fio-mp.json")
RAILS_FIO = ("fio --name=rails --filename={dev} --direct=1 --ioengine=libaio --iodepth=2 --bs=64k --rate=1m "
             "--offset=0 --size=64M --rw=randwrite --verify=crc32c --verify_backlog=16 --verify_fatal=1 "
             "--time_based --runtime=1200 --write_bw_log=/root/rails --log_avg_msec=1000 "
             "--output-format=json --output=/root/fio-rails.json")


class Vm:
    def __init__(self, name: str) -> None:
        self.name = name

    def rc(self, command: str, timeout: float = 120) -> tuple[int, str, str]:
        from nvmeofctl.lab.manager import Lab

        lab = Lab(MP_LAB)
        res = run_on(lab.ssh_target(lab.layout().vm(self.name)), command, timeout=timeout)
        if not hasattr(res, "rc"):
            raise AssertionError(f"{self.name} unreachable: {res}")
        return res.rc, res.stdout, res.stderr

    def run(self, command: str, timeout: float = 120) -> str:
        rc, out, err = self.rc(command, timeout)
        assert rc == 0, f"{self.name}: {command!r} -> {rc}: {err}"
        return out


@pytest.fixture(scope="module")
def mp_lab(state_dir):
    if os.environ.get("NVMEOFCTL_SKIP_LAB") == "1":
        pytest.skip("NVMEOFCTL_SKIP_LAB=1")
    nvmeofctl("lab", "down", "--name", LAB, "--no-save", timeout=300)  # the main lab, if it runs
    fresh = [] if os.environ.get("NVMEOFCTL_TEST_REUSE") == "1" else ["--fresh"]
    _code, status, _err = nvmeofctl_json("lab", "status", "--name", MP_LAB)  # {} when there is none
    if status.get("vms") and status.get("rails") != 2:  # made by an older suite: another shape
        nvmeofctl("lab", "destroy", "--name", MP_LAB, "--yes", timeout=300)
    proc = nvmeofctl("lab", "up", "--name", MP_LAB, "--targets", "2", "--gpu-nodes", "1", "--shared-disk",
                     "--rails", "2", *fresh, "--output", "json", timeout=1800)
    sys.stderr.write(proc.stderr)
    assert proc.returncode == 0, f"lab up failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}"
    spec = Path(json.loads(proc.stdout)["spec"])
    yield spec
    if os.environ.get("NVMEOFCTL_KEEP_LAB") != "1":
        nvmeofctl("lab", "down", "--name", MP_LAB, "--no-save", timeout=300)


def _paths(gpu: Vm) -> dict[str, tuple[str, str, str]]:
    """Path device (nvmeXcYnZ) -> (controller state, its target address, ANA state)."""
    out = gpu.run("for c in /sys/class/nvme/nvme*; do [ -e $c/transport ] || continue; "
                  "for p in $c/nvme*c*n*; do [ -e $p/ana_state ] || continue; "
                  "echo \"${p##*/} $(cat $c/state) $(sed 's/,.*//; s/traddr=//' $c/address) $(cat $p/ana_state)\"; "
                  "done; done; true")
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            rows[parts[0]] = (parts[1], parts[2], parts[3])
    return rows


def _wait(pred, timeout: float, what: str, interval: float = 3):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last is True:
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s: {what} (last: {last})")


def _bw_samples(log: str) -> list[tuple[float, int]]:
    """(seconds since fio's start, KiB/s) per line of fio's per-second bandwidth log (msec, KiB/s, ...)."""
    samples = []
    for line in log.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0].isdigit():
            samples.append((int(parts[0]) / 1000.0, int(parts[1])))
    return samples


def _bw_windows(log: str, windows: list[tuple[str, float, float]]) -> dict[str, float]:
    """Mean write throughput (KiB/s) per window (name, from, to: seconds since fio's start, gpu1's
    clock), from fio's per-second bandwidth log (msec since fio's start)."""
    samples = _bw_samples(log)
    out = {}
    for name, lo, hi in windows:
        vals = [bw for t, bw in samples if lo <= t < hi]
        out[name] = round(sum(vals) / len(vals), 1) if vals else 0.0
    return out


def _stall_windows(log: str, windows: list[tuple[str, float, float]]) -> dict[str, int]:
    """The longest write stall (whole seconds) per window, from the same per-second log: the
    longest run of seconds in which no write completed (a 1 s sample of 0, or none). fio's longest
    completion latency (``stall_s``) is the whole job's; this splits it by scenario."""
    done = [t for t, bw in _bw_samples(log) if bw > 0]
    out = {}
    for name, lo, hi in windows:
        ts = [lo] + [t for t in done if lo <= t < hi] + [min(hi, done[-1] if done else hi)]
        out[name] = max(0, round(max(b - a for a, b in zip(ts, ts[1:])) - 1)) if len(ts) > 1 else 0
    return out


def _one_rail(text: str) -> str:
    """The lab's spec without its rail 2 (each host's `rails:` entry)."""
    out = re.sub(r"\n    rails:[^\n]*\n      - \{interface: eth2[^\n]*", "", text)
    assert "eth2" not in out and "eth2" in text, text
    return out


RAILED = """\
  - nqn: nqn.2024-01.io.nvmeofctl.test-mp:railed
    target: tgt1
    allowed_gpu_nodes: [gpu1]
    namespaces:
      - {nsid: 1, name: railed, backing: {file: /var/lib/nvmeofctl/railed.img, size: 128MiB}}
"""


def _io_done(vm: Vm, dev: str) -> int:
    """Sectors read + written on a block device so far."""
    return int(vm.run(f"awk '{{print $3+$7}}' /sys/block/{dev.rsplit('/', 1)[1]}/stat").strip())


def test_dual_controller_rollout_keeps_io_running(mp_lab):
    lab_spec = mp_lab
    # scenarios 2-4 run on rail 1 (one path per target); rail 2 comes in for the rails scenario
    spec_path = lab_spec.parent / "cluster-1rail.yaml"
    spec_path.write_text(_one_rail(lab_spec.read_text()))
    gpu, tgt1, tgt2 = Vm("gpu1"), Vm("tgt1"), Vm("tgt2")
    proc = nvmeofctl("apply", "-f", str(spec_path))
    assert proc.returncode == 0, f"apply:\n{proc.stdout}\n{proc.stderr}"

    # ---- both targets export the same subsystem with disjoint controller ids and ANA groups
    from nvmeofctl.spec import load_spec

    spec = load_spec(spec_path)
    sub = spec.subsystems[0]
    nqn, uuid = sub.nqn, str(sub.namespaces[0].uuid)
    for vm, grp2, cmin in ((tgt1, "optimized", "1"), (tgt2, "non-optimized", "1025")):
        out = vm.run(f"cd {NVMET}/subsystems/{nqn} && cat attr_cntlid_min namespaces/1/ana_grpid "
                     f"namespaces/1/device_path ../../ports/1/ana_groups/2/ana_state")
        assert out.split() == [cmin, "2", "/dev/disk/by-id/virtio-SHARED0", grp2], (vm.name, out)
    # gpu1: one block device for the namespace, one path through each target
    dev = gpu.run(f"readlink -f /dev/disk/by-id/nvme-uuid.{uuid}").strip()
    assert dev.startswith("/dev/nvme") and "c" not in dev.rsplit("/", 1)[1][4:], dev
    _wait(lambda: sorted((s, a) for s, _ip, a in _paths(gpu).values()) == [("live", "non-optimized"),
                                                                          ("live", "optimized")] or _paths(gpu),
          120, "two live paths, optimized and non-optimized")
    by_ip = {ip: ana for _s, ip, ana in _paths(gpu).values()}
    assert by_ip == {"192.168.100.11": "optimized", "192.168.100.12": "non-optimized"}, by_ip
    code, health, _err = nvmeofctl_json("health", "-f", str(spec_path), "--window", "0")
    paths = [f for f in health["findings"] if f["check"] == "nvme_paths"]
    assert [(f["status"], f["observed"].split(":")[0]) for f in paths] == [("ok", "2/2 paths carry I/O")], paths

    fio_started = False
    try:
        gpu.run(f"rm -f /root/fio-mp.json /root/mp_bw*.log; nohup {FIO.format(dev=dev)} >/root/fio-mp.log 2>&1 &")
        fio_started = True
        t_fio = float(gpu.run("date +%s.%N"))
        time.sleep(10)  # "before" throughput

        # ---- 1. refused while the partner path is down: nothing changes
        try:
            tgt2.run("ip link set eth1 down")
            _wait(lambda: any(s != "live" and ip == "192.168.100.12" for s, ip, _a in _paths(gpu).values())
                  or _paths(gpu), 120, "gpu1's path through tgt2 to leave live")
            ana_before = tgt1.run(f"cat {NVMET}/ports/1/ana_groups/2/ana_state")
            refused = nvmeofctl("rollout", "-f", str(spec_path), "--targets", "tgt1", "--reboot")
            assert refused.returncode == 7, refused.stderr
            assert "gpu1: namespace shared" in refused.stderr and "would lose its last live path" in refused.stderr, \
                refused.stderr
            assert tgt1.run(f"cat {NVMET}/ports/1/ana_groups/2/ana_state") == ana_before
            code, health, _err = nvmeofctl_json("health", "-f", str(spec_path), "--window", "0")
            # tgt2's own link checks fail (its link is down: exit 11); on gpu1 the namespace is
            # degraded, not failed: one path of two carries the I/O, the one down is named
            assert code == 11, health
            mine = [f for f in health["findings"] if f["host"] == "gpu1" and f["status"] in ("warn", "fail")]
            assert [f for f in mine if f["status"] == "fail"] == [], mine
            assert {("nvme_controller", "warn"), ("nvme_paths", "warn")} <= {(f["check"], f["status"]) for f in mine}
            paths = next(f for f in mine if f["check"] == "nvme_paths")
            assert paths["observed"].startswith("1/2 paths carry I/O") and "down: tgt2" in paths["observed"], paths
        finally:
            tgt2.run("ip link set eth1 up")
        _wait(lambda: sorted(s for s, _ip, _a in _paths(gpu).values()) == ["live", "live"] or _paths(gpu), 240,
              "both paths live again")

        # ---- 2. rolling reboot of both targets under I/O
        t_start = float(gpu.run("date +%s.%N"))
        code, record, err = nvmeofctl_json("rollout", "-f", str(spec_path), "--reboot", timeout=2400)
        t_end = float(gpu.run("date +%s.%N"))
        sys.stderr.write(err)
        assert code == 0, err
        assert [(s["batch"], s["step"]) for s in record["steps"]] == [
            (["tgt1"], "drain"), (["tgt1"], "reboot"), (["tgt1"], "restore"),
            (["tgt2"], "drain"), (["tgt2"], "reboot"), (["tgt2"], "restore")]
        assert by_ip == {ip: ana for _s, ip, ana in _paths(gpu).values()}  # back to the spec's ANA states
        reboot_record = record
        time.sleep(5)

        # ---- 3. a port move (fabric.port 4420 -> 4421) moves every path: a plain apply would
        # stop I/O, so plan keeps it DISRUPTIVE and names rollout and the path that carries the
        # I/O meanwhile; rollout moves one target's path at a time
        moved = spec_path.parent / "cluster-4421.yaml"
        moved.write_text(spec_path.read_text().replace("  port: 4420\n", "  port: 4421\n", 1))
        code, plan, _err = nvmeofctl_json("plan", "-f", str(moved))
        ports = {c["host"]: c for h in plan["hosts"] for c in h["changes"] if c["object"] == "port 1"}
        assert sorted(ports) == ["tgt1", "tgt2"] and all(c["disruptive"] for c in ports.values()), ports
        assert ports["tgt1"]["reason"].endswith(
            "`nvmeofctl rollout` changes one target at a time, I/O continuing meanwhile on gpu1 shared via tgt2 "
            "(nvme1, non-optimized)"), ports["tgt1"]
        t_move = float(gpu.run("date +%s.%N"))
        code, move_record, err = nvmeofctl_json("rollout", "-f", str(moved), timeout=2400)
        t_moved = float(gpu.run("date +%s.%N"))
        sys.stderr.write(err)
        assert code == 0, err
        assert [(s["batch"], s["step"]) for s in move_record["steps"]] == [
            (["tgt1"], "drain"), (["tgt1"], "apply"), (["tgt1"], "restore"),
            (["tgt2"], "drain"), (["tgt2"], "apply"), (["tgt2"], "restore")]
        addrs = sorted(gpu.run("cat /sys/class/nvme/nvme*/address").split())
        assert addrs == ["traddr=192.168.100.11,trsvcid=4421", "traddr=192.168.100.12,trsvcid=4421"], addrs
        assert by_ip == {ip: ana for _s, ip, ana in _paths(gpu).values()}
        code, plan, _err = nvmeofctl_json("plan", "-f", str(moved))
        assert plan["changes"] == 0, plan
        time.sleep(10)  # "after" throughput
        t_rails = float(gpu.run("date +%s.%N"))
        rails = _rails_scenario(gpu, tgt1, lab_spec, moved)
        t_rails_end = float(gpu.run("date +%s.%N"))
    finally:
        if fio_started:
            gpu.rc("pkill -INT -x fio; for i in $(seq 120); do pgrep -x fio >/dev/null || break; sleep 1; done")
    result = fio_json(gpu.run("cat /root/fio-mp.json"))
    job = result["jobs"][0]
    w, r = job["write"], job["read"]
    windows = [("before", 0, t_start - t_fio), ("reboot rollout", t_start - t_fio, t_end - t_fio),
               ("between", t_end - t_fio, t_move - t_fio), ("port-move rollout", t_move - t_fio, t_moved - t_fio),
               ("after", t_moved - t_fio, t_rails - t_fio), ("rails scenario", t_rails - t_fio, t_rails_end - t_fio)]
    bw_log = gpu.run("cat /root/mp_bw.1.log")
    bw = _bw_windows(bw_log, windows)
    summary = {"error": job["error"], "written_mib": w["io_bytes"] >> 20, "verified_mib": r["io_bytes"] >> 20,
               "stall_s": round(max(w["clat_ns"]["max"], r["clat_ns"]["max"]) / 1e9, 1),
               "reboot_rollout_s": round(t_end - t_start), "port_move_rollout_s": round(t_moved - t_move),
               "write_kib_s": bw, "stall_s_by_window": _stall_windows(bw_log, windows),
               "steps": [(s["batch"][0], s["step"], s["seconds"]) for s in reboot_record["steps"] + move_record["steps"]]}
    print(f"\nrollouts under fio: {summary}")
    from nvmeofctl.report.schemas import validate

    validate("rollout", reboot_record)
    validate("rollout", move_record)
    (spec_path.parent / "rollout-records.json").write_text(json.dumps([reboot_record, move_record], indent=1))
    assert summary["error"] == 0 and summary["written_mib"] > 0 and summary["verified_mib"] > 0, \
        (summary, gpu.run("tail -n 30 /root/fio-mp.log"))

    print(f"rails scenario: {rails}")
    assert rails["error"] == 0 and rails["verified_mib"] > 0, (rails, gpu.run("tail -n 30 /root/fio-rails.log"))
    code, health, _err = nvmeofctl_json("health", "-f", str(spec_path.parent / "cluster-rails.yaml"), "--window", "0")
    assert code == 0, [(f["host"], f["check"], f["observed"]) for f in health["findings"] if f["status"] not in
                       ("ok", "na")]  # the I/O stopped: both rails, every path, no retransmits

    # ---- rail 2 dropped from the spec again (and railed with it: --allow-disruptive, fio has
    # stopped): its ports and paths go, and so do its boot units; health is ok on one rail
    code, plan, _err = nvmeofctl_json("plan", "-f", str(moved))
    gone = {(c["host"], c["action"]) for h in plan["hosts"] for c in h["changes"]
            if c["object"] == "file /etc/systemd/system/nvmeofctl-rdma-eth2.service"}
    assert gone == {("tgt1", "remove"), ("tgt2", "remove"), ("gpu1", "remove")}, plan
    proc = nvmeofctl("apply", "-f", str(moved), "--allow-disruptive")
    assert proc.returncode == 0, f"apply:\n{proc.stdout}\n{proc.stderr}"
    for vm in (tgt1, gpu):
        left = vm.run("ls /etc/systemd/system /etc/systemd/system/multi-user.target.wants /usr/local/lib/nvmeofctl")
        assert "eth2" not in left and "nvmeofctl-rdma.service" in left, (vm.name, left)
    assert sorted(gpu.run("cat /sys/class/nvme/nvme*/address").split()) == [
        "traddr=192.168.100.11,trsvcid=4421", "traddr=192.168.100.12,trsvcid=4421"]
    code, plan, _err = nvmeofctl_json("plan", "-f", str(moved))
    assert plan["changes"] == 0, plan
    code, health, _err = nvmeofctl_json("health", "-f", str(moved), "--window", "0")
    paths = [f for f in health["findings"] if f["check"] == "nvme_paths"]
    assert code == 0 and [f["status"] for f in paths] == ["ok"], paths


def _rails_scenario(gpu: Vm, tgt1: Vm, lab_spec: Path, moved: Path) -> dict:
    """Issue #10's scenario 1: two rails, one target. The lab's rail 2 joins the (moved) spec, with
    a subsystem only tgt1 serves (railed): gpu1 gets a path to it on each rail. A second
    checksummed fio runs on it while tgt1's rail 1 goes down: I/O continues on rail 2 with no
    error, health says degraded (exit 10) and names the path that is down; with the link back,
    every path is live again and health exits 0."""
    spec = moved.parent / "cluster-rails.yaml"
    spec.write_text(lab_spec.read_text().replace("  port: 4420\n", "  port: 4421\n", 1) + RAILED)
    proc = nvmeofctl("apply", "-f", str(spec))  # adds rail 2 everywhere: nothing disruptive
    assert proc.returncode == 0, f"apply:\n{proc.stdout}\n{proc.stderr}"
    ports = tgt1.run(f"for p in {NVMET}/ports/*; do echo $(cat $p/addr_traddr) $(ls $p/subsystems | wc -l); done")
    assert sorted(ports.split("\n")[:-1]) == ["192.168.100.11 2", "192.168.101.11 2"], ports
    from nvmeofctl.spec import load_spec

    uuid = str(load_spec(spec).subsystems[1].namespaces[0].uuid)
    dev = gpu.run(f"readlink -f /dev/disk/by-id/nvme-uuid.{uuid}").strip()
    railed = lambda: {ip: (st, ana) for st, ip, ana in _paths(gpu).values()  # noqa: E731
                      if ip in ("192.168.100.11", "192.168.101.11")}
    _wait(lambda: len([1 for st, _ip, _a in _paths(gpu).values() if st == "live"]) == 6 or _paths(gpu), 120,
          "six live paths: shared through both targets on both rails, railed on both rails")
    gpu.run(f"rm -f /root/fio-rails.json /root/rails_bw*.log; nohup {RAILS_FIO.format(dev=dev)} >/root/fio-rails.log 2>&1 & "
            "echo $! > /root/fio-rails.pid")
    t0 = float(gpu.run("date +%s.%N"))
    time.sleep(10)  # "before" throughput
    try:
        t_down = float(gpu.run("date +%s.%N"))
        tgt1.run("ip link set eth1 down")
        _wait(lambda: sum(1 for st, ip, _a in _paths(gpu).values() if ip == "192.168.100.11" and st != "live") == 2
              or _paths(gpu), 120, "gpu1's two paths on tgt1's rail 1 to leave live")
        before = _io_done(gpu, dev)
        time.sleep(5)
        assert _io_done(gpu, dev) > before, "no I/O on the railed namespace while rail 1 is down"
        # degraded, not failed. On this emulated fabric the surviving rail-2 connections to tgt1
        # have been seen to hit a QP error and reconnect (~6 s; "WR flushed" in gpu1's dmesg)
        # while rail 1 is down: a health run in those seconds finds no live path and says so
        # (fail, truly). Health is read until it sees the outage alone (at most 6 runs, 5 s
        # apart); each reading before that is kept and printed with the figures.
        outage: list = []  # (exit code, fail findings) per reading
        for _try in range(6):
            code, health, _err = nvmeofctl_json("health", "-f", str(spec), "--window", "0")
            bad = [(f["host"], f["check"], f["status"], f["observed"]) for f in health["findings"]
                   if f["status"] in ("warn", "fail")]
            fails = [b for b in bad if b[2] == "fail"]
            outage.append((code, fails))
            if code == 10 and not fails:
                break
            # only the surviving path's reconnect may have failed it: a controller or path on gpu1
            assert code == 11 and all(b[0] == "gpu1" and b[1] in ("nvme_controller", "nvme_paths") for b in fails), \
                outage
            time.sleep(5)
        assert outage[-1] == (10, []), outage
        paths = {f["device"]: f for f in health["findings"] if f["check"] == "nvme_paths"}
        mine = paths["nqn.2024-01.io.nvmeofctl.test-mp:railed nsid 1"]
        assert mine["status"] == "warn" and mine["observed"].startswith("1/2 paths carry I/O") \
            and "down: tgt1 192.168.100.11 (" in mine["observed"], mine
        assert ("tgt1", "fabric_interface", "warn") in {b[:3] for b in bad}, bad
        degraded = next(b for b in bad if b[:2] == ("tgt1", "fabric_interface"))
        assert "degraded" in degraded[3] and "rail 2 (eth2) up" in degraded[3], degraded
        time.sleep(10)  # "during" throughput
    finally:
        tgt1.run("ip link set eth1 up")
    t_up = float(gpu.run("date +%s.%N"))
    _wait(lambda: len([1 for st, _ip, _a in _paths(gpu).values() if st == "live"]) == 6 or _paths(gpu), 240,
          "every path live again")
    t_back = float(gpu.run("date +%s.%N"))
    # paths back: every path carries I/O again and both rails' links pass. Under two fio jobs
    # Soft-RoCE on this emulated lab keeps counting retransmits (transport_retries warns, truly);
    # health's exit 0 is asserted once the I/O has stopped (the caller)
    settled: list = []

    def paths_back():
        code, health, _err = nvmeofctl_json("health", "-f", str(spec), "--window", "0")
        settled.append([(f["host"], f["check"], f["observed"]) for f in health["findings"]
                        if f["status"] not in ("ok", "na")])
        return (code in (0, 10) and all(c == "transport_retries" for _h, c, _o in settled[-1])) or settled[-1]

    _wait(paths_back, 300, "health: every path and link ok after the link came back", interval=10)
    t_healthy = float(gpu.run("date +%s.%N"))
    time.sleep(10)  # "after" throughput
    gpu.rc("p=$(cat /root/fio-rails.pid); kill -INT $p; for i in $(seq 120); do kill -0 $p 2>/dev/null || break; "
           "sleep 1; done")
    job = fio_json(gpu.run("cat /root/fio-rails.json"))["jobs"][0]
    w, r = job["write"], job["read"]
    windows = [("before", 0, t_down - t0), ("rail 1 down", t_down - t0, t_up - t0), ("after", t_back - t0, 1e12)]
    bw_log = gpu.run("cat /root/rails_bw.1.log")
    bw = _bw_windows(bw_log, windows)
    return {"error": job["error"], "written_mib": w["io_bytes"] >> 20, "verified_mib": r["io_bytes"] >> 20,
            "stall_s": round(max(w["clat_ns"]["max"], r["clat_ns"]["max"]) / 1e9, 1),
            "paths_back_s": round(t_back - t_up, 1), "health_paths_ok_s": round(t_healthy - t_up, 1),
            "health_runs": len(settled), "health_not_ok_after_link_up": settled[-1],
            "health_during_outage": outage,
            "write_kib_s": bw, "stall_s_by_window": _stall_windows(bw_log, windows), "railed_paths_at_end": railed()}
