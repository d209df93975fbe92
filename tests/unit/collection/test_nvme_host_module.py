"""plugins/modules/nvme_host.py run in-process against a fake node (fake sysfs + fake nvme and
modprobe on PATH that change the fake sysfs like the kernel would)."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "fixtures" / "nvme"))
sys.path.insert(0, str(REPO / "playbooks" / "collections"))
import fakesys  # noqa: E402
from modrun import run_module  # noqa: E402
from fakesys import CTRL_SECRET, NQN, SECRET, FakeNode  # noqa: E402

from ansible_collections.nvmeofctl.fabric.plugins.modules import nvme_host as module  # noqa: E402
from ansible_collections.nvmeofctl.fabric.plugins.module_utils import nvme_host as module_nh  # noqa: E402

RDMA = {"subsysnqn": NQN, "transport": "rdma", "traddr": "192.168.100.1", "trsvcid": "4420"}
TCP = dict(RDMA, transport="tcp")


@pytest.fixture
def node(tmp_path, monkeypatch):
    n = FakeNode(tmp_path / "node")
    n.log = tmp_path / "nvme.log"
    n.log.write_text("")
    fakesys.install_fakes(tmp_path / "bin", monkeypatch, n, log=n.log)
    n.systemctl_log = tmp_path / "systemctl.log"
    monkeypatch.setenv("FAKE_SYSTEMCTL_LOG", str(n.systemctl_log))
    return n


def run(monkeypatch, capsys, params, check=False, diff=False):
    return run_module(module, monkeypatch, capsys, params, check, diff)


def nvme_calls(node):
    return [json.loads(line) for line in node.log.read_text().splitlines()]


def pairs(changes):
    return [(c["object"], c["action"]) for c in changes]


def test_fresh_node_check_mode_predicts_then_apply_then_noop(node, monkeypatch, capsys):
    params = node.params(connections=[RDMA, TCP], iopolicy="round-robin")
    pred, _ = run(monkeypatch, capsys, params, check=True)
    assert pred["changed"] is True
    assert nvme_calls(node) == [] and not node.state_dir.exists() and not node.lib_dir.exists()
    assert ("connection:rdma://192.168.100.1:4420/" + NQN, "connect") in pairs(pred["changes"])

    res, _ = run(monkeypatch, capsys, params)
    assert res["changed"] is True and not res.get("failed")
    applied = pairs(res["changes"])
    # the prediction named everything that was done (iopolicy of a new subsystem is extra)
    assert [p for p in applied if p[1] != "set-iopolicy"] == pred_sorted(pred, applied)
    ctrls = {c["name"]: c for c in res["controllers"]}
    assert sorted(ctrls) == ["nvme0", "nvme1"]
    assert ctrls["nvme0"]["state"] == "live" and ctrls["nvme0"]["managed"] is True
    assert node.iopolicy(NQN) == "round-robin"
    calls = [c for c in nvme_calls(node) if c[0] == "connect"]
    assert len(calls) == 2 and all("--ctrl-loss-tmo=600" in c and "--hostid=" + fakesys.HOSTID in c for c in calls)
    # persistence
    conf = node.state_dir / "connections.json"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert json.loads(conf.read_text())["connections"][0]["subsysnqn"] == NQN
    unit = node.etc / "systemd/system/nvmeofctl-connect.service"
    assert "After=network-online.target nvmeofctl-rdma.service" in unit.read_text()
    assert os.path.islink(node.etc / "systemd/system/multi-user.target.wants/nvmeofctl-connect.service")
    # systemctl always runs: offline (--root) for a tree that is not the real /etc
    assert [json.loads(line) for line in node.systemctl_log.read_text().splitlines()] == [
        ["--root=%s" % node.root, "enable", "--no-reload", "nvmeofctl-connect.service"]]
    assert (node.lib_dir / "nvmeofctl-boot.pyz").read_bytes() == module.bootapp.build()
    assert not (node.lib_dir / "nvme_host.py").exists()
    assert json.loads((node.state_dir / "initiator-managed.json").read_text())["connections"] == [
        [NQN, "rdma", "192.168.100.1", "4420"], [NQN, "tcp", "192.168.100.1", "4420"]]

    n_calls = len(nvme_calls(node))
    again, _ = run(monkeypatch, capsys, params)
    assert again["changed"] is False and again["changes"] == []
    assert len(nvme_calls(node)) == n_calls  # a converged node runs no nvme-cli at all
    pred2, _ = run(monkeypatch, capsys, params, check=True)
    assert pred2["changed"] is False


def pred_sorted(pred, applied):
    order = {p: i for i, p in enumerate(applied)}
    return sorted(pairs(pred["changes"]), key=lambda p: order.get(p, 1 << 20))


def test_diff_only_in_diff_mode(node, monkeypatch, capsys):
    params = node.params(connections=[RDMA])
    res, _ = run(monkeypatch, capsys, params, check=True)
    assert res["changed"] is True and "diff" not in res
    res, _ = run(monkeypatch, capsys, params, check=True, diff=True)
    assert "connection" in res["diff"]["after"] and "before" in res["diff"]
    res, _ = run(monkeypatch, capsys, params)
    assert res["changed"] is True and not res.get("failed") and "diff" not in res


def test_secrets_never_in_results_diffs_or_errors(node, monkeypatch, capsys):
    conn = dict(RDMA, dhchap_secret=SECRET, dhchap_ctrl_secret=CTRL_SECRET)
    params = node.params(connections=[conn])
    for check in (True, False):
        res, raw = run(monkeypatch, capsys, params, check=check, diff=True)
        assert SECRET not in raw and CTRL_SECRET not in raw
        assert "dhchap=yes" in res["diff"]["after"]
    # the secrets reached the kernel's connect interface on stdin, never a command line
    fabrics = [json.loads(line) for line in node.log.with_suffix(".fabrics").read_text().splitlines()]
    assert fabrics and all(f"dhchap_secret={SECRET}" in f["stdin"] for f in fabrics)
    assert all(f"dhchap_ctrl_secret={CTRL_SECRET}" in f["stdin"] for f in fabrics)
    assert not any(SECRET in a or CTRL_SECRET in a for f in fabrics for a in f["argv"])
    assert not any(SECRET in a or CTRL_SECRET in a for c in nvme_calls(node) for a in c)
    assert SECRET in (node.state_dir / "connections.json").read_text()
    assert (node.state_dir / "connections.json").stat().st_mode & 0o077 == 0
    # rotate the secret: detected by comparing in place, reported without the value
    new_key = "DHHC-1:01:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:"  # valid CRC, key bytes 0..31
    rotated = dict(conn, dhchap_secret=new_key)
    res, raw = run(monkeypatch, capsys, node.params(connections=[rotated]), check=True, diff=True)
    assert ("connection:rdma://192.168.100.1:4420/" + NQN, "rekey") in pairs(res["changes"])
    assert [c["disruptive"] for c in res["changes"] if c["action"] == "rekey"] == [False]
    assert "dhchap_secret changed" in raw and "AAECAwQFBgcICQoL" not in raw and SECRET not in raw
    # applied: the new secret goes to the live controller's sysfs attribute (the kernel then
    # re-authenticates in place; the line the fake dmesg prints is the real one from
    # dhchap-connect-rdma-ok.txt), no disconnect, no connect
    monkeypatch.setenv("FAKE_DMESG", "[{now}] nvme nvme0: qid 0: authenticated")
    calls = len(nvme_calls(node))
    res, raw = run(monkeypatch, capsys, node.params(connections=[rotated]), diff=True)
    assert not res.get("failed"), res.get("msg")
    assert ("connection:rdma://192.168.100.1:4420/" + NQN, "rekey") in pairs(res["changes"])
    assert (node.ctrl_dir / "nvme0" / "dhchap_secret").read_text() == new_key
    assert nvme_calls(node)[calls:] == []
    assert "AAECAwQFBgcICQoL" not in raw
    # a rekey the kernel refuses fails with the kernel's words, not the secret (after the
    # bounded wait: a refusal can belong to an attempt that began before the new secret)
    monkeypatch.setattr(sys.modules[module_nh.rekey.__module__], "REKEY_WAIT", 2)
    monkeypatch.setenv("FAKE_DMESG", "[{now}] nvme nvme0: qid 0: authentication failed, error 881")
    res, raw = run(monkeypatch, capsys, node.params(connections=[conn]), diff=True)
    assert res["failed"] is True
    assert "re-authentication with the new secret failed (kernel: nvme nvme0: qid 0: authentication failed" in res["msg"]
    assert SECRET not in raw
    monkeypatch.delenv("FAKE_DMESG")
    (node.ctrl_dir / "nvme0" / "dhchap_secret").write_text(SECRET + "\n")
    # a malformed key is refused before anything happens, without echoing it
    bad = dict(conn, dhchap_secret="DHHC-1:01:" + "A" * 48 + ":")
    res, raw = run(monkeypatch, capsys, node.params(connections=[bad]), diff=True)
    assert res["failed"] is True and "CRC-32 does not match" in res["msg"] and "A" * 48 not in raw
    # a failing connect: message names the subsystem, one line, no secret
    monkeypatch.setenv("FAKE_NVME_MODE", "nokey")
    res, raw = run(monkeypatch, capsys, node.params(connections=[dict(conn, traddr="192.168.100.7")], allow_disruptive=True), diff=True)
    assert res["failed"] is True and "\n" not in res["msg"]
    assert "rdma://192.168.100.7:4420/" + NQN in res["msg"] and "missing_secret" in res["msg"]
    assert SECRET not in raw and CTRL_SECRET not in raw


def test_removed_export_disconnects_only_managed_and_leaves_others(node, monkeypatch, capsys):
    node.add_ctrl("nvme5", nqn="nqn.2019-01.com.other:vol", traddr="10.0.0.9")  # unmanaged
    node.add_ctrl("nvme6", nqn="nqn.2014-08.org.nvmexpress:local", transport="pcie", traddr="0000:4f:00.0",
                  multipath=False)
    run(monkeypatch, capsys, node.params(connections=[RDMA, TCP]))
    pred, _ = run(monkeypatch, capsys, node.params(connections=[TCP]), check=True)
    res, _ = run(monkeypatch, capsys, node.params(connections=[TCP], allow_disruptive=True))
    dis = [c for c in res["changes"] if c["action"] == "disconnect"]
    assert len(dis) == 1 and dis[0]["disruptive"] is True
    assert pairs(pred["changes"]) == pairs(res["changes"])
    names = sorted(p.name for p in node.ctrl_dir.iterdir())
    assert "nvme5" in names and "nvme6" in names
    disconnects = [c for c in nvme_calls(node) if c[0] == "disconnect"]
    assert disconnects == [["disconnect", "-d", dis[0]["object"].split(":", 1)[1]]]  # by name, not NQN


def test_connect_failure_fails_with_one_line_naming_the_subsystem(node, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_NVME_EIO_ADDRS", "192.168.100.9")
    res, _ = run(monkeypatch, capsys, node.params(connections=[RDMA, dict(RDMA, traddr="192.168.100.9")]))
    assert res["failed"] is True and res["changed"] is True
    assert res["msg"].startswith("connect rdma://192.168.100.9:4420/%s failed (refused)" % NQN)
    assert [c["name"] for c in res["controllers"]] == ["nvme0"]


def test_connect_timeout_bounds_the_run_and_skips_later_connects(node, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_NVME_MODE", "sleep")
    monkeypatch.setenv("FAKE_NVME_SLEEP", "30")
    import time
    t0 = time.monotonic()
    res, _ = run(monkeypatch, capsys, node.params(connections=[RDMA, TCP], connect_timeout=1))
    assert time.monotonic() - t0 < 10
    assert res["failed"] is True
    assert "(timeout)" in res["failures"][0] and "not attempted" in res["failures"][1]


def test_hostnqn_cloned_from_image_is_fixed(tmp_path, monkeypatch, capsys):
    n = FakeNode(tmp_path / "n", hostnqn="nqn.2014-08.org.nvmexpress:uuid:image-default", hostid=None)
    n.log = tmp_path / "log"
    fakesys.install_fakes(tmp_path / "bin", monkeypatch, n, log=n.log)
    res, _ = run(monkeypatch, capsys, n.params(persist=False))
    assert ("file %s/nvme/hostnqn" % n.etc, "update") in pairs(res["changes"])
    assert (n.etc / "nvme/hostnqn").read_text() == fakesys.HOSTNQN + "\n"
    assert (n.etc / "nvme/hostid").read_text() == fakesys.HOSTID + "\n"


def test_persist_false_removes_boot_files(node, monkeypatch, capsys):
    run(monkeypatch, capsys, node.params(connections=[RDMA]))
    res, _ = run(monkeypatch, capsys, node.params(connections=[RDMA], persist=False))
    assert {c["action"] for c in res["changes"]} == {"disable", "remove"}
    assert ("systemd nvmeofctl-connect.service", "disable") in pairs(res["changes"])
    assert not (node.etc / "systemd/system/multi-user.target.wants/nvmeofctl-connect.service").exists()
    assert not (node.state_dir / "connections.json").exists()
    assert not (node.etc / "systemd/system/nvmeofctl-connect.service").exists()


def test_bad_options_fail_cleanly(node, monkeypatch, capsys):
    res, _ = run(monkeypatch, capsys, node.params(hostid="not-a-uuid"))
    assert res["failed"] and "not a UUID" in res["msg"]
    res, _ = run(monkeypatch, capsys, node.params(connections=[RDMA, dict(RDMA)]))
    assert res["failed"] and "listed twice" in res["msg"]


def test_site_playbook_passes_only_known_nvme_host_options():
    plays = yaml.safe_load((REPO / "playbooks" / "site.yml").read_text())
    task = plays[0]["tasks"][1]
    assert "no_log" not in task
    src = (REPO / "playbooks" / "collections" / "ansible_collections" / "nvmeofctl" / "fabric" / "plugins"
           / "modules" / "nvme_host.py").read_text()
    for option in task["nvmeofctl.fabric.nvme_host"]:
        assert f"{option}=dict(" in src, option

def test_release_phase_only_disconnects_what_goes_away(node, monkeypatch, capsys):
    """phase=release (first play of an ordered apply): drops the path the spec removed and
    nothing else: no connect of a new path, no file rewritten."""
    run(monkeypatch, capsys, node.params(connections=[RDMA]))
    conn_file = node.state_dir / "connections.json"
    before = conn_file.read_text()
    calls = len(nvme_calls(node))
    res, _ = run(monkeypatch, capsys, node.params(connections=[TCP], phase="release", allow_disruptive=True))
    assert [c["action"] for c in res["changes"]] == ["disconnect"]
    assert [c[0] for c in nvme_calls(node)[calls:]] == ["disconnect"]
    assert sorted(p.name for p in node.ctrl_dir.iterdir()) == []
    assert conn_file.read_text() == before
    # the full phase then connects the new path and rewrites the boot-time config
    res, _ = run(monkeypatch, capsys, node.params(connections=[TCP]))
    assert ("connection:tcp://192.168.100.1:4420/" + NQN, "connect") in pairs(res["changes"])
    assert conn_file.read_text() != before


def test_stuck_disconnect_is_bounded_and_names_the_controller_state(node, monkeypatch, capsys):
    run(monkeypatch, capsys, node.params(connections=[RDMA]))
    monkeypatch.setenv("FAKE_NVME_MODE", "disconnect_hang")
    monkeypatch.setenv("FAKE_NVME_SLEEP", "30")
    import time
    t0 = time.monotonic()
    res, _ = run(monkeypatch, capsys, node.params(connections=[], phase="release", disconnect_timeout=2,
                                                   allow_disruptive=True))
    assert time.monotonic() - t0 < 10
    assert res["failed"] is True
    assert "nvme disconnect -d nvme0 did not finish within 2s; controller state: deleting" in res["msg"]
    # the next run does not trip over the controller being deleted: nothing to do for it
    monkeypatch.setenv("FAKE_NVME_MODE", "ok")
    again, _ = run(monkeypatch, capsys, node.params(connections=[], phase="release"), check=True)
    assert again["changes"] == []


def test_rotated_secret_on_a_reconnecting_controller_is_a_rekey_too(node, monkeypatch, capsys):
    """The target got the new key first and the controller lost its session meanwhile (state
    connecting): the new secret goes to sysfs for its next attempt; no disconnect."""
    conn = dict(RDMA, dhchap_secret=SECRET)
    run(monkeypatch, capsys, node.params(connections=[conn]))
    (node.ctrl_dir / "nvme0" / "state").write_text("connecting\n")
    new_key = "DHHC-1:01:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:"
    pred, _ = run(monkeypatch, capsys, node.params(connections=[dict(conn, dhchap_secret=new_key)]), check=True)
    assert [(c["action"], c["disruptive"]) for c in pred["changes"] if c["object"].startswith("connection:")] == [
        ("rekey", False)]
    (node.ctrl_dir / "nvme0" / "state").write_text("deleting\n")  # being deleted: a new path instead
    pred, _ = run(monkeypatch, capsys, node.params(connections=[dict(conn, dhchap_secret=new_key)]), check=True)
    assert [c["action"] for c in pred["changes"] if c["object"].startswith("connection:")] == ["connect"]


def test_the_copied_helper_of_earlier_versions_is_removed(node, monkeypatch, capsys):
    """Earlier versions copied module_utils/nvme_host.py to lib_dir; the unit now runs the boot
    program (nvmeofctl-boot.pyz nvme-host connect-all), and the next apply removes the copy."""
    node.lib_dir.mkdir(parents=True, exist_ok=True)
    (node.lib_dir / "nvme_host.py").write_text("# old helper\n")
    res, _ = run(monkeypatch, capsys, node.params(connections=[RDMA]))
    assert ("file %s" % (node.lib_dir / "nvme_host.py"), "remove") in pairs(res["changes"])
    assert sorted(p.name for p in node.lib_dir.iterdir()) == ["nvmeofctl-boot.pyz"]
    unit = (node.etc / "systemd/system/nvmeofctl-connect.service").read_text()
    assert "%s/nvmeofctl-boot.pyz nvme-host connect-all " % node.lib_dir in unit


def test_only_acts_on_the_named_subsystems_and_leaves_the_other_paths(node, monkeypatch, capsys):
    """`only` (nvmeofctl connect|disconnect --node): a disconnect of one subsystem leaves the other
    path up and drops the gone one from the boot-time connections; a connect of one subsystem
    does not connect another path that is missing too."""
    nqn2 = "nqn.2024-01.io.example:ckpt"
    other = dict(RDMA, subsysnqn=nqn2)
    run(monkeypatch, capsys, node.params(connections=[RDMA, other]))
    by_nqn = {json.loads((node.state_dir / "connections.json").read_text())["connections"][i]["subsysnqn"]
              for i in range(2)}
    assert by_nqn == {NQN, nqn2}
    calls = len(nvme_calls(node))

    res, _ = run(monkeypatch, capsys, node.params(connections=[RDMA], only=[nqn2], allow_disruptive=True))
    assert [c["action"] for c in res["changes"] if not c["object"].startswith(("file ", "systemd "))] == ["disconnect"]
    assert [c[0] for c in nvme_calls(node)[calls:]] == ["disconnect"]
    live = {(p / "subsysnqn").read_text().strip() for p in node.ctrl_dir.iterdir()}
    assert live == {NQN}
    boot = json.loads((node.state_dir / "connections.json").read_text())
    assert [c["subsysnqn"] for c in boot["connections"]] == [NQN] and "only" not in boot

    # NQN's path is lost too (`nvme disconnect` by hand, through the fake nvme-cli); connecting
    # nqn2 alone leaves it missing
    import shutil
    shutil.rmtree(next(iter(node.ctrl_dir.iterdir())))
    calls = len(nvme_calls(node))
    res, _ = run(monkeypatch, capsys, node.params(connections=[RDMA, other], only=[nqn2]))
    assert [(c["object"], c["action"]) for c in res["changes"] if c["action"] == "connect"] == [
        ("connection:rdma://192.168.100.1:4420/" + nqn2, "connect")]
    assert [c[0] for c in nvme_calls(node)[calls:]] == ["connect"]
    assert {(p / "subsysnqn").read_text().strip() for p in node.ctrl_dir.iterdir()} == {nqn2}


def test_only_refuses_a_bad_nqn(node, monkeypatch, capsys):
    res, _ = run(monkeypatch, capsys, node.params(connections=[RDMA], only=["not an nqn; rm -rf /"]))
    assert res["failed"] is True and "only 'not an nqn; rm -rf /'" in res["msg"]


def test_only_traddr_moves_one_targets_path_and_keeps_the_others_until_their_turn(node, monkeypatch, capsys):
    """`only_traddr` (nvmeofctl rollout): the spec moved the service port of both targets of a
    dual-controller subsystem. Scoped to target A, the run moves A's path only; B's old path
    stays connected and stays in the managed record, so B's own turn removes it."""
    a = dict(RDMA, traddr="192.168.100.11")
    b = dict(RDMA, traddr="192.168.100.12")
    run(monkeypatch, capsys, node.params(connections=[a, b]))
    moved = [dict(a, trsvcid="4421"), dict(b, trsvcid="4421")]
    calls = len(nvme_calls(node))

    res, _ = run(monkeypatch, capsys, node.params(connections=moved, only_traddr=["192.168.100.11"],
                                                  allow_disruptive=True))
    assert sorted((c["object"], c["action"]) for c in res["changes"] if c["object"].startswith(("connection", "controller"))) == [
        ("connection:rdma://192.168.100.11:4421/" + NQN, "connect"),
        ("controller:nvme0", "disconnect")]
    assert [c[0] for c in nvme_calls(node)[calls:]] == ["disconnect", "connect"]
    addrs = sorted((p / "address").read_text().strip() for p in node.ctrl_dir.iterdir())
    assert addrs == ["traddr=192.168.100.11,trsvcid=4421", "traddr=192.168.100.12,trsvcid=4420"]
    # B's old path is still recorded as nvmeofctl's; the boot-time file has the spec's paths
    assert json.loads((node.state_dir / "initiator-managed.json").read_text())["connections"] == [
        [NQN, "rdma", "192.168.100.11", "4421"], [NQN, "rdma", "192.168.100.12", "4420"],
        [NQN, "rdma", "192.168.100.12", "4421"]]
    boot = json.loads((node.state_dir / "connections.json").read_text())
    assert [(c["traddr"], c["trsvcid"]) for c in boot["connections"]] == [("192.168.100.11", "4421"),
                                                                          ("192.168.100.12", "4421")]
    assert "only_traddr" not in boot

    # B's turn: its old path goes, the record is the spec's again; then a full run changes nothing
    res, _ = run(monkeypatch, capsys, node.params(connections=moved, only_traddr=["192.168.100.12"],
                                                  allow_disruptive=True))
    addrs = sorted((p / "address").read_text().strip() for p in node.ctrl_dir.iterdir())
    assert addrs == ["traddr=192.168.100.11,trsvcid=4421", "traddr=192.168.100.12,trsvcid=4421"]
    assert json.loads((node.state_dir / "initiator-managed.json").read_text())["connections"] == [
        [NQN, "rdma", "192.168.100.11", "4421"], [NQN, "rdma", "192.168.100.12", "4421"]]
    again, _ = run(monkeypatch, capsys, node.params(connections=moved))
    assert again["changed"] is False, again["changes"]


def test_only_traddr_refuses_what_is_not_an_address(node, monkeypatch, capsys):
    res, _ = run(monkeypatch, capsys, node.params(connections=[RDMA], only_traddr=["1.2.3.4; reboot"]))
    assert res["failed"] is True and "only_traddr '1.2.3.4; reboot'" in res["msg"]
