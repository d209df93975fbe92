"""Every health check fed the probe outputs captured from the real (provisioned) lab VMs."""

from __future__ import annotations

from pathlib import Path

from nvmeofctl.health import expect as expect_mod
from nvmeofctl.health import runner
from nvmeofctl.health.model import exit_code_for
from nvmeofctl.remote.ssh import CommandResult

REAL = Path(__file__).resolve().parents[2] / "fixtures" / "health" / "probe" / "lab-real"


def report(outputs: dict[str, str]):
    spec = expect_mod.load_spec(str(REAL / "cluster.yaml"))
    exp = expect_mod.expectations_from_spec(spec)
    targets = runner.ssh_targets(spec, exp.order)

    def fake_run_many(targets, command, stdin=None, timeout=None):
        return {t.name: CommandResult(t.name, 0, outputs[t.name], "", 0.1) for t in targets}

    return runner.health(exp, targets, window=2, run_many=fake_run_many)


def healthy_outputs() -> dict[str, str]:
    return {n: (REAL / f"{n}-healthy.txt").read_text() for n in ("tgt1", "gpu1", "gpu2")}


def test_real_provisioned_lab_is_healthy():
    rep = report(healthy_outputs())
    bad = [(f.host, f.check, f.status.value, f.observed) for f in rep.findings if f.status.value not in ("ok", "na")]
    assert bad == []
    assert int(exit_code_for(rep.findings)) == 0
    by = {(f.host, f.check, f.device or ""): f for f in rep.findings}
    ok = {(h, c) for (h, c, _), f in by.items() if f.status.value == "ok"}
    for host in ("tgt1", "gpu1", "gpu2"):
        assert {(host, "rdma_device"), (host, "rdma_port"), (host, "roce_v2_gid"), (host, "mtu")} <= ok
    assert ("gpu1", "nvme_controller") in ok and ("tgt1", "nvmet_port") in ok
    assert ("gpu1", "host_nqn_unique") in ok
    # soft-RoCE cannot answer PFC/ECN: not applicable, with the reason
    pfc = [f for f in rep.findings if f.host == "gpu1" and f.check == "pfc"][0]
    assert pfc.status.value == "na" and "soft-RoCE" in pfc.observed


def test_real_capture_with_the_rdma_device_removed_fails_on_that_host():
    outputs = healthy_outputs()
    outputs["gpu2"] = (REAL / "gpu2-rxe-removed.txt").read_text()
    rep = report(outputs)
    assert int(exit_code_for(rep.findings)) == 11
    failing = {(f.host, f.check) for f in rep.findings if f.status.value == "fail"}
    assert ("gpu2", "rdma_device") in failing
    assert {h for h, _ in failing} == {"gpu2"}
    fix = [f for f in rep.findings if (f.host, f.check) == ("gpu2", "rdma_device")][0]
    assert "rdma link add" in fix.remedy
