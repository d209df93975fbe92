"""Fabric health on the provisioned lab: healthy first, then each fault injected for real on one
VM must be named (host, check, remedy) with the right exit code, and undoing it returns to 0.

Runs after test_02 (the lab is provisioned over RoCE v2 from its spec).
"""

from __future__ import annotations

import os
import time

import pytest

from nvmeofctl.lab.manager import Lab
from nvmeofctl.lab.process import monitor_command

from .conftest import LAB, nvmeofctl, nvmeofctl_json

pytestmark = pytest.mark.lab


def health(lab, *extra: str) -> tuple[int, dict]:
    code, data, err = nvmeofctl_json("health", "-f", str(lab.spec), "--window", "1", *extra, timeout=600)
    assert data, err
    assert data["exit_code"] == code
    return code, data


def problems(data) -> list[tuple[str, str, str]]:
    return sorted((f["host"], f["check"], f["status"]) for f in data["findings"] if f["status"] not in ("ok", "na"))


def problems_observed(data) -> list[tuple[str, str, str, str]]:
    """problems() with what was observed (the reason people would read)."""
    return sorted((f["host"], f["check"], f["status"], f.get("observed") or "")
                  for f in data["findings"] if f["status"] not in ("ok", "na"))


def console_tails(lab, n: int = 25) -> str:
    """The last kernel console lines of every lab VM (soft lockups, RCU stalls, oopses)."""
    out = []
    for name in lab.vms:
        path = lab.dir / name / "console.log"
        lines = path.read_text(errors="replace").splitlines()[-n:] if path.exists() else ["(no console log)"]
        out.append(f"--- {name} console (last {n} lines)\n" + "\n".join(lines))
    return "\n".join(out)


def finding(data, host: str, check: str) -> dict:
    hits = [f for f in data["findings"] if f["host"] == host and f["check"] == check]
    assert hits, f"no {check} finding for {host}"
    return hits[0]


def wait_healthy(lab, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, data = health(lab)
        if code == 0:
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"still not healthy after {timeout:.0f}s: {problems(data)}")
        time.sleep(5)


def reapply(lab) -> None:
    code, data, err = nvmeofctl_json("apply", "-f", str(lab.spec), "--allow-disruptive")
    assert code == 0, err


@pytest.fixture(scope="module")
def converged(lab):
    reapply(lab)  # whatever test_02 left, converge to the lab spec
    return wait_healthy(lab)


@pytest.fixture
def healthy(converged, healthy_lab):
    """The converged lab's health, guarded per test (conftest.healthy_lab): a fault the lab does
    not recover from (seen once: gpu2's rxe reconnect stuck in nvme_rdma_alloc_queue after the
    link flap) fails that test and is undone by restoring the `provisioned` checkpoint, instead
    of failing every later test of this file."""
    return converged


def test_provisioned_lab_is_healthy(healthy):
    data = healthy
    assert data["status"] == "healthy" and data["exit_code"] == 0
    statuses = {f["status"] for f in data["findings"]}
    assert statuses <= {"ok", "na"}
    # a check the NIC cannot answer is "not applicable" with its reason, never a silent ok
    for f in data["findings"]:
        if f["status"] == "na":
            assert f["observed"], f
    pfc = finding(data, "gpu1", "pfc")
    assert pfc["status"] == "na" and "soft-RoCE" in pfc["observed"]
    gid = finding(data, "tgt1", "roce_v2_gid")
    assert gid["status"] == "ok" and "192.168.100.11" in (gid["observed"] + gid["expected"])
    assert finding(data, "gpu1", "nvme_controller")["status"] == "ok"
    assert finding(data, "gpu2", "gpus")["status"] == "na"


def test_prometheus_textfile_of_the_healthy_lab(lab, healthy):
    proc = nvmeofctl("health", "-f", str(lab.spec), "--window", "1", "--output", "prometheus", timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "# TYPE nvmeofctl_health_check gauge" in lines
    samples = [l for l in lines if l.startswith("nvmeofctl_health_check{")]
    assert any('host="gpu1"' in l and 'check="nvme_controller"' in l and l.endswith(" 0") for l in samples)
    assert all(l.rsplit(" ", 1)[1] in ("0", "-1") for l in samples)  # ok or na everywhere


def _assert_named(data, code, host, check, expected_code=11):
    assert code == expected_code, problems(data)
    f = finding(data, host, check)
    assert f["status"] == ("fail" if expected_code == 11 else "warn"), f
    assert f["remedy"], f


def test_lowered_mtu_on_one_gpu_node(lab, healthy):
    gpu1 = lab.vm("gpu1")
    gpu1.run("ip link set dev eth1 mtu 1400")
    try:
        code, data = health(lab)
        _assert_named(data, code, "gpu1", "mtu")
        assert "1400" in finding(data, "gpu1", "mtu")["observed"]
    finally:
        gpu1.run("ip link set dev eth1 mtu 1500")
    wait_healthy(lab)


def test_rdma_device_removed(lab, healthy):
    lab.vm("gpu2").run("rdma link delete rxe_eth1")
    try:
        code, data = health(lab)
        _assert_named(data, code, "gpu2", "rdma_device")
        assert "rdma link add" in finding(data, "gpu2", "rdma_device")["remedy"]
    finally:
        reapply(lab)
    wait_healthy(lab)


def test_fabric_link_down(lab, healthy):
    gpu2 = lab.vm("gpu2")
    gpu2.run("ip link set dev eth1 down")
    try:
        code, data = health(lab)
        assert code == 11, problems(data)
        failing = {(f["host"], f["check"]) for f in data["findings"] if f["status"] == "fail"}
        assert ("gpu2", "fabric_interface") in failing
        assert all(h == "gpu2" for h, _ in failing), failing
        assert "ip link set" in finding(data, "gpu2", "fabric_interface")["remedy"]
    finally:
        gpu2.run("ip link set dev eth1 up")
    wait_healthy(lab)


def test_cloned_host_identity(lab, healthy):
    gpu1, gpu2 = lab.vm("gpu1"), lab.vm("gpu2")
    gpu2.run("cp /etc/nvme/hostnqn /root/hostnqn.bak; cp /etc/nvme/hostid /root/hostid.bak")
    nqn, hid = gpu1.run("cat /etc/nvme/hostnqn /etc/nvme/hostid").split()
    gpu2.run(f"echo {nqn} > /etc/nvme/hostnqn; echo {hid} > /etc/nvme/hostid")
    try:
        code, data = health(lab)
        assert code == 11, problems(data)
        dup = [f for f in data["findings"] if f["check"] == "host_nqn_unique" and f["status"] == "fail"]
        assert {f["host"] for f in dup} == {"gpu1", "gpu2"}, dup
        assert any("gpu1" in f["observed"] + f["remedy"] for f in dup if f["host"] == "gpu2")
        assert finding(data, "gpu2", "host_id_unique")["status"] == "fail"
        assert all(f["remedy"] for f in dup)
    finally:
        gpu2.run("cp /root/hostnqn.bak /etc/nvme/hostnqn; cp /root/hostid.bak /etc/nvme/hostid")
    wait_healthy(lab)


def test_expected_controller_disconnected(lab, healthy):
    gpu1 = lab.vm("gpu1")
    name = gpu1.run(
        "for c in /sys/class/nvme/nvme*; do grep -q ':train$' $c/subsysnqn && basename $c; done; true"
    ).split()[0]
    gpu1.run(f"nvme disconnect -d {name}")
    try:
        code, data = health(lab)
        assert code == 11, problems(data)
        hits = [f for f in data["findings"] if f["host"] == "gpu1" and f["check"] == "nvme_controller"
                and f["status"] == "fail"]
        assert len(hits) == 1 and hits[0]["device"].endswith(":train"), hits
        assert "nvmeofctl apply" in hits[0]["remedy"]
    finally:
        reapply(lab)
    wait_healthy(lab)


def test_target_port_removed(lab, healthy):
    tgt = lab.vm("tgt1")
    tgt.run("cd /sys/kernel/config/nvmet/ports/1 && rm -f subsystems/* && cd .. && rmdir 1")
    try:
        code, data = health(lab)
        _assert_named(data, code, "tgt1", "nvmet_port")
    finally:
        reapply(lab)
    wait_healthy(lab)


def test_unreachable_host_exit_6_others_still_checked(lab, healthy):
    l = Lab(LAB)
    mon = l.vm_files(l.layout().vm("gpu2")).monitor
    monitor_command(mon, "stop")  # a hung host: TCP accepted, no SSH banner
    try:
        code, data = health(lab)
        assert code == 6, problems(data)
        un = [f for f in data["findings"] if f["status"] == "unreachable"]
        assert {f["host"] for f in un} == {"gpu2"}
        checked = {f["host"] for f in data["findings"] if f["status"] in ("ok", "na")}
        assert {"tgt1", "gpu1"} <= checked
    finally:
        monitor_command(mon, "cont")
    wait_healthy(lab, timeout=300)


def test_perf_matrix(lab, healthy):
    code, data = health(lab, "--perf")
    perf = data["perf"]
    assert perf, data
    pairs = {(p["gpu_node"], p["target"]) for p in perf}
    assert pairs == {("gpu1", "tgt1"), ("gpu2", "tgt1")}
    for p in perf:
        assert p["rping_ok"] is True, p  # RDMA CM reachability over RoCE v2
        assert p["bw_avg_gbps"] and p["bw_avg_gbps"] > 0, p  # measured by ib_write_bw
        assert p["soft_roce"] is True and p["status"] == "na", p  # soft-RoCE: numbers, no threshold
    # people get the matrix: one row per GPU node, one column per target
    proc = nvmeofctl("health", "-f", str(lab.spec), "--window", "1", "--perf", timeout=600)
    assert "tgt1" in proc.stdout and "gpu1" in proc.stdout and "Gb/s" in proc.stdout, proc.stdout


# Issue #8's proof ran `health` 30 times and `health --perf` 10 times (~16 min of a CI run under
# software emulation); `make test` runs a sample of the same loop, `make soak` the full count.
SOAK = os.environ.get("NVMEOFCTL_SOAK") == "1"
HEALTH_RUNS, PERF_RUNS = (30, 10) if SOAK else (8, 2)


def test_no_false_alarm_in_repeated_health_and_perf_runs(lab, healthy):
    """A health check that pages people must not cry wolf: back to back on the healthy lab,
    `health` HEALTH_RUNS times and `health --perf` PERF_RUNS times (30 and 10 with
    NVMEOFCTL_SOAK=1, `make soak`), every one exit 0 (each failure is listed)."""
    import collections

    bad = []
    t0 = time.monotonic()
    for i in range(HEALTH_RUNS):
        code, data = health(lab)
        if code != 0:
            bad.append(("health", i, code, problems_observed(data)))
    plain_s = time.monotonic() - t0
    t0 = time.monotonic()
    for i in range(PERF_RUNS):
        code, data = health(lab, "--perf")
        if code != 0:
            bad.append(("perf", i, code, problems_observed(data),
                        [(p["gpu_node"], p["target"], p["status"], p.get("note")) for p in data.get("perf", [])]))
    perf_s = time.monotonic() - t0
    print(f"\n{HEALTH_RUNS} x health in {plain_s:.0f}s, {PERF_RUNS} x health --perf in {perf_s:.0f}s, "
          f"not ok: {collections.Counter(b[0] for b in bad)}")
    assert bad == [], console_tails(lab)
