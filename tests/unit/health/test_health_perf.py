from pathlib import Path

import pytest

from nvmeofctl.facts.perftest import BwResult, RpingResult
from nvmeofctl.health import perf
from nvmeofctl.health.model import Status
from nvmeofctl.remote.ssh import CommandResult, SshTarget, Unreachable

from healthfx import read


def test_plan_and_rounds(make_exp):
    def m(d):
        import copy
        for n in ("gpu2", "gpu3"):
            g = copy.deepcopy(d["hosts"][1])
            g["name"] = n
            d["hosts"].append(g)
        t = copy.deepcopy(d["hosts"][0])
        t["name"] = "stor2"
        d["hosts"].append(t)
        d["subsystems"][0]["allowed_gpu_nodes"] = ["gpu1", "gpu2", "gpu3"]
        d["subsystems"].append({"nqn": "nqn.x:b", "target": "stor2", "allowed_gpu_nodes": ["gpu1", "gpu2"],
                                "namespaces": []})
    exp = m and make_exp(m)
    pairs = perf.plan_pairs(exp)
    assert pairs == [("gpu1", "stor1"), ("gpu1", "stor2"), ("gpu2", "stor1"), ("gpu2", "stor2"), ("gpu3", "stor1")]
    rounds = perf.schedule_rounds(pairs)
    assert sorted(p for r in rounds for p in r) == sorted(pairs)
    for r in rounds:
        assert len({g for g, _ in r}) == len(r) and len({t for _, t in r}) == len(r)


def test_judge():
    r = perf.judge(perf.PerfResult("g", "t", port_rate_gbps=100.0, rping=RpingResult(True, 3), bw=BwResult(98.02)))
    assert r.status == Status.ok and r.threshold_gbps == 90.0
    r = perf.judge(perf.PerfResult("g", "t", port_rate_gbps=100.0, bw=BwResult(39.2)))
    assert r.status == Status.warn and "39.20 < 90" in r.note
    r = perf.judge(perf.PerfResult("g", "t", port_rate_gbps=2.5, soft_roce=True, bw=BwResult(0.065)))
    assert r.status == Status.na and r.threshold_gbps is None and "soft-RoCE" in r.note
    r = perf.judge(perf.PerfResult("g", "t", rping=RpingResult(False, 0, "connect error"), bw=None))
    assert r.status == Status.fail and "rping failed" in r.note


def test_commands_are_bounded_and_quoted():
    s_ping, s_bw = perf.server_commands("rxe0", "192.168.100.1", 2, 22)
    c_ping, c_bw = perf.client_commands("rxe0", "192.168.100.1", 2, 22)
    assert s_bw.startswith("timeout 22 ib_write_bw -d rxe0 -R -F --report_gbits -D 2")
    assert "timeout 22 ib_write_bw -d rxe0 -R -F --report_gbits -D 2 192.168.100.1" in c_bw
    assert s_ping.startswith("timeout 22 rping -s -a 192.168.100.1") and "rping -c -a 192.168.100.1" in c_ping


def _targets(exp):
    return {n: SshTarget(n, "127.0.0.1") for n in exp.hosts}


def test_run_perf_lab(lab_exp, gpu_facts, target_facts):
    calls = []

    def fake_run_on(target, command, timeout=0):
        calls.append((target.name, command.split("timeout")[1].split()[1] if "timeout" in command else command))
        if "rping -c" in command:
            return CommandResult(target.name, 0, read("lab/rping-client.txt"), read("lab/rping-client.txt.stderr"), 0.1)
        if "ib_write_bw" in command and "192.168.100.1" in command:
            return CommandResult(target.name, 0, read("lab/ib_write_bw-client-rdmacm.txt"), "", 0.1)
        return CommandResult(target.name, 0, "", "", 0.1)

    res = perf.run_perf(lab_exp, {"gpu1": gpu_facts, "stor1": target_facts}, _targets(lab_exp),
                        run_on=fake_run_on, start_delay=0)
    (r,) = res
    assert (r.gpu_node, r.target, r.target_ip) == ("gpu1", "stor1", "192.168.100.1")
    assert r.rping.ok and r.bw.bw_avg_gbps == pytest.approx(0.042363)
    assert r.soft_roce and r.status == Status.na
    assert {c[0] for c in calls} == {"gpu1", "stor1"}
    d = r.to_dict()
    assert d["bw_avg_gbps"] == pytest.approx(0.042) and d["threshold_gbps"] is None
    (f,) = perf.to_findings(res)
    assert f.host == "gpu1" and f.device == "stor1" and f.check == "perf_rdma_write_bw"


def test_run_perf_real_underperforming(real_exp, mlx5_gpu, target_facts):
    def fake_run_on(target, command, timeout=0):
        if "rping -c" in command:
            return CommandResult(target.name, 0, read("lab/rping-client.txt"), "", 0.1)
        if target.name == "gpu1" and "ib_write_bw" in command:
            return CommandResult(target.name, 0, read("real/ib_write_bw_cx4_100gbe_b2b_rocep4s0_39gbps_underperforming.txt"), "", 0.1)
        return CommandResult(target.name, 0, "", "", 0.1)

    from nvmeofctl.facts import rdma as rdma_p
    target_facts.ib_devices = {"mlx5_0": rdma_p.IbDevice("mlx5_0", driver="mlx5_core", pci="0000:af:00.0",
                                                        ports={1: rdma_p.IbPort(1, rate_gbps=100.0)})}
    target_facts.netif.speed_mbps = 100000
    (r,) = perf.run_perf(real_exp, {"gpu1": mlx5_gpu, "stor1": target_facts}, _targets(real_exp),
                         run_on=fake_run_on, start_delay=0)
    assert r.status == Status.warn and r.port_rate_gbps == 100.0 and r.bw.bw_avg_gbps == pytest.approx(39.2)


def test_run_perf_client_failure_and_unreachable(lab_exp, gpu_facts, target_facts):
    def fake_run_on(target, command, timeout=0):
        if target.name == "gpu1":
            return CommandResult("gpu1", 1, "", " Couldn't connect to 192.168.100.1:18515\n", 0.1)
        return CommandResult("stor1", 124, "", "", 0.1)

    (r,) = perf.run_perf(lab_exp, {"gpu1": gpu_facts, "stor1": target_facts}, _targets(lab_exp),
                         run_on=fake_run_on, start_delay=0)
    assert r.status == Status.fail
    (u,) = perf.run_perf(lab_exp, {}, _targets(lab_exp), run_on=fake_run_on, unreachable={"stor1"})
    assert u.status == Status.na and u.note == "host unreachable"

    def unreach(target, command, timeout=0):
        return Unreachable(target.name, "ssh: timed out")

    (x,) = perf.run_perf(lab_exp, {"gpu1": gpu_facts, "stor1": target_facts}, _targets(lab_exp),
                         run_on=unreach, start_delay=0)
    assert x.status == Status.fail


def test_tcp_perf_na(make_exp):
    exp = make_exp(lambda d: d["fabric"].update(transport="tcp"))
    (r,) = perf.run_perf(exp, {}, {}, run_on=None)
    assert r.status == Status.na and "tcp" in r.note


def test_client_retry_reports_only_the_last_attempt(tmp_path):
    """A server still starting rejects the first connect: once a retry succeeds, that early error
    must not turn the pair into a failure (it did, flaking the lab's --perf test)."""
    import os
    import subprocess

    from nvmeofctl.facts.perftest import parse_rping

    bindir = tmp_path / "bin"
    bindir.mkdir()
    sample = (Path(__file__).resolve().parents[2] / "fixtures" / "health" / "lab" / "rping-client.txt").read_text()
    (tmp_path / "ok.txt").write_text(sample)
    fake = bindir / "rping"
    fake.write_text(
        "#!/bin/bash\n"
        f"n=$(cat {tmp_path}/count 2>/dev/null || echo 0); echo $((n+1)) > {tmp_path}/count\n"
        "if [ $n -lt 2 ]; then echo 'cma event RDMA_CM_EVENT_REJECTED, error 8' >&2; exit 1; fi\n"
        f"cat {tmp_path}/ok.txt; echo 'client DISCONNECT EVENT...' >&2\n"
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    c_ping, _ = perf.client_commands("rxe0", "192.168.100.1", 2, 22)
    proc = subprocess.run(["bash", "-c", c_ping], capture_output=True, text=True, env=env, timeout=60)
    res = parse_rping(proc.stdout, proc.stderr, proc.returncode)
    assert (proc.returncode, res.ok, res.pings, res.error) == (0, True, 5, None)
    assert (tmp_path / "count").read_text().strip() == "3"
    # a server that never comes up still fails, with its error
    (tmp_path / "count").write_text("-100")
    proc = subprocess.run(["bash", "-c", c_ping], capture_output=True, text=True, env=env, timeout=60)
    res = parse_rping(proc.stdout, proc.stderr, proc.returncode)
    assert not res.ok and "REJECTED" in res.error
