"""`nvmeofctl health` through typer's CliRunner with the SSH fan-out replaced by the probe outputs
captured from the real lab VMs (probe/lab-real: tgt1, gpu1, gpu2) and the spec they were captured with."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from nvmeofctl.cli.main import app, run
from nvmeofctl.facts.probe import probe_script
from nvmeofctl.health import expect as expect_mod
from nvmeofctl.health import perf as perf_mod
from nvmeofctl.remote import ssh

from healthfx import LAB_SPEC, edit_section, lab, read, spec_of

SPEC = str(LAB_SPEC)


@pytest.fixture
def spec_dict():
    return yaml.safe_load(LAB_SPEC.read_text())


@pytest.fixture
def fake(monkeypatch, spec_dict):
    """Patch the spec loader and the fan-out; returns a dict to tweak outputs/unreachable hosts."""
    state = {"outputs": {h: lab(h) for h in ("tgt1", "gpu1", "gpu2")},
             "unreachable": set(), "calls": [], "spec": spec_dict, "run_on": []}
    monkeypatch.setattr(expect_mod, "load_spec", lambda path, **_: spec_of(state["spec"]))

    def run_many(targets, command, *, stdin=None, timeout=60.0, **kw):
        out = {}
        for t in targets:
            cmd = command(t) if callable(command) else command
            state["calls"].append((t.name, cmd, stdin(t) if callable(stdin) else stdin, timeout))
            if t.name in state["unreachable"]:
                out[t.name] = ssh.Unreachable(t.name, f"ssh {t.address}:{t.port}: timed out after 15s")
            else:
                out[t.name] = ssh.CommandResult(t.name, 0, state["outputs"][t.name], "", 3.1)
        return out

    def run_on(target, command, *, stdin=None, timeout=60.0, **kw):
        state["run_on"].append((target.name, command))
        if "rping -c" in command:
            return ssh.CommandResult(target.name, 0, read("lab/rping-client.txt"), "", 0.2)
        if "ib_write_bw" in command and target.name.startswith("gpu"):
            return ssh.CommandResult(target.name, 0, read("lab/ib_write_bw-client-rdmacm.txt"), "", 2.5)
        return ssh.CommandResult(target.name, 0, "", "", 0.1)

    monkeypatch.setattr(perf_mod, "START_DELAY", 0.0)
    monkeypatch.setattr(ssh, "run_many", run_many)
    monkeypatch.setattr(ssh, "run_on", run_on)
    return state


def invoke(*args):
    return CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1"}).invoke(app, ["health", "-f", SPEC, *args])


def test_healthy_lab_table(fake):
    r = invoke()
    assert r.exit_code == 0, r.output
    assert "healthy:" in r.output and "roce_v2_gid" in r.output
    assert "index 1 = 192.168.100.21 (RoCE v2, eth1)" in r.output
    assert "index 1 = 192.168.100.22 (RoCE v2, eth1)" in r.output
    assert "not applicable: soft-RoCE exposes no PFC/ECN" in r.output
    # one round trip per host, the probe (with the module dumps for its interface) on stdin,
    # interface and window on the command line
    assert sorted(c[0] for c in fake["calls"]) == ["gpu1", "gpu2", "tgt1"]
    assert all(c[1] == "bash -s -- eth1 3" and c[2] == probe_script("eth1") for c in fake["calls"])


def test_no_key_material_in_any_output(fake):
    """tgt1's nvmet dump carries DH-HMAC-CHAP key digests (sha256, hashed on the host): never shown."""
    digests = [line.rsplit("=sha256:", 1)[1] for line in lab("tgt1").splitlines() if "=sha256:" in line]
    assert len(digests) == 2
    for args in ((), ("-o", "json"), ("-o", "prometheus")):
        r = invoke(*args)
        assert r.exit_code == 0, r.output
        assert "sha256" not in r.output and "DHHC-1" not in r.output
        assert not any(d in r.output or d[:12] in r.output for d in digests)


def test_json_output(fake):
    r = invoke("--output", "json", "--window", "5")
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["schema_version"] == 1 and doc["status"] == "healthy" and doc["exit_code"] == 0
    assert doc["perf"] is None and doc["window_s"] == 5
    assert {"host", "check", "status", "observed", "expected", "remedy", "device"} == set(doc["findings"][0])
    assert fake["calls"][0][1].endswith(" 5")


def test_prometheus_output(fake):
    r = invoke("-o", "prometheus")
    assert r.exit_code == 0
    assert r.stdout.startswith("# HELP nvmeofctl_health_check")
    assert ('nvmeofctl_health_check{host="gpu1",check="nvme_controller",'
            'device="nqn.2024-01.io.nvmeofctl.lab:train"} 0') in r.stdout
    assert 'nvmeofctl_health_check{host="gpu1",check="pfc",device="eth1"} -1' in r.stdout
    assert "nvmeofctl_health_exit_code 0" in r.stdout


def test_unreachable_host_exit_6_others_still_checked(fake):
    fake["unreachable"].add("tgt1")
    r = invoke("-o", "json")
    assert r.exit_code == 6
    doc = json.loads(r.stdout)
    stor = [f for f in doc["findings"] if f["host"] == "tgt1"]
    assert len(stor) == 1 and stor[0]["status"] == "unreachable"
    assert stor[0]["observed"] == "ssh 127.0.0.1:54115: timed out after 15s"
    assert any(f["host"] == "gpu1" and f["check"] == "nvme_controller" and f["status"] == "ok" for f in doc["findings"])


def test_unhealthy_exit_11(fake):
    fake["outputs"]["gpu1"] = edit_section(lab("gpu1"), "nvme_host", "nvme0/state\tlive", "nvme0/state\tconnecting")
    r = invoke("-o", "json")
    assert r.exit_code == 11
    doc = json.loads(r.stdout)
    assert doc["status"] == "unhealthy"
    assert [(f["host"], f["check"], f["device"], f["observed"]) for f in doc["findings"] if f["status"] == "fail"] == [
        ("gpu1", "nvme_controller", "nqn.2024-01.io.nvmeofctl.lab:train", "nvme0 connecting")]


def test_degraded_exit_10(fake):
    fake["spec"]["fabric"]["iopolicy"] = "round-robin"  # the lab's subsystems use numa
    r = invoke()
    assert r.exit_code == 10 and "degraded" in r.output and "nvme_iopolicy" in r.output


def test_real_capture_of_a_removed_rdma_device_exit_11(fake):
    fake["outputs"]["gpu2"] = lab("gpu2", "rxe-removed")
    r = invoke("-o", "json")
    assert r.exit_code == 11
    doc = json.loads(r.stdout)
    assert {(f["host"], f["check"]) for f in doc["findings"] if f["status"] == "fail"} == {
        ("gpu2", "rdma_device"), ("gpu2", "nvme_controller")}


def test_incomplete_probe_is_a_fail(fake):
    text = fake["outputs"]["tgt1"]
    fake["outputs"]["tgt1"] = text[: text.index("### nvmet_configfs")]  # the stream cut before the end marker
    r = invoke("-o", "json")
    assert r.exit_code == 11
    doc = json.loads(r.stdout)
    assert any(f["check"] == "probe" and f["host"] == "tgt1" for f in doc["findings"])


def test_limit(fake):
    r = invoke("--limit", "gpu1", "-o", "json")
    assert [c[0] for c in fake["calls"]] == ["gpu1"]
    assert {f["host"] for f in json.loads(r.stdout)["findings"]} == {"gpu1"}


def test_limit_unknown_host_is_usage_error(fake, capsys):
    with pytest.raises(SystemExit) as e:
        run(["health", "-f", SPEC, "--limit", "nope"])
    assert e.value.code == 2
    assert "unknown host(s) nope" in capsys.readouterr().err


def test_exit_code_survives_main_run(fake, capsys):
    fake["spec"]["fabric"]["iopolicy"] = "round-robin"
    with pytest.raises(SystemExit) as e:
        run(["health", "-f", SPEC, "-o", "json"])
    assert e.value.code == 10
    assert json.loads(capsys.readouterr().out)["exit_code"] == 10


def test_perf_matrix_and_json(fake):
    r = invoke("--perf")
    assert r.exit_code == 0, r.output
    assert "RDMA write bandwidth" in r.output and "0.04" in r.output
    servers = [c for c in fake["run_on"] if c[0] == "tgt1"]
    assert any("ib_write_bw" in c[1] and "-R" in c[1] for c in servers)
    r = invoke("--perf", "-o", "json")
    perf = json.loads(r.stdout)["perf"]
    assert [(p["gpu_node"], p["target"], p["soft_roce"], p["status"]) for p in perf] == [
        ("gpu1", "tgt1", True, "na"), ("gpu2", "tgt1", True, "na")]


def test_help_documents_exit_codes_and_metric_values():
    r = CliRunner(env={"COLUMNS": "160"}).invoke(app, ["health", "--help"])
    assert r.exit_code == 0
    for s in ("10", "11", "6", "-1 na", "3 unreachable", "nvmeofctl health -f cluster.yaml"):
        assert s in r.output


def test_real_spec_loader_end_to_end(fake, monkeypatch):
    """The landed spec models through the adapter (no loader patch): same healthy result."""
    spec_mod = pytest.importorskip("nvmeofctl.spec")
    monkeypatch.setattr(expect_mod, "load_spec", lambda path, **kw: spec_mod.load_spec(path, **kw))
    r = invoke("-o", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["status"] == "healthy"
    assert any(f["check"] == "nvme_controller" and f["status"] == "ok" for f in doc["findings"])
