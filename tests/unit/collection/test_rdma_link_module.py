"""plugins/modules/rdma_link.py run in-process against a fake node: fake /sys and configfs, and
fake `rdma`, `ip`, `modprobe`, `systemctl` that change them like the kernel would."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "fixtures" / "collection" / "target"))
sys.path.insert(0, str(REPO / "playbooks" / "collections"))
import faketarget  # noqa: E402
from modrun import run_module  # noqa: E402

from ansible.module_utils import basic  # noqa: E402
from ansible_collections.nvmeofctl.fabric.plugins.module_utils import rdma as rdma_mu  # noqa: E402
from ansible_collections.nvmeofctl.fabric.plugins.modules import rdma_link as module  # noqa: E402

rdma = faketarget.load_util("rdma")
GIDS = rdma.parse_gid_table(faketarget.fixture("k612-sysfs-gid-table.txt"))


class FakeNode:
    def __init__(self, base, mtu=1500, rxe=None, cm_exposed=True):
        self.sys = base / "sys"
        self.cfg = base / "config"
        self.lib = base / "lib"
        self.root = base / "root"  # systemctl --root=ROOT manages ROOT/etc/systemd/system
        self.unit = self.root / "etc" / "systemd" / "system"
        self.cmds = []
        self.cm_exposed = cm_exposed
        (self.sys / "class" / "net" / "eth1").mkdir(parents=True)
        (self.sys / "class" / "net" / "eth1" / "mtu").write_text("%d\n" % mtu)
        (self.sys / "module").mkdir()
        self.cfg.mkdir()
        if rxe:
            self.add_rxe(rxe, "eth1")
            (self.sys / "module" / "rdma_rxe").mkdir()

    def add_rxe(self, name, netdev):
        port = self.sys / "class" / "infiniband" / name / "ports" / "1"
        for d in ("gids", "gid_attrs/types", "gid_attrs/ndevs"):
            (port / d).mkdir(parents=True)
        for g in GIDS:
            (port / "gids" / str(g["index"])).write_text(g["gid"] + "\n")
            (port / "gid_attrs" / "types" / str(g["index"])).write_text(g["type"] + "\n")
            (port / "gid_attrs" / "ndevs" / str(g["index"])).write_text(netdev + "\n")

    def link_show(self):
        out = []
        ib = self.sys / "class" / "infiniband"
        for dev in sorted(os.listdir(ib)) if ib.exists() else []:
            ndev = (ib / dev / "ports" / "1" / "gid_attrs" / "ndevs" / "0").read_text().strip()
            out.append({"ifindex": 0, "ifname": dev, "port": 1, "state": "ACTIVE", "physical_state": "LINK_UP",
                        "netdev": ndev, "netdev_index": 3})
        return json.dumps(out)

    def run(self, args):
        cmd = [os.path.basename(args[0])] + list(args[1:])
        self.cmds.append(cmd)
        if cmd[:4] == ["rdma", "-j", "link", "show"]:
            return 0, self.link_show(), ""
        if cmd[:3] == ["rdma", "link", "add"]:
            self.add_rxe(cmd[3], cmd[7])
            return 0, "", ""
        if cmd[:3] == ["ip", "link", "set"]:
            (self.sys / "class" / "net" / cmd[4] / "mtu").write_text(cmd[6] + "\n")
            return 0, "", ""
        if cmd[0] == "modprobe":
            for m in cmd[2:]:
                (self.sys / "module" / m).mkdir(exist_ok=True)
                if m == "rdma_cm" and self.cm_exposed:
                    (self.cfg / "rdma_cm").mkdir(exist_ok=True)
            return 0, "", ""
        if cmd[0] == "systemctl":
            assert cmd[1] == "--root=%s" % self.root, cmd
            if cmd[2] == "enable":
                (self.unit / "multi-user.target.wants").mkdir(exist_ok=True)
                (self.unit / "multi-user.target.wants" / cmd[-1]).symlink_to(self.unit / cmd[-1])  # [--no-reload] UNIT
            return 0, "", ""
        raise AssertionError("unexpected command %r" % cmd)

    def params(self, **over):
        p = {"interface": "eth1", "mtu": 9000, "soft_roce": True, "roce_tos": 106, "sysfs_root": str(self.sys),
             "configfs_root": str(self.cfg), "lib_dir": str(self.lib), "unit_dir": str(self.unit)}
        p.update(over)
        return p


@pytest.fixture
def node_factory(tmp_path, monkeypatch):
    holder = {}

    def make(**kw):
        n = FakeNode(tmp_path / ("node%d" % len(holder)), **kw)
        holder["node"] = n
        return n

    monkeypatch.setattr(basic.AnsibleModule, "run_command", lambda self, args, **kw: holder["node"].run(args))
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, required=False, opt_dirs=None: "/usr/sbin/" + name)
    return make


def run(monkeypatch, capsys, args, check=False, diff=False):
    return run_module(module, monkeypatch, capsys, args, check, diff)[0]


def test_fresh_soft_roce_host_predict_apply_noop(node_factory, monkeypatch, capsys):
    n = node_factory()
    pred = run(monkeypatch, capsys, n.params(), check=True, diff=True)
    assert pred["changed"] is True and pred["rdma_device"] == "rxe_eth1"
    assert n.cmds == [["rdma", "-j", "link", "show"]]  # check mode only reads
    assert not n.lib.exists() and not (n.cfg / "rdma_cm").exists()

    n.cmds.clear()
    res = run(monkeypatch, capsys, n.params(), diff=True)
    assert res["changes"] == pred["changes"]
    assert [c["object"] for c in res["changes"]] == [
        "netdev eth1", "kernel modules", "rdma link rxe_eth1", "rdma_cm rxe_eth1 port 1",
        "file %s" % (n.lib / "rdma-restore.sh"), "file %s" % (n.lib / "rdma-device"),
        "file %s" % (n.unit / "nvmeofctl-rdma.service"), "systemd nvmeofctl-rdma.service"]
    assert n.cmds == [
        ["rdma", "-j", "link", "show"],
        ["ip", "link", "set", "dev", "eth1", "mtu", "9000"],
        ["modprobe", "-a", "rdma_rxe", "rdma_cm"],
        ["rdma", "link", "add", "rxe_eth1", "type", "rxe", "netdev", "eth1"],
        ["rdma", "-j", "link", "show"],
        ["systemctl", "--root=%s" % n.root, "enable", "--no-reload", "nvmeofctl-rdma.service"],  # offline root: no daemon-reload
        ["rdma", "-j", "link", "show"],
    ]
    assert (n.cfg / "rdma_cm" / "rxe_eth1" / "ports" / "1" / "default_roce_mode").read_text() == "RoCE v2"
    assert (n.cfg / "rdma_cm" / "rxe_eth1" / "ports" / "1" / "default_roce_tos").read_text() == "106"
    obs = res["observed"]
    assert obs["mtu"] == 9000 and obs["rdma_cm"] == {"default_roce_mode": "RoCE v2", "default_roce_tos": 106}
    assert [g["ipv4"] for g in obs["gids"] if g["type"] == "RoCE v2" and g["ipv4"]] == ["192.168.100.1"]
    assert "rdma device: none" in res["diff"]["before"] and "rdma device: rxe_eth1 (bound to eth1)" in res["diff"]["after"]

    n.cmds.clear()
    again = run(monkeypatch, capsys, n.params(), diff=True)
    assert again["changed"] is False and again["changes"] == []
    assert n.cmds == [["rdma", "-j", "link", "show"]]  # a no-op costs one rdma call, nothing else
    assert again["diff"]["before"] == again["diff"]["after"]


def test_diff_only_in_diff_mode(node_factory, monkeypatch, capsys):
    n = node_factory()
    for check in (True, False):
        res = run(monkeypatch, capsys, n.params(), check=check)
        assert not res.get("failed") and res["changes"] and "diff" not in res
    res = run(monkeypatch, capsys, n.params(), diff=True)
    assert "rdma device: rxe_eth1 (bound to eth1)" in res["diff"]["after"]


def test_existing_rxe_device_is_adopted(node_factory, monkeypatch, capsys):
    n = node_factory(mtu=9000, rxe="rxe0")
    (n.sys / "module" / "rdma_cm").mkdir()
    (n.cfg / "rdma_cm").mkdir()
    res = run(monkeypatch, capsys, n.params(persist=False))
    assert res["rdma_device"] == "rxe0"
    assert [c["object"] for c in res["changes"]] == ["rdma_cm rxe0 port 1"]
    assert ["rdma", "link", "add"] not in [c[:3] for c in n.cmds]
    assert run(monkeypatch, capsys, n.params(persist=False))["changed"] is False


def test_wrong_device_name_fails_clearly(node_factory, monkeypatch, capsys):
    n = node_factory(rxe="rxe0")
    res = run(monkeypatch, capsys, n.params(rdma_device="rxe_fabric"))
    assert res["failed"] is True
    assert res["msg"] == ("rdma_link: eth1 already has RDMA device rxe0, not rxe_fabric: set rdma_device: rxe0 "
                          "(or remove it: rdma link delete rxe0)")
    res = run(monkeypatch, capsys, n.params(interface="eth9"))
    assert res["failed"] is True and "interface eth9 not found" in res["msg"]


def test_rdma_cm_not_exposed_is_reported_not_fatal(node_factory, monkeypatch, capsys):
    n = node_factory(cm_exposed=False)
    res = run(monkeypatch, capsys, n.params(persist=False))
    assert "failed" not in res
    assert "rdma_cm rxe_eth1 port 1" not in [c["object"] for c in res["changes"]]
    assert res["observed"]["rdma_cm"] == "not exposed"
    assert "rdma_cm configfs not exposed" in json.dumps(res.get("warnings"))  # 2.19: structured warnings
    assert run(monkeypatch, capsys, n.params(persist=False))["changed"] is False


def test_persistence_written_once_unit_and_script(node_factory, monkeypatch, capsys):
    n = node_factory()
    run(monkeypatch, capsys, n.params())
    script = n.lib / "rdma-restore.sh"
    unit = n.unit / "nvmeofctl-rdma.service"
    assert oct(script.stat().st_mode & 0o777) == "0o755"
    assert "ExecStart=/bin/sh %s" % script in unit.read_text()
    assert "Before=nvmeofctl-nvmet.service nvmeofctl-connect.service" in unit.read_text()
    assert "sys-subsystem-net-devices-eth1.device" in unit.read_text()
    device = n.lib / "rdma-device"  # the device the module chose, which the script re-creates at boot
    assert device.read_text() == "rxe_eth1\n" and oct(device.stat().st_mode & 0o777) == "0o644"
    assert "DEVFILE=%s" % device in script.read_text()
    stamp = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in (script, unit, device)]
    res = run(monkeypatch, capsys, n.params())
    assert res["changed"] is False
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in (script, unit, device)] == stamp
    assert [c[2:] for c in n.cmds if c[0] == "systemctl"] == [["enable", "--no-reload", "nvmeofctl-rdma.service"]]  # once


def test_without_its_texts_the_module_changes_nothing(node_factory, monkeypatch, capsys):
    """Called without the action plugin's host_files (persist on), the module fails before any
    change: no MTU, no rxe, no file."""
    n = node_factory()
    res = run(monkeypatch, capsys, dict(n.params(), host_files=None))
    assert res["failed"] is True
    assert "host_files.rdma_script, host_files.rdma_unit not given" in res["msg"]
    assert "nvmeofctl.fabric.rdma_link" in res["msg"]
    assert n.cmds == [] and not n.lib.exists()


def test_persist_false_removes_the_boot_files_and_keeps_the_live_link(node_factory, monkeypatch, capsys):
    n = node_factory()
    run(monkeypatch, capsys, n.params())
    n.cmds.clear()
    res = run(monkeypatch, capsys, n.params(persist=False))
    assert [(c["action"], c["object"]) for c in res["changes"]] == [
        ("disable", "systemd nvmeofctl-rdma.service"),
        ("remove", "file %s" % (n.lib / "rdma-restore.sh")),
        ("remove", "file %s" % (n.lib / "rdma-device")),
        ("remove", "file %s" % (n.unit / "nvmeofctl-rdma.service")),
    ]
    assert not (n.lib / "rdma-restore.sh").exists() and not (n.lib / "rdma-device").exists()
    assert not (n.unit / "nvmeofctl-rdma.service").exists()
    assert [c for c in n.cmds if c[0] == "rdma" and c[1] != "-j"] == []  # the rxe device stays
    assert run(monkeypatch, capsys, n.params(persist=False))["changed"] is False
