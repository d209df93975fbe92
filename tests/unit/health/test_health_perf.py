"""`health --perf`: pair planning, judging and the run, fed the lab's real probe captures and real
ib_write_bw / rping outputs (lab samples; the real-systems 100 GbE results)."""

import copy

import pytest

from nvmeofctl.facts.perftest import RpingResult, parse_ib_bw, parse_rping
from nvmeofctl.health import perf
from nvmeofctl.health.model import Status
from nvmeofctl.remote.ssh import CommandResult, SshTarget, Unreachable

from healthfx import FIX, edit_section, facts, host, lab, read, real_nic_gpu1

TGT1_IP = "192.168.100.11"


def test_plan_and_rounds(make_exp):
    def m(d):
        g3 = copy.deepcopy(host(d, "gpu2"))
        g3.update(name="gpu3", ssh={**g3["ssh"], "port": 2203}, fabric={**g3["fabric"], "ips": ["192.168.100.23"]})
        t2 = copy.deepcopy(host(d, "tgt1"))
        t2.update(name="tgt2", ssh={**t2["ssh"], "port": 2212}, fabric={**t2["fabric"], "ips": ["192.168.100.12"]})
        d["hosts"] += [g3, t2]
        d["subsystems"][0]["allowed_gpu_nodes"].append("gpu3")
        d["subsystems"].append({"nqn": "nqn.2024-01.io.nvmeofctl.lab:b", "target": "tgt2",
                                "allowed_gpu_nodes": ["gpu1", "gpu2"],
                                "namespaces": [{"nsid": 1, "name": "b",
                                                "backing": {"file": "/var/lib/nvmeofctl/b.img", "size": "1GiB"}}]})
    pairs = perf.plan_pairs(make_exp(m))
    assert pairs == [("gpu1", "tgt1"), ("gpu1", "tgt2"), ("gpu2", "tgt1"), ("gpu2", "tgt2"), ("gpu3", "tgt1")]
    rounds = perf.schedule_rounds(pairs)
    assert rounds == [[("gpu1", "tgt1"), ("gpu2", "tgt2")], [("gpu1", "tgt2"), ("gpu2", "tgt1")], [("gpu3", "tgt1")]]


def test_plan_of_the_real_lab_spec(lab_exp):
    # gpu1 uses two subsystems of tgt1 (train, ckpt): one pair
    assert perf.plan_pairs(lab_exp) == [("gpu1", "tgt1"), ("gpu2", "tgt1")]


def test_judge_real_results():
    bidir = parse_ib_bw(read("real/ib_write_bw_bidir_100gbe_cx5.txt"))
    r = perf.judge(perf.PerfResult("g", "t", port_rate_gbps=100.0, rping=RpingResult(True, 3), bw=bidir))
    assert (r.status, r.threshold_gbps, r.bw.bw_avg_gbps) == (Status.ok, 90.0, 98.02)
    slow = parse_ib_bw(read("real/ib_write_bw_cx4_100gbe_b2b_rocep4s0_39gbps_underperforming.txt"))
    r = perf.judge(perf.PerfResult("g", "t", port_rate_gbps=100.0, bw=slow))
    assert (r.status, r.note) == (Status.warn, "39.20 < 90 Gb/s (90% of 100)")
    lab_bw = parse_ib_bw(read("lab/ib_write_bw-client-rdmacm.txt"))
    r = perf.judge(perf.PerfResult("g", "t", port_rate_gbps=2.5, soft_roce=True, bw=lab_bw))
    assert (r.status, r.threshold_gbps, r.note) == (Status.na, None, "soft-RoCE: numbers only, no threshold")
    r = perf.judge(perf.PerfResult("g", "t", port_rate_gbps=None, bw=slow))
    assert (r.status, r.note) == (Status.na, "port rate unknown: no threshold")
    # no real rping failure was captured: a failed RpingResult as parse_rping returns it
    r = perf.judge(perf.PerfResult("g", "t", rping=RpingResult(False, 0, "connect error"), bw=None))
    assert (r.status, r.note) == (Status.fail, "rping failed: connect error")
    r = perf.judge(perf.PerfResult("g", "t", rping=parse_rping(read("lab/rping-client.txt"),
                                                                read("lab/rping-client.txt.stderr"), 0), bw=None))
    assert (r.status, r.note) == (Status.fail, "ib_write_bw gave no result")


def test_commands_are_bounded_and_quoted():
    s_ping, s_bw = perf.server_commands("rxe_eth1", TGT1_IP, 2, 22)
    c_ping, c_bw = perf.client_commands("rxe_eth1", TGT1_IP, 2, 22)
    assert s_bw == "timeout 22 ib_write_bw -d rxe_eth1 -R -F --report_gbits -D 2"
    assert "timeout 22 ib_write_bw -d rxe_eth1 -R -F --report_gbits -D 2 192.168.100.11" in c_bw
    assert s_ping == "timeout 22 rping -s -a 192.168.100.11 -C 3"
    assert "rping -c -a 192.168.100.11 -C 3 -v" in c_ping
    assert perf.server_commands(None, "a b", 2, 22)[0] == "timeout 22 rping -s -a 'a b' -C 3"


def test_soft_roce_measures_with_a_shallow_queue():
    # both sides get the same arguments (perftest refuses a mismatch); real NICs keep the default depth
    _, s_bw = perf.server_commands("rxe_eth1", TGT1_IP, 2, 22, soft_roce=True)
    _, c_bw = perf.client_commands("rxe_eth1", TGT1_IP, 2, 22, soft_roce=True)
    assert s_bw == "timeout 22 ib_write_bw -d rxe_eth1 -R -F --report_gbits -D 2 -t 16"
    assert "timeout 22 ib_write_bw -d rxe_eth1 -R -F --report_gbits -D 2 -t 16 192.168.100.11" in c_bw
    assert "-t" not in perf.server_commands("mlx5_0", TGT1_IP, 2, 22, soft_roce=False)[1].split()


def _targets(exp):
    return {n: SshTarget(n, "127.0.0.1") for n in exp.hosts}


def _lab_facts():
    return {h: facts(h, lab(h)) for h in ("tgt1", "gpu1", "gpu2")}


def test_run_perf_lab(lab_exp):
    calls = []
    bw_commands = []

    def fake_run_on(target, command, timeout=0):
        calls.append((target.name, "rping" if "rping" in command else "ib_write_bw"))
        if "ib_write_bw" in command:
            bw_commands.append(command)
        if "rping -c" in command:
            return CommandResult(target.name, 0, read("lab/rping-client.txt"), read("lab/rping-client.txt.stderr"), 0.1)
        if "ib_write_bw" in command and TGT1_IP in command:  # the client side
            return CommandResult(target.name, 0, read("lab/ib_write_bw-client-rdmacm.txt"), "", 0.1)
        return CommandResult(target.name, 0, "", "", 0.1)

    res = perf.run_perf(lab_exp, _lab_facts(), _targets(lab_exp), run_on=fake_run_on, start_delay=0)
    assert [(r.gpu_node, r.target, r.target_ip, r.status) for r in res] == [
        ("gpu1", "tgt1", TGT1_IP, Status.na), ("gpu2", "tgt1", TGT1_IP, Status.na)]
    r = res[0]
    assert r.rping.ok and r.rping.pings == 5 and r.bw.bw_avg_gbps == pytest.approx(0.042363)
    assert r.soft_roce and r.port_rate_gbps == 2.5 and r.threshold_gbps is None  # rxe's rate, not judged
    assert sorted(set(calls)) == [("gpu1", "ib_write_bw"), ("gpu1", "rping"), ("gpu2", "ib_write_bw"),
                                  ("gpu2", "rping"), ("tgt1", "ib_write_bw"), ("tgt1", "rping")]
    assert len(bw_commands) == 4 and all(" -D 2 -t 16" in c for c in bw_commands)  # soft-RoCE: shallow queue
    d = r.to_dict()
    assert d["bw_avg_gbps"] == pytest.approx(0.042) and d["threshold_gbps"] is None
    f = perf.to_findings(res)[0]
    assert (f.host, f.device, f.check, f.status) == ("gpu1", "tgt1", "perf_rdma_write_bw", Status.na)
    assert f.observed == "0.042 Gb/s; soft-RoCE: numbers only, no threshold"


def test_run_perf_real_underperforming(real_exp):
    """A real 100 GbE CX-4 run at 39.2 Gb/s: both ends' sysfs speed set to that link's 100000."""
    gpu1 = edit_section(real_nic_gpu1(), "netif eth01", "speed=-1", "speed=100000")
    tgt1 = edit_section(lab("tgt1"), "netif eth1", "speed=-1", "speed=100000")

    def fake_run_on(target, command, timeout=0):
        if "rping -c" in command:
            return CommandResult(target.name, 0, read("lab/rping-client.txt"), "", 0.1)
        if target.name == "gpu1" and "ib_write_bw" in command:
            slow = read("real/ib_write_bw_cx4_100gbe_b2b_rocep4s0_39gbps_underperforming.txt")
            return CommandResult(target.name, 0, slow, "", 0.1)
        return CommandResult(target.name, 0, "", "", 0.1)

    res = perf.run_perf(real_exp, {"gpu1": facts("gpu1", gpu1), "tgt1": facts("tgt1", tgt1)}, _targets(real_exp),
                        run_on=fake_run_on, start_delay=0)
    r = {x.gpu_node: x for x in res}
    assert (r["gpu1"].status, r["gpu1"].port_rate_gbps, r["gpu1"].bw.bw_avg_gbps) == (Status.warn, 100.0, 39.2)
    assert r["gpu1"].soft_roce is False
    # gpu2's client printed nothing
    assert (r["gpu2"].status, r["gpu2"].note) == (Status.fail, "ib_write_bw gave no result")


def test_run_perf_client_failure_and_unreachable(lab_exp):
    # no real perftest failure was captured: the client's connect error is written here
    def fake_run_on(target, command, timeout=0):
        if target.name.startswith("gpu"):
            return CommandResult(target.name, 1, "", " Couldn't connect to 192.168.100.11:18515\n", 0.1)
        return CommandResult("tgt1", 124, "", "", 0.1)

    res = perf.run_perf(lab_exp, _lab_facts(), _targets(lab_exp), run_on=fake_run_on, start_delay=0)
    assert [(r.gpu_node, r.status) for r in res] == [("gpu1", Status.fail), ("gpu2", Status.fail)]
    assert res[0].note == "rping failed: no pings"
    res = perf.run_perf(lab_exp, {}, _targets(lab_exp), run_on=fake_run_on, unreachable={"tgt1"})
    assert [(r.status, r.note) for r in res] == [(Status.na, "host unreachable")] * 2

    def unreach(target, command, timeout=0):
        return Unreachable(target.name, "ssh: timed out")

    res = perf.run_perf(lab_exp, _lab_facts(), _targets(lab_exp), run_on=unreach, start_delay=0)
    assert [(r.status, r.note) for r in res] == [(Status.fail, "rping failed: ssh: timed out")] * 2


def test_tcp_perf_na(make_exp):
    exp = make_exp(lambda d: d["fabric"].update(transport="tcp"))
    res = perf.run_perf(exp, {}, {}, run_on=None)
    assert [(r.gpu_node, r.target, r.status, r.note) for r in res] == [
        ("gpu1", "tgt1", Status.na, "not applicable: fabric transport is tcp"),
        ("gpu2", "tgt1", Status.na, "not applicable: fabric transport is tcp")]


def test_client_retry_reports_only_the_last_attempt(tmp_path):
    """A server still starting rejects the first connect: once a retry succeeds, that early error
    must not turn the pair into a failure (it did, flaking the lab's --perf test)."""
    import os
    import subprocess

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (tmp_path / "ok.txt").write_text((FIX / "lab" / "rping-client.txt").read_text())
    fake = bindir / "rping"
    # the rejection line is written here (no real capture of it); the success output is the lab's
    fake.write_text(
        "#!/bin/bash\n"
        f"n=$(cat {tmp_path}/count 2>/dev/null || echo 0); echo $((n+1)) > {tmp_path}/count\n"
        "if [ $n -lt 2 ]; then echo 'cma event RDMA_CM_EVENT_REJECTED, error 8' >&2; exit 1; fi\n"
        f"cat {tmp_path}/ok.txt; echo 'client DISCONNECT EVENT...' >&2\n"
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    c_ping, _ = perf.client_commands("rxe_eth1", TGT1_IP, 2, 22)
    proc = subprocess.run(["bash", "-c", c_ping], capture_output=True, text=True, env=env, timeout=60)
    res = parse_rping(proc.stdout, proc.stderr, proc.returncode)
    assert (proc.returncode, res.ok, res.pings, res.error) == (0, True, 5, None)
    assert (tmp_path / "count").read_text().strip() == "3"
    # a server that never comes up still fails, with its error
    (tmp_path / "count").write_text("-100")
    proc = subprocess.run(["bash", "-c", c_ping], capture_output=True, text=True, env=env, timeout=60)
    res = parse_rping(proc.stdout, proc.stderr, proc.returncode)
    assert (res.ok, res.error) == (False, "cma event RDMA_CM_EVENT_REJECTED, error 8")
