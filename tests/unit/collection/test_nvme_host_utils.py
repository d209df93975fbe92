"""module_utils/nvme_host.py: sysfs reading, the one-round-trip dump, the planner's diff, the
nvme-cli error classifier (fed every captured error output), timeouts and secret hygiene."""

from __future__ import annotations

import ast
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fixtures" / "nvme"))
import fakesys  # noqa: E402
from fakesys import CTRL_SECRET, HOSTID, HOSTNQN, NQN, SECRET, FakeNode, sysfs_kv  # noqa: E402

nh = fakesys.load_nvme_host()
FIX = fakesys.FIXTURES


def conn(**over):
    c = {"subsysnqn": NQN, "transport": "rdma", "traddr": "192.168.100.1", "trsvcid": "4420"}
    c.update(over)
    return c


def desired(*conns, **over):
    d = {"hostnqn": HOSTNQN, "hostid": HOSTID, "connections": list(conns), "ctrl_loss_tmo": 600,
         "reconnect_delay": 10, "keep_alive_tmo": 5}
    d.update(over)
    return d


# --------------------------------------------------------------------------- stdlib only
def test_module_utils_is_stdlib_only_and_imports_nothing_from_ansible():
    tree = ast.parse(fakesys.MODULE_UTILS.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:  # relative: siblings (see test_nvmet_utils)
            names.add((node.module or "").split(".")[0])
    assert names <= {"__future__", "hashlib", "json", "os", "re", "signal", "subprocess", "sys", "tempfile", "time"}


# --------------------------------------------------------------------------- parsers
@pytest.mark.parametrize("text,expected", [
    ("traddr=192.168.100.1,trsvcid=4420", {"traddr": "192.168.100.1", "trsvcid": "4420"}),
    ("traddr=192.168.100.1,trsvcid=4420,src_addr=192.168.100.2",
     {"traddr": "192.168.100.1", "trsvcid": "4420", "src_addr": "192.168.100.2"}),
    ("traddr=10.0.58.75 trsvcid=8009", {"traddr": "10.0.58.75", "trsvcid": "8009"}),  # nvme-cli 1.x
    ("0000:4f:00.0", {"traddr": "0000:4f:00.0"}),  # PCIe
    ("traddr=nn-0x2047d039ea98949e:pn-0x204ad039ea98949e,host_traddr=nn-0x200000109b9b7e4f:pn-0x100000109b9b7e4f",
     {"traddr": "nn-0x2047d039ea98949e:pn-0x204ad039ea98949e",
      "host_traddr": "nn-0x200000109b9b7e4f:pn-0x100000109b9b7e4f"}),
    ("", {}),
])
def test_parse_address(text, expected):
    assert nh.parse_address(text) == expected


def test_parse_address_every_path_line_of_captured_list_subsys_outputs():
    seen = 0
    for f in FIX.glob("nvme_list_subsys_*.txt"):
        for line in f.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[0] == "+-" and parts[1].startswith("nvme"):
                addr = " ".join(p for p in parts[3:] if "=" in p)
                if not addr:
                    continue
                parsed = nh.parse_address(addr)
                assert parsed["traddr"] and "=" not in parsed["traddr"]
                seen += 1
    assert seen >= 10


@pytest.mark.parametrize("tmo,delay,shown", [(600, 10, 600), (20, 15, 30), (-1, 10, -1), (0, 10, 0), (60, 5, 60)])
def test_expected_ctrl_loss_tmo_matches_kernel_rounding(tmo, delay, shown):
    assert nh.expected_ctrl_loss_tmo(tmo, delay) == shown


def _node_from_captured_sysfs(tmp_path, fixture, name="nvme0"):
    """A fake node whose nvme0 holds exactly the captured sysfs values."""
    node = FakeNode(tmp_path)
    c = node.ctrl_dir / name
    c.mkdir(parents=True)
    for k, v in sysfs_kv(fixture).items():
        (c / k).write_text(v + "\n")
    return node


def test_read_state_from_captured_lab_sysfs(tmp_path):
    node = _node_from_captured_sysfs(tmp_path, "sysfs-nvme0.txt")
    st = node.read(nh)
    c = st["controllers"]["nvme0"]
    assert st["hostnqn"] == HOSTNQN and st["hostid"] == HOSTID
    assert (c["transport"], c["traddr"], c["trsvcid"], c["state"]) == ("rdma", "192.168.100.1", "4420", "live")
    assert (c["subsysnqn"], c["hostnqn"], c["hostid"]) == (NQN, HOSTNQN, HOSTID)
    assert (c["ctrl_loss_tmo"], c["reconnect_delay"], c["kato"], c["cntlid"]) == (60, 5, 5, 1)
    assert c["fast_io_fail_tmo"] == -1  # "off"
    assert c["dhchap_secret_set"] is None  # 6.1 kernel: no attribute
    assert c["fabrics"] is True


def test_read_state_dhchap_is_a_bool_and_the_secret_never_leaves(tmp_path):
    node = _node_from_captured_sysfs(tmp_path, "k612-sysfs-nvme0-dhchap.txt")
    st = node.read(nh)
    c = st["controllers"]["nvme0"]
    assert c["dhchap_secret_set"] is True and c["dhchap_ctrl_secret_set"] is False
    # only a digest, so a rotated key is seen without the value leaving the node
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    assert c["dhchap_secret_sha256"] == digest and c["dhchap_ctrl_secret_sha256"] is None
    assert SECRET not in repr(st)
    text = subprocess.run(["sh", "-c", nh.dump_command(**_roots(node))], capture_output=True, text=True).stdout
    assert SECRET not in text and f"dhchap_secret\tsha256:{digest}" in text


def _roots(node):
    return {"sysfs": str(node.ctrl_dir), "etc": str(node.etc / "nvme"), "state_dir": str(node.state_dir)}


def _busy_node(tmp_path):
    node = FakeNode(tmp_path)
    node.load_module("nvme_rdma", "nvme_tcp")
    node.add_ctrl("nvme0", dhchap_secret=SECRET,
                  namespaces=((1, "5d2b8a42-7c1e-4d3a-9f0e-1a2b3c4d5e6f", "0" * 32),
                              (2, "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9", "1122334455667788aabbccddeeff0011")))
    node.add_ctrl("nvme1", transport="tcp", src_addr="192.168.100.2",
                  namespaces=((1, "5d2b8a42-7c1e-4d3a-9f0e-1a2b3c4d5e6f", "0" * 32),
                              (2, "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9", "1122334455667788aabbccddeeff0011")))
    node.add_ctrl("nvme2", nqn="nqn.2014-08.org.nvmexpress:uuid:local-pcie", transport="pcie",
                  traddr="0000:4f:00.0", multipath=False,
                  namespaces=((1, "11111111-2222-3333-4444-555555555555", "0" * 32),))
    node.add_ctrl("nvme3", nqn="nqn.2019-01.com.other:vol", traddr="10.0.0.9", state="connecting")
    (node.state_dir).mkdir(parents=True)
    (node.state_dir / "initiator-managed.json").write_text(
        '{"version": 1, "connections": [["%s", "rdma", "192.168.100.1", "4420"]]}\n' % NQN)
    return node


def test_read_state_multipath_namespaces_and_subsystems(tmp_path):
    st = _busy_node(tmp_path).read(nh)
    assert sorted(st["controllers"]) == ["nvme0", "nvme1", "nvme2", "nvme3"]
    ns = st["controllers"]["nvme0"]["namespaces"]
    assert [(n["name"], n["block"], n["nsid"]) for n in ns] == [("nvme0c0n1", "nvme0n1", 1), ("nvme0c0n2", "nvme0n2", 2)]
    assert ns[0]["uuid"] == "5d2b8a42-7c1e-4d3a-9f0e-1a2b3c4d5e6f" and ns[0]["nguid"] is None  # zero NGUID
    assert ns[1]["nguid"] == "1122334455667788aabbccddeeff0011" and ns[1]["ana_state"] == "optimized"
    assert [n["name"] for n in st["controllers"]["nvme1"]["namespaces"]] == ["nvme0c1n1", "nvme0c1n2"]
    assert st["controllers"]["nvme1"]["host_traddr"] == "192.168.100.2"
    assert st["controllers"]["nvme2"]["fabrics"] is False
    assert st["controllers"]["nvme2"]["namespaces"][0]["block"] == "nvme2n1"  # no multipath
    assert st["subsystems"][NQN] == {"name": "nvme-subsys0", "iopolicy": "numa", "controllers": ["nvme0", "nvme1"]}
    assert st["managed"] == [[NQN, "rdma", "192.168.100.1", "4420"]]
    assert st["modules"]["nvme_rdma"] is True


def test_uuid_that_is_only_the_nguid_shown_as_uuid_is_dropped(tmp_path):
    node = FakeNode(tmp_path)
    node.add_ctrl("nvme0", namespaces=((1, "11223344-5566-7788-aabb-ccddeeff0011", "1122334455667788aabbccddeeff0011"),))
    ns = node.read(nh)["controllers"]["nvme0"]["namespaces"][0]
    assert ns["uuid"] is None and ns["nguid"] == "1122334455667788aabbccddeeff0011"


def test_dump_command_and_parse_dump_agree_with_read_state(tmp_path):
    node = _busy_node(tmp_path)
    r = subprocess.run(["sh", "-c", nh.dump_command(**_roots(node))], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert nh.parse_dump(r.stdout, **_roots(node)) == node.read(nh)


def test_dump_on_a_node_without_nvme_at_all(tmp_path):
    root = tmp_path / "bare"
    roots = {"sysfs": str(root / "sys/class/nvme"), "etc": str(root / "etc/nvme"), "state_dir": str(root / "x")}
    r = subprocess.run(["sh", "-c", nh.dump_command(**roots)], capture_output=True, text=True)
    assert r.returncode == 0
    st = nh.parse_dump(r.stdout, **roots)
    assert st == nh.read_state(**roots)
    assert st["controllers"] == {} and st["hostnqn"] is None


def test_default_dump_command_is_read_only():
    cmd = nh.DUMP_COMMAND
    assert "/sys/class/nvme" in cmd and "/etc/nvme/hostnqn" in cmd
    for bad in (">", "rm ", "echo 1", "tee", "modprobe", "nvme "):
        assert bad not in cmd.replace("2>/dev/null", "")


# --------------------------------------------------------------------------- diff
def _actions(changes):
    return [(c["action"], c["object"], c["disruptive"]) for c in changes]


def test_diff_fresh_node_connects_everything(tmp_path):
    node = FakeNode(tmp_path)
    ch = nh.diff(desired(conn(), conn(transport="tcp")), node.read(nh))
    assert _actions(ch) == [
        ("connect", "connection:rdma://192.168.100.1:4420/" + NQN, False),
        ("connect", "connection:tcp://192.168.100.1:4420/" + NQN, False)]
    assert all(set(c) == {"object", "action", "detail", "disruptive", "reason"} for c in ch)


def test_diff_converged_node_has_no_changes(tmp_path):
    node = _busy_node(tmp_path)
    st = node.read(nh)
    assert nh.diff(desired(conn(dhchap_secret=SECRET), conn(transport="tcp"), iopolicy="numa"), st) == []


def test_diff_added_export_connects_only_the_new_one(tmp_path):
    node = _busy_node(tmp_path)
    ch = nh.diff(desired(conn(dhchap_secret=SECRET), conn(transport="tcp"), conn(subsysnqn="nqn.2024-01.io.lab:new")),
                 node.read(nh))
    assert _actions(ch) == [("connect", "connection:rdma://192.168.100.1:4420/nqn.2024-01.io.lab:new", False)]


def test_diff_removed_export_disconnects_managed_path_disruptively(tmp_path):
    node = _busy_node(tmp_path)
    # tcp path is neither desired nor recorded -> untouched; rdma path is recorded as managed
    ch = nh.diff(desired(), node.read(nh))
    assert _actions(ch) == [("disconnect", "controller:nvme0", True)]
    assert "no longer exports" in ch[0]["reason"]


def test_diff_never_touches_unmanaged_or_pcie_controllers(tmp_path):
    node = _busy_node(tmp_path)
    ch = nh.diff(desired(conn(dhchap_secret=SECRET), conn(transport="tcp")), node.read(nh))
    assert not [c for c in ch if "nvme2" in c["object"] or "nvme3" in c["object"] or "other" in c["object"]]


def test_diff_hostnqn_change_is_disruptive_and_reconnects_managed_paths(tmp_path):
    node = _busy_node(tmp_path)
    new_nqn = "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    new_id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    ch = nh.diff(desired(conn(dhchap_secret=SECRET), conn(transport="tcp"), hostnqn=new_nqn, hostid=new_id),
                 node.read(nh))
    acts = _actions(ch)
    assert ("update", "file /etc/nvme/hostnqn", True) in acts
    assert ("update", "file /etc/nvme/hostid", True) in acts
    assert [a for a in acts if a[0] == "reconnect"] == [
        ("reconnect", "connection:rdma://192.168.100.1:4420/" + NQN, True),
        ("reconnect", "connection:tcp://192.168.100.1:4420/" + NQN, True)]
    assert not [a for a in acts if a[0] == "conflict"]  # new pair shares nothing with nvme3's pair


def test_diff_hostnqn_file_change_without_connections_is_not_disruptive(tmp_path):
    node = FakeNode(tmp_path, hostnqn="nqn.2014-08.org.nvmexpress:uuid:cloned-from-image", hostid=None)
    ch = nh.diff(desired(), node.read(nh))
    assert _actions(ch) == [("update", "file /etc/nvme/hostnqn", False), ("update", "file /etc/nvme/hostid", False)]


def test_diff_identity_conflict_with_an_unmanaged_controller(tmp_path):
    node = FakeNode(tmp_path)
    # someone connected by hand with the image's cloned hostnqn but our hostid
    node.add_ctrl("nvme0", nqn="nqn.2019-01.com.other:vol", hostnqn="nqn.2014-08.org.nvmexpress:uuid:cloned")
    ch = nh.diff(desired(conn()), node.read(nh))
    assert ("conflict", "controller:nvme0", False) in _actions(ch)


def test_diff_policy_and_transport_differences_reconnect(tmp_path):
    node = FakeNode(tmp_path)
    node.add_ctrl("nvme0", ctrl_loss_tmo="60", reconnect_delay="5")
    ch = nh.diff(desired(conn()), node.read(nh))
    assert _actions(ch) == [("reconnect", "connection:rdma://192.168.100.1:4420/" + NQN, True)]
    assert "ctrl_loss_tmo 60 -> 600" in ch[0]["detail"] and "reconnect_delay 5 -> 10" in ch[0]["detail"]
    # a path moved from rdma to tcp: the old managed path goes, the new one comes
    node2 = FakeNode(tmp_path / "b")
    node2.add_ctrl("nvme0")
    node2.state_dir.mkdir(parents=True)
    (node2.state_dir / "initiator-managed.json").write_text(nh.managed_record(desired(conn())))
    acts = _actions(nh.diff(desired(conn(transport="tcp")), node2.read(nh)))
    assert acts == [("disconnect", "controller:nvme0", True),
                    ("connect", "connection:tcp://192.168.100.1:4420/" + NQN, False)]


def test_diff_ctrl_loss_tmo_off_and_rounding_are_not_differences(tmp_path):
    node = FakeNode(tmp_path)
    node.add_ctrl("nvme0", ctrl_loss_tmo="off", reconnect_delay="10")
    node.add_ctrl("nvme1", transport="tcp", ctrl_loss_tmo="30", reconnect_delay="15")
    st = node.read(nh)
    assert nh.diff(desired(conn(), ctrl_loss_tmo=-1), {**st, "controllers": {"nvme0": st["controllers"]["nvme0"]}}) == []
    assert nh.diff(desired(conn(transport="tcp"), ctrl_loss_tmo=20, reconnect_delay=15),
                   {**st, "controllers": {"nvme1": st["controllers"]["nvme1"]}}) == []


def test_diff_dhchap_added_or_removed_reconnects(tmp_path):
    node = FakeNode(tmp_path)
    node.add_ctrl("nvme0")
    ch = nh.diff(desired(conn(dhchap_secret=SECRET)), node.read(nh))
    assert ch[0]["action"] == "reconnect" and "dhchap_secret none -> set" in ch[0]["detail"]
    assert SECRET not in repr(ch)


def test_diff_duplicate_controllers_drop_the_extra_one(tmp_path):
    node = FakeNode(tmp_path)
    node.add_ctrl("nvme0")
    node.add_ctrl("nvme1")
    assert _actions(nh.diff(desired(conn()), node.read(nh))) == [("disconnect", "controller:nvme1", False)]


def test_diff_iopolicy(tmp_path):
    node = _busy_node(tmp_path)
    ch = nh.diff(desired(conn(dhchap_secret=SECRET), conn(transport="tcp"), iopolicy="round-robin"), node.read(nh))
    assert _actions(ch) == [("set-iopolicy", "subsystem:" + NQN, False)]
    assert ch[0]["detail"] == "numa -> round-robin"


def test_diff_from_dump_equals_diff_from_sysfs(tmp_path):
    node = _busy_node(tmp_path)
    r = subprocess.run(["sh", "-c", nh.dump_command(**_roots(node))], capture_output=True, text=True)
    d = desired(conn(), conn(subsysnqn="nqn.2024-01.io.lab:new"), iopolicy="queue-depth")
    assert nh.diff(d, nh.parse_dump(r.stdout, **_roots(node))) == nh.diff(d, node.read(nh))


# --------------------------------------------------------------------------- classifier
def _captured(name):
    """(rc, stdout, stderr) of a captured command; the lab appended `echo rc=$?; dmesg` to stdout."""
    out = (FIX / name).read_text()
    err_path = FIX / (name + ".stderr")
    err = err_path.read_text() if err_path.exists() else ""
    rc = 0
    lines = []
    for line in out.splitlines():
        if line.startswith("rc="):
            rc = int(line.split("=", 1)[1].split()[0])
            break  # what follows is dmesg, not nvme-cli output
        lines.append(line)
    if name.endswith(".stderr"):
        return 1, "", out
    return rc, "\n".join(lines), err


@pytest.mark.parametrize("fixture,category,ok", [
    ("nvme-connect-rdma.txt", "ok", True),
    ("dhchap-connect-rdma-ok.txt", "ok", True),
    ("dhchap-connect-tcp-ok.txt", "ok", True),
    ("dhchap-connect-rdma-bidirectional.txt", "ok", True),
    ("nvme-connect-rdma-host-not-allowed.txt", "refused", False),
    ("nvme-connect-rdma-wrong-nqn.txt", "refused", False),
    ("dhchap-connect-rdma-wrong-secret.txt", "refused", False),
    ("dhchap-connect-rdma-wrong-secret-hang-370s.txt", "refused", False),
    ("dhchap-connect-rdma-no-secret.txt", "missing_secret", False),
    ("dhchap-connect-tcp-wrong-secret.txt", "auth_failed", False),
    ("nvme-discover-rdma-no-listener.txt", "no_listener", False),
    ("nvme-discover-no-nvme-modules.stderr", "no_modules", False),
])
def test_classifier_on_every_captured_output(fixture, category, ok):
    rc, out, err = _captured(fixture)
    if fixture in ("dhchap-connect-rdma-wrong-secret-hang-370s.txt", "dhchap-connect-tcp-wrong-secret.txt"):
        rc, err, out = 1, out, ""  # these captures merged stderr into the file
    res = nh.classify(rc, out, err)
    assert (res["category"], res["ok"]) == (category, ok)
    assert "\n" not in res["message"] and "\n" not in res["hint"]
    assert "DHHC-1:01:" not in res["message"]


@pytest.mark.parametrize("rc,out,err", [
    (114, "", ""),
    (70, "", ""),
    (1, "already connected\n", ""),
    (1, "", "already connected\n"),
    (1, "", "Failed to write to /dev/nvme-fabrics: Operation already in progress\n"),
])
def test_classifier_already_connected_across_versions(rc, out, err):
    res = nh.classify(rc, out, err)
    assert res["category"] == "already_connected" and res["ok"] is True


def test_classifier_timeout_and_missing_binary():
    assert nh.classify(None, "", "", timed_out=True)["category"] == "timeout"
    assert nh.classify(127, "", "nvme: No such file or directory")["category"] == "not_installed"
    assert nh.classify(1, "", "weird\n")["category"] == "unknown"


def test_secrets_never_go_on_a_command_line():
    with_keys = conn(dhchap_secret=SECRET, dhchap_ctrl_secret=CTRL_SECRET)
    with pytest.raises(ValueError, match="never with the secret in argv"):
        nh.connect_argv(with_keys, desired())
    line = nh.fabrics_options(with_keys, desired(ctrl_loss_tmo=-1))
    assert line.split(",")[:4] == ["nqn=" + NQN, "transport=rdma", "traddr=192.168.100.1", "trsvcid=4420"]
    assert "dhchap_secret=" + SECRET in line and "dhchap_ctrl_secret=" + CTRL_SECRET in line
    assert "ctrl_loss_tmo=-1" in line and "hostnqn=" + HOSTNQN in line and "\n" not in line
    assert not any(SECRET in a or CTRL_SECRET in a for a in nh.fabrics_argv())
    # a value that would smuggle another option into the kernel's comma-separated line
    with pytest.raises(ValueError, match="subsysnqn|nqn"):
        nh.fabrics_options(dict(with_keys, subsysnqn=NQN + ",hostnqn=x"), desired())


def test_redact_removes_secrets_everywhere():
    text = nh.redact("nvme connect --dhchap-secret=%s --dhchap-ctrl-secret=%s" % (SECRET, CTRL_SECRET))
    assert SECRET not in text and CTRL_SECRET not in text and "--dhchap-secret=********" in text
    assert nh.redact("key %s in a message" % SECRET) == "key DHHC-1:******** in a message"
    assert nh.redact("x %s y" % "s3cr3t", ["s3cr3t"]) == "x ******** y"


def test_connect_argv_shape():
    argv = nh.connect_argv(conn(host_traddr="192.168.100.2"), desired(nr_io_queues=4, queue_size=256, ctrl_loss_tmo=-1))
    assert argv[:10] == ["nvme", "connect", "-t", "rdma", "-a", "192.168.100.1", "-s", "4420", "-n", NQN]
    for a in ("--hostnqn=" + HOSTNQN, "--hostid=" + HOSTID, "--ctrl-loss-tmo=-1", "--reconnect-delay=10",
              "--keep-alive-tmo=5", "--nr-io-queues=4", "--queue-size=256", "--host-traddr=192.168.100.2"):
        assert a in argv
    assert argv[-2:] == ["-o", "json"]


# --------------------------------------------------------------------------- run(): hard timeout
def test_run_timeout_is_honoured(tmp_path):
    script = tmp_path / "nvme"
    script.write_text("#!/bin/sh\nsleep 30\n")
    script.chmod(0o755)
    t0 = time.monotonic()
    rc, out, err, timed_out = nh.run([str(script), "connect"], 1)
    assert timed_out and rc is None
    assert time.monotonic() - t0 < 5


def test_connect_timeout_with_fake_nvme_on_path(tmp_path, monkeypatch):
    node = FakeNode(tmp_path)
    fakesys.install_fakes(tmp_path / "bin", monkeypatch, node, mode="sleep")
    monkeypatch.setenv("FAKE_NVME_SLEEP", "20")
    t0 = time.monotonic()
    res = nh.connect(conn(), desired(), node.paths(nh), timeout=1)
    assert res["category"] == "timeout" and not res["ok"]
    assert time.monotonic() - t0 < 5


def test_connect_confirms_in_sysfs_and_handles_already_connected(tmp_path, monkeypatch):
    node = FakeNode(tmp_path)
    fakesys.install_fakes(tmp_path / "bin", monkeypatch, node, mode="already")
    res = nh.connect(conn(), desired(), node.paths(nh), timeout=10)
    assert res["ok"] and res["category"] == "already_connected" and res["controller"] == "nvme0"
    fakesys.install_fakes(tmp_path / "bin", monkeypatch, node, mode="eio")
    res = nh.connect(conn(traddr="10.9.9.9"), desired(), node.paths(nh), timeout=10)
    assert not res["ok"] and res["category"] == "refused"


def test_run_missing_program():
    rc, out, err, to = nh.run(["/nonexistent/nvme", "version"], 5)
    assert rc == 127 and not to


# --------------------------------------------------------------------------- files (test_fileio.py)
def test_connect_all_retries_until_the_target_answers(tmp_path, monkeypatch):
    node = FakeNode(tmp_path)
    fakesys.install_fakes(tmp_path / "bin", monkeypatch, node, mode="ok")
    monkeypatch.setenv("FAKE_NVME_EIO_ADDRS", "192.168.100.9")
    cfg = tmp_path / "connections.json"
    cfg.write_text(nh.connections_config(desired(conn(), conn(traddr="192.168.100.9"), iopolicy="round-robin")))
    slept, logs = [], []
    clock = [0.0]

    def sleep(s):
        slept.append(s)
        clock[0] += s
        if len(slept) == 2:  # the target comes up
            monkeypatch.setenv("FAKE_NVME_EIO_ADDRS", "")

    rc = nh.connect_all(str(cfg), node.paths(nh), retry_for=600, log=logs.append, sleep=sleep,
                        clock=lambda: clock[0])
    assert rc == 0
    assert slept == [5, 10]
    assert sorted(c["traddr"] for c in node.read(nh)["controllers"].values()) == ["192.168.100.1", "192.168.100.9"]
    assert node.iopolicy(NQN) == "round-robin"
    assert (node.sys / "module" / "nvme_rdma").is_dir()


def test_connect_all_gives_up_after_retry_window(tmp_path, monkeypatch):
    node = FakeNode(tmp_path)
    fakesys.install_fakes(tmp_path / "bin", monkeypatch, node, mode="eio")
    cfg = tmp_path / "connections.json"
    cfg.write_text(nh.connections_config(desired(conn(dhchap_secret=SECRET))))
    clock, logs = [0.0], []
    rc = nh.connect_all(str(cfg), node.paths(nh), retry_for=100, log=logs.append,
                        sleep=lambda s: clock.__setitem__(0, clock[0] + s), clock=lambda: clock[0])
    assert rc == 1 and "giving up" in logs[-1]
    assert not any(SECRET in line for line in logs)
