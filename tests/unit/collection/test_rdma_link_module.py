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
from modrun import TEST_PYTHON, run_module  # noqa: E402

from ansible.module_utils import basic  # noqa: E402
from ansible_collections.nvmeofctl.fabric.plugins.module_utils import rdma as rdma_mu  # noqa: E402
from ansible_collections.nvmeofctl.fabric.plugins.modules import nvme_host, nvmet_target  # noqa: E402
from ansible_collections.nvmeofctl.fabric.plugins.modules import rdma_link as module  # noqa: E402
from ansible_collections.nvmeofctl.fabric.plugins.plugin_utils import host_files_calls  # noqa: E402

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

    def add_netdev(self, name, mtu=1500):
        (self.sys / "class" / "net" / name).mkdir(parents=True)
        (self.sys / "class" / "net" / name / "mtu").write_text("%d\n" % mtu)

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


# --------------------------------------------------------------------------------------------
# several fabric interfaces ("rails"): rdma_link's `rail`, the role modules' `rdma_rails`
# (the second interface's GID table is the same capture, k612-sysfs-gid-table.txt, bound to eth2
# by add_rxe, as `rdma link add` binds it)
# --------------------------------------------------------------------------------------------


def test_rail_2_writes_its_own_boot_files_and_rail_1_keeps_its_names(node_factory, monkeypatch, capsys):
    n = node_factory()
    n.add_netdev("eth2")
    run(monkeypatch, capsys, n.params())  # rail 1 (default): today's names
    res = run(monkeypatch, capsys, n.params(interface="eth2", rail=2))
    assert res["rdma_device"] == "rxe_eth2"
    assert [c["object"] for c in res["changes"] if c["kind"] == "persist"] == [
        "file %s" % (n.lib / "rdma-restore-eth2.sh"), "file %s" % (n.lib / "rdma-device-eth2"),
        "file %s" % (n.unit / "nvmeofctl-rdma-eth2.service"), "systemd nvmeofctl-rdma-eth2.service"]
    assert sorted(os.listdir(n.lib)) == ["rdma-device", "rdma-device-eth2", "rdma-restore-eth2.sh", "rdma-restore.sh"]
    assert (n.lib / "rdma-device-eth2").read_text() == "rxe_eth2\n" and (n.lib / "rdma-device").read_text() == "rxe_eth1\n"
    unit = (n.unit / "nvmeofctl-rdma-eth2.service").read_text()
    assert "ExecStart=/bin/sh %s" % (n.lib / "rdma-restore-eth2.sh") in unit
    assert "DEVFILE=%s" % (n.lib / "rdma-device-eth2") in (n.lib / "rdma-restore-eth2.sh").read_text()
    assert sorted(os.listdir(n.unit / "multi-user.target.wants")) == ["nvmeofctl-rdma-eth2.service",
                                                                      "nvmeofctl-rdma.service"]
    assert run(monkeypatch, capsys, n.params(interface="eth2", rail=2))["changed"] is False
    res = run(monkeypatch, capsys, n.params(rail=0))
    assert res["failed"] is True and res["msg"] == "rdma_link: rail: 1 or more expected, got 0"


def _role(name, n, **over):
    """(module, params) of a role module that only reconciles its RDMA links: no exports, no
    connections, its own boot files off."""
    if name == "nvmet_target":
        p = {"configfs_root": str(n.sys.parent / "nvmet"), "state_dir": str(n.sys.parent / "state"),
             "lib_dir": str(n.lib), "unit_dir": str(n.unit), "persist": False}
        (n.sys.parent / "nvmet").mkdir(exist_ok=True)
        mod = nvmet_target
    else:
        p = {"hostnqn": "nqn.2014-08.org.nvmexpress:uuid:f4a3064a-a702-4134-ab62-ed4d001ffe8b",
             "hostid": "f4a3064a-a702-4134-ab62-ed4d001ffe8b", "connections": [],
             "sysfs_root": str(n.sys), "etc_root": str(n.root / "etc"), "state_dir": str(n.sys.parent / "state"),
             "lib_dir": str(n.lib), "persist": False}
        mod = nvme_host
    link = {k: v for k, v in n.params().items() if k != "interface"}
    p.update(rdma=dict(link, interface="eth1"), rdma_rails=[dict(link, interface="eth2", rail=5)])
    p.update(over)
    return mod, p


@pytest.fixture
def role_node(node_factory, monkeypatch):
    n = node_factory()
    n.add_netdev("eth2")
    (n.sys / "module" / "nvmet").mkdir()  # the target's own kernel modules: loaded
    monkeypatch.setattr(nvmet_target, "SYS_MODULE_DIR", str(n.sys / "module"))
    monkeypatch.setattr(nvmet_target, "configfs", faketarget.make_plain_fs(sys.modules[nvmet_target.ConfigFS.__module__]))
    return n


def _links(changes):
    """The RDMA links' changes among a role module's."""
    return [c for c in changes if c.get("kind") in ("mtu", "modules", "rxe", "rdma_cm")
            or any(name in c["object"] for name in ("nvmeofctl-rdma", "/rdma-restore", "/rdma-device"))]


@pytest.mark.parametrize("name", ["nvmet_target", "nvme_host"])
def test_role_module_reconciles_two_rails_in_one_run(role_node, monkeypatch, capsys, name):
    n = role_node
    mod, p = _role(name, n)
    pred = run_module(mod, monkeypatch, capsys, p, check=True, diff=True)[0]
    assert not pred.get("failed"), pred
    assert [c for c in n.cmds if c[:3] != ["rdma", "-j", "link"]] == []  # check mode only reads
    assert not n.lib.exists()

    n.cmds.clear()
    res = run_module(mod, monkeypatch, capsys, p, diff=True)[0]
    assert not res.get("failed"), res
    rdma_changes = _links(res["changes"])
    assert rdma_changes == _links(pred["changes"])  # rail 2 predicted as it ran
    assert res["changes"][:len(rdma_changes)] == rdma_changes  # the links lead, rail 1 first
    assert [c["object"] for c in rdma_changes] == [
        "netdev eth1", "kernel modules", "rdma link rxe_eth1", "rdma_cm rxe_eth1 port 1",
        "file %s" % (n.lib / "rdma-restore.sh"), "file %s" % (n.lib / "rdma-device"),
        "file %s" % (n.unit / "nvmeofctl-rdma.service"), "systemd nvmeofctl-rdma.service",
        "netdev eth2", "rdma link rxe_eth2", "rdma_cm rxe_eth2 port 1",  # rdma_cm loaded by rail 1
        "file %s" % (n.lib / "rdma-restore-eth2.sh"), "file %s" % (n.lib / "rdma-device-eth2"),
        "file %s" % (n.unit / "nvmeofctl-rdma-eth2.service"), "systemd nvmeofctl-rdma-eth2.service"]
    assert [c for c in n.cmds if c[0] != "rdma" or c[1] != "-j"] == [
        ["ip", "link", "set", "dev", "eth1", "mtu", "9000"],
        ["modprobe", "-a", "rdma_rxe", "rdma_cm"],
        ["rdma", "link", "add", "rxe_eth1", "type", "rxe", "netdev", "eth1"],
        ["systemctl", "--root=%s" % n.root, "enable", "--no-reload", "nvmeofctl-rdma.service"],
        ["ip", "link", "set", "dev", "eth2", "mtu", "9000"],
        ["rdma", "link", "add", "rxe_eth2", "type", "rxe", "netdev", "eth2"],
        ["systemctl", "--root=%s" % n.root, "enable", "--no-reload", "nvmeofctl-rdma-eth2.service"]]
    assert res["rdma"]["rdma_device"] == "rxe_eth1" and res["rdma"]["changed"] is True
    assert [(r["rdma_device"], r["observed"]["interface"], r["observed"]["mtu"], r["changed"])
            for r in res["rdma_rails"]] == [("rxe_eth2", "eth2", 9000, True)]
    for dev in ("rxe_eth1", "rxe_eth2"):
        assert (n.cfg / "rdma_cm" / dev / "ports" / "1" / "default_roce_tos").read_text() == "106"
    assert (n.lib / "rdma-device").read_text() == "rxe_eth1\n"
    assert (n.lib / "rdma-device-eth2").read_text() == "rxe_eth2\n"
    assert "IF=eth2" in (n.lib / "rdma-restore-eth2.sh").read_text().splitlines()
    assert "ExecStart=/bin/sh %s" % (n.lib / "rdma-restore-eth2.sh") in (n.unit / "nvmeofctl-rdma-eth2.service").read_text()
    before = res["diff"]["before"]
    assert before.index("netdev eth1: mtu 1500") < before.index("netdev eth2: mtu 1500")
    assert "persist %s: absent" % (n.unit / "nvmeofctl-rdma-eth2.service") in before

    n.cmds.clear()
    again = run_module(mod, monkeypatch, capsys, p)[0]
    assert _links(again["changes"]) == [] and again["rdma_rails"][0]["changed"] is False
    assert n.cmds == [["rdma", "-j", "link", "show"]] * 2  # one read per rail


def test_role_module_removes_only_the_dropped_persistence_of_rail_2(role_node, monkeypatch, capsys):
    n = role_node
    mod, p = _role("nvmet_target", n)
    run_module(mod, monkeypatch, capsys, p)
    off = dict(p, rdma_rails=[dict(p["rdma_rails"][0], persist=False)])
    res = run_module(mod, monkeypatch, capsys, off)[0]
    assert [(c["action"], c["object"]) for c in _links(res["changes"])] == [
        ("disable", "systemd nvmeofctl-rdma-eth2.service"),
        ("remove", "file %s" % (n.lib / "rdma-restore-eth2.sh")),
        ("remove", "file %s" % (n.lib / "rdma-device-eth2")),
        ("remove", "file %s" % (n.unit / "nvmeofctl-rdma-eth2.service"))]
    assert sorted(os.listdir(n.lib)) == ["rdma-device", "rdma-restore.sh"]  # rail 1 stays
    assert sorted(os.listdir(n.unit / "multi-user.target.wants")) == ["nvmeofctl-rdma.service"]
    assert (n.unit / "nvmeofctl-rdma.service").exists() and not (n.unit / "nvmeofctl-rdma-eth2.service").exists()
    assert "rxe_eth2" in os.listdir(n.sys / "class" / "infiniband")  # the live link stays
    assert run_module(mod, monkeypatch, capsys, off)[0]["changed"] is False


@pytest.mark.parametrize("name", ["nvmet_target", "nvme_host"])
def test_a_rail_dropped_from_rdma_rails_leaves_no_boot_unit(role_node, monkeypatch, capsys, name):
    """Two rails deployed, then the module runs with rail 1 only (the spec dropped rail 2): rail 2's
    unit is disabled and its files go (predicted so in check mode); the live link stays; a second
    run changes nothing."""
    n = role_node
    mod, p = _role(name, n)
    run_module(mod, monkeypatch, capsys, p)
    one = dict(p)
    del one["rdma_rails"]
    pred = run_module(mod, monkeypatch, capsys, one, check=True)[0]
    res = run_module(mod, monkeypatch, capsys, one)[0]
    gone = [("disable", "systemd nvmeofctl-rdma-eth2.service"),
            ("remove", "file %s" % (n.lib / "rdma-restore-eth2.sh")),
            ("remove", "file %s" % (n.lib / "rdma-device-eth2")),
            ("remove", "file %s" % (n.unit / "nvmeofctl-rdma-eth2.service"))]
    assert [(c["action"], c["object"]) for c in _links(pred["changes"])] == gone
    assert [(c["action"], c["object"]) for c in _links(res["changes"])] == gone
    assert {c["reason"] for c in _links(res["changes"])} == {"rail eth2 is no longer in rdma_rails"}
    assert sorted(os.listdir(n.lib)) == ["rdma-device", "rdma-restore.sh"]
    assert sorted(os.listdir(n.unit / "multi-user.target.wants")) == ["nvmeofctl-rdma.service"]
    assert "rxe_eth2" in os.listdir(n.sys / "class" / "infiniband")  # the live link stays
    assert run_module(mod, monkeypatch, capsys, one)[0]["changed"] is False
    # without `rdma` the module leaves every RDMA link and boot file alone (a TCP fabric)
    run_module(mod, monkeypatch, capsys, p)
    tcp = {k: v for k, v in p.items() if k not in ("rdma", "rdma_rails")}
    assert run_module(mod, monkeypatch, capsys, tcp)[0]["changed"] is False
    assert "nvmeofctl-rdma-eth2.service" in os.listdir(n.unit)


@pytest.mark.parametrize("name", ["nvmet_target", "nvme_host"])
def test_role_module_refuses_two_rails_on_one_interface_before_any_change(role_node, monkeypatch, capsys, name):
    n = role_node
    mod, p = _role(name, n)
    p["rdma_rails"] = [dict(p["rdma_rails"][0]), dict(p["rdma"])]  # eth2, then eth1 again
    res = run_module(mod, monkeypatch, capsys, p)[0]
    assert res["failed"] is True
    assert res["msg"] == ("rdma_link: rdma_rails[1]: interface eth1 is already the fabric link of rdma "
                          "(one interface, one rail)")
    assert n.cmds == [] and not n.lib.exists()


def test_role_module_checks_every_rail_before_changing_any(role_node, monkeypatch, capsys):
    """A later rail's bad option (or missing text) fails the run before rail 1 changes anything."""
    n = role_node
    mod, p = _role("nvmet_target", n)
    bad = dict(p, rdma_rails=[dict(p["rdma_rails"][0], roce_tos=300)])
    res = run_module(mod, monkeypatch, capsys, bad)[0]
    assert res["failed"] is True and res["msg"] == "rdma_link: rdma_rails[0]: roce_tos: 0..255 expected, got 300"
    texts = host_files_calls.host_files("nvmet_target", p, TEST_PYTHON)
    del texts["rdma_unit@eth2"]
    res = run_module(mod, monkeypatch, capsys, dict(p, host_files=texts))[0]
    assert res["failed"] is True and res["msg"].startswith("rdma_link: rdma_rails[0]: host_files.rdma_unit@eth2 not given")
    assert n.cmds == [] and not n.lib.exists()
