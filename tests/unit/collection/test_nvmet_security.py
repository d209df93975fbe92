"""Hostile spec input against the target side: configfs traversal, the shared validators applied by
``nvmet_target``, backing files nvmeofctl did not create, and block devices in use
(module_utils/nvmet.py, module_utils/backing.py, plugins/modules/nvmet_target.py).

The block-device checks run over fake /proc and /sys trees and a fake blkid; mountinfo and most of
the sysfs layout are hand-written in the kernel's documented format (the lab target's are not
captured yet: tests/fixtures/collection/block/README.md); the blkid outputs are real util-linux
2.38.1 output on image files, except LVM2."""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "fixtures" / "collection" / "target"))
sys.path.insert(0, str(REPO / "playbooks" / "collections"))
import faketarget  # noqa: E402
from faketarget import CTRL_KEY, HOSTNQN, KEY, SUBNQN  # noqa: E402
from modrun import run_module  # noqa: E402

from ansible.module_utils import basic  # noqa: E402
from ansible_collections.nvmeofctl.fabric.plugins.modules import nvmet_target as module  # noqa: E402

nvmet = faketarget.load_util("nvmet")
backing = faketarget.load_util("backing")
validators = faketarget.load_util("validators")
BLOCK = REPO / "tests" / "fixtures" / "collection" / "block"
TRAVERSAL = "nqn.2024-01.io.x:train/../../../../tmp/y"


def escape_targets(root):
    """Where TRAVERSAL joined below each configfs directory that takes an NQN would land."""
    bases = [("hosts",), ("subsystems",), ("subsystems", SUBNQN, "allowed_hosts"), ("ports", "1", "subsystems")]
    return [Path(os.path.normpath(os.path.join(root, *b, TRAVERSAL))) for b in bases]


def snapshot(top):
    """Every path below ``top`` with what identifies its content."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            out[p] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns,
                      os.readlink(p) if stat.S_ISLNK(st.st_mode) else None)
    return out


# ------------------------------------------------------------------------------------------
# ConfigFS: every path part one name, every resolved path inside the root
# ------------------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "nvmet"
    for d in ("hosts", "subsystems", "ports"):
        (root / d).mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    return root, outside


@pytest.mark.parametrize("bad", ["..", ".", "", "a/b", "x\0y", TRAVERSAL, "../outside"])
def test_configfs_refuses_a_part_that_is_not_one_name(tree, tmp_path, bad):
    root, _ = tree
    fs = nvmet.ConfigFS(str(root))
    before = snapshot(tmp_path)
    for call in (lambda: fs.mkdir("hosts", bad), lambda: fs.write("1", "subsystems", bad, "attr_serial"),
                 lambda: fs.read("subsystems", bad, "attr_serial"), lambda: fs.listdir("ports", bad),
                 lambda: fs.exists("hosts", bad), lambda: fs.unlink("ports", "1", "subsystems", bad),
                 lambda: fs.rmdir("hosts", bad), lambda: fs.symlink(("hosts", bad), ("subsystems", "s", "allowed_hosts", "h")),
                 lambda: fs.symlink(("hosts", "h"), ("subsystems", "s", "allowed_hosts", bad))):
        with pytest.raises(nvmet.NvmetError, match="refusing path outside the nvmet configfs root"):
            call()
    assert snapshot(tmp_path) == before


def test_configfs_refuses_symlinked_escapes(tree, tmp_path):
    root, outside = tree
    # a symlink planted in the tree pointing out of it
    os.rmdir(root / "subsystems")
    (root / "subsystems").symlink_to(outside)
    (root / "ports" / "1" / "subsystems").mkdir(parents=True)
    fs = nvmet.ConfigFS(str(root))
    before = snapshot(tmp_path)
    with pytest.raises(nvmet.NvmetError, match=r"refusing path outside the nvmet configfs root: .* resolves to .*outside"):
        fs.mkdir("subsystems", SUBNQN)
    with pytest.raises(nvmet.NvmetError, match="refusing path outside"):
        fs.write("keep", "subsystems", "precious")
    with pytest.raises(nvmet.NvmetError, match="refusing path outside"):
        fs.read("subsystems", "precious")
    with pytest.raises(nvmet.NvmetError, match="refusing path outside"):
        fs.unlink("subsystems", "precious")  # the parent resolves outside
    # a symlink whose target would leave the tree
    with pytest.raises(nvmet.NvmetError, match="refusing path outside"):
        fs.symlink(("subsystems", "precious"), ("ports", "1", "subsystems", SUBNQN))
    assert snapshot(tmp_path) == before
    assert (outside / "precious").read_text() == "keep"


def test_configfs_link_operations_act_on_the_link_not_its_target(tree, tmp_path):
    root, outside = tree
    fs = faketarget.make_plain_fs(nvmet)(str(root))
    fs.mkdir("subsystems", SUBNQN)
    fs.symlink(("subsystems", SUBNQN), ("ports", "1", "subsystems", SUBNQN))
    assert fs.exists("ports", "1", "subsystems", SUBNQN)
    assert os.readlink(root / "ports" / "1" / "subsystems" / SUBNQN) == str(root / "subsystems" / SUBNQN)
    fs.unlink("ports", "1", "subsystems", SUBNQN)
    assert not fs.exists("ports", "1", "subsystems", SUBNQN)
    # a link that points outside (planted) can still be removed: unlink does not follow it
    (root / "ports" / "1" / "subsystems" / "planted").symlink_to(outside)
    fs.unlink("ports", "1", "subsystems", "planted")
    assert (outside / "precious").read_text() == "keep"
    # and writing through a planted attribute link is refused
    (root / "subsystems" / SUBNQN / "attr_model").symlink_to(outside / "precious")
    with pytest.raises(nvmet.NvmetError, match="refusing path outside"):
        fs.write("pwned", "subsystems", SUBNQN, "attr_model")
    assert (outside / "precious").read_text() == "keep"


def test_apply_refuses_a_traversal_nqn_that_bypassed_normalize(tree, tmp_path):
    root, _ = tree
    desired = {"hosts": {TRAVERSAL: {"dhchap_key": None, "dhchap_ctrl_key": None}}, "subsystems": {}, "ports": {}}
    changes = nvmet.diff(desired, nvmet.read_tree(str(root)))
    before = snapshot(tmp_path)
    with pytest.raises(nvmet.NvmetError, match="refusing path outside the nvmet configfs root") as e:
        nvmet.apply(str(root), desired, changes)
    assert e.value.done == []
    assert snapshot(tmp_path) == before
    assert not any(p.exists() for p in escape_targets(root))


# ------------------------------------------------------------------------------------------
# nvmet.py's own NQN rule (normalize): fullmatch, no '/', no whitespace; never stricter than
# the shared validators for a valid NQN
# ------------------------------------------------------------------------------------------

VALID_NQNS = [HOSTNQN, SUBNQN, "nqn.2014-08.org.nvmexpress:uuid:F4A3064A-A702-4134-AB62-ED4D001FFE8B",
              "nqn.2024-01.io.lab:a.b_c:d-e+f@g=h", "nqn.2024-12.com.example.storage:" + "x" * 190]
HOSTILE_NQNS = [TRAVERSAL, SUBNQN + "\n", SUBNQN + " ", "nqn.2024-01.io.lab:$(id)", "nqn.2024-01.io.lab:a;reboot",
                "nqn.2024-01.io.lab:`id`", "nqn.2024-01.io.lab:a b", "nqn.2024-01.io.lab:a/b", "nqn.2024-01.io.lab:a\tb",
                " " + SUBNQN, "nqn.2024-01.io.lab:" + "x" * 220]


@pytest.mark.parametrize("nqn", VALID_NQNS)
def test_valid_nqns_pass_both_rules(nqn):
    assert validators.nqn_problem(nqn) is None
    assert nvmet._NQN_RE.fullmatch(nqn)


@pytest.mark.parametrize("nqn", HOSTILE_NQNS)
def test_hostile_nqns_fail_validators_and_the_path_unsafe_ones_fail_normalize(nqn):
    assert validators.nqn_problem(nqn) is not None
    if any(c in nqn for c in "/ \t\n") or len(nqn) > 223:
        with pytest.raises(ValueError, match=r"hosts\[0\]\.nqn: not an NQN"):
            nvmet.normalize({"hosts": [{"nqn": nqn}]})


def test_normalize_uses_fullmatch_everywhere():
    base = {"nqn": SUBNQN, "namespaces": [{"nsid": 1, "device_path": "/dev/nvme0n1",
                                           "uuid": "fbd61f08-fde1-48e3-b431-57fda06e7aa9\n"}]}
    # identifiers are trimmed, then matched whole: what reaches configfs is clean
    ns = nvmet.normalize({"subsystems": [base]})["subsystems"][SUBNQN]["namespaces"]["1"]
    assert ns["device_uuid"] == "fbd61f08-fde1-48e3-b431-57fda06e7aa9"
    base["namespaces"][0].update(uuid="fbd61f08-fde1-48e3-b431-57fda06e7aa9\nx")
    with pytest.raises(ValueError, match="not a UUID"):
        nvmet.normalize({"subsystems": [base]})
    base["namespaces"][0].update(uuid=None, nguid="fbd61f08fde148e3b43157fda06e7aa9\n0")
    with pytest.raises(ValueError, match="not an NGUID"):
        nvmet.normalize({"subsystems": [base]})
    for path in ("/dev/../etc/shadow", "/dev/nvme0n1\n", "/dev/nvme 0", "dev/nvme0n1", "/dev//nvme0n1"):
        base["namespaces"][0].update(nguid=None, device_path=path)
        with pytest.raises(ValueError, match=r"device_path: an absolute, normalised path"):
            nvmet.normalize({"subsystems": [base]})
    port = {"id": 1, "trtype": "tcp", "traddr": "10.0.0.1", "trsvcid": "٤٤٢٠"}  # Arabic-Indic digits: isdigit() is True
    with pytest.raises(ValueError, match="trsvcid"):
        nvmet.normalize({"ports": [port]})
    with pytest.raises(ValueError, match="traddr"):
        nvmet.normalize({"ports": [dict(port, trsvcid=4420, traddr="10.0.0.1;id")]})


# ------------------------------------------------------------------------------------------
# the module: validators on every option, before anything is touched
# ------------------------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path, monkeypatch):
    e = {"top": tmp_path, "root": tmp_path / "nvmet", "state": tmp_path / "etc", "lib": tmp_path / "lib",
         "unit": tmp_path / "root" / "etc" / "systemd" / "system", "data": tmp_path / "data", "cmds": []}
    e["root"].mkdir()
    # the kernel modules are loaded (/sys/module stand-in): no modprobe unless a test unloads them
    for m in ("nvmet", "nvmet_rdma", "nvmet_tcp"):
        (tmp_path / "sys-module" / m).mkdir(parents=True)
    monkeypatch.setattr(module, "SYS_MODULE_DIR", str(tmp_path / "sys-module"))
    # configfs over a plain tree: the kernel's part emulated, the module's own code path run
    monkeypatch.setattr(module, "configfs", faketarget.make_plain_fs(sys.modules[module.ConfigFS.__module__]))

    def run_command(self, args, **kw):
        e["cmds"].append(list(args))
        return 0, "", ""

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, required=False, opt_dirs=None: "/usr/sbin/" + name)
    return e


def params(e, **over):
    p = {
        "configfs_root": str(e["root"]), "state_dir": str(e["state"]), "lib_dir": str(e["lib"]),
        "unit_dir": str(e["unit"]), "backing_prefixes": [str(e["data"]) + "/"],
        "hosts": [{"nqn": HOSTNQN, "dhchap_key": KEY, "dhchap_ctrl_key": CTRL_KEY}],
        "subsystems": [{"nqn": SUBNQN, "serial": "0123456789abcdef", "allowed_hosts": [HOSTNQN],
                        "namespaces": [{"nsid": 1, "name": "scratch", "device_path": str(e["data"] / "pool1.img"),
                                        "size": 1 << 20, "create_file": True}]}],
        "ports": [{"id": 1, "trtype": "tcp", "traddr": "192.168.100.1", "trsvcid": 4420, "subsystems": [SUBNQN]}],
    }
    p.update(over)
    return p


def run(monkeypatch, capsys, args, check=False, diff=False):
    return run_module(module, monkeypatch, capsys, args, check, diff)


def _set(p, where, value):
    """Set ``value`` at a dotted option path like subsystems.0.namespaces.0.size."""
    *head, last = where.split(".")
    node = p
    for k in head:
        node = node[int(k)] if k.isdigit() else node[k]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


HOSTILE = [
    ("hosts.0.nqn", TRAVERSAL, "hosts[0].nqn: not a valid NQN"),
    ("subsystems.0.nqn", TRAVERSAL, "subsystems[0].nqn: not a valid NQN"),
    ("subsystems.0.allowed_hosts.0", TRAVERSAL, "subsystems[0].allowed_hosts[0]: not a valid NQN"),
    ("ports.0.subsystems.0", TRAVERSAL, "ports[0].subsystems[0]: not a valid NQN"),
    ("hosts.0.nqn", "nqn.2024-01.io.lab:$(id)", "hosts[0].nqn: not a valid NQN"),
    ("hosts.0.nqn", HOSTNQN + "\n", "hosts[0].nqn: not a valid NQN"),
    ("subsystems.0.nqn", "nqn.2024-01.io.lab:a;reboot", "subsystems[0].nqn: not a valid NQN"),
    ("subsystems.0.nqn", "nqn.2024-01.io.lab:`id`", "subsystems[0].nqn: not a valid NQN"),
    ("subsystems.0.nqn", "nqn.2024-01.io.lab:gpu pool", "subsystems[0].nqn: not a valid NQN"),
    ("subsystems.0.serial", "0123\n", "subsystems[0].serial: serial must be 1-20 printable ASCII"),
    ("subsystems.0.namespaces.0.name", "$(id)", "subsystems[0].namespaces[0].name: not a valid name"),
    ("subsystems.0.namespaces.0.device_path", "{data}/../../../etc/passwd",
     "subsystems[0].namespaces[0].device_path: must be a normalised path"),
    ("subsystems.0.namespaces.0.device_path", "{data}/$(id).img", "subsystems[0].namespaces[0].device_path: path components"),
    ("subsystems.0.namespaces.0.device_path", "{data}/a;b.img", "subsystems[0].namespaces[0].device_path: path components"),
    ("subsystems.0.namespaces.0.device_path", "{data}/pool 1.img", "subsystems[0].namespaces[0].device_path: path components"),
    ("subsystems.0.namespaces.0.device_path", "{data}/pool1.img\n", "subsystems[0].namespaces[0].device_path: path components"),
    ("subsystems.0.namespaces.0.device_path", "/etc/passwd", "subsystems[0].namespaces[0].device_path: not under an allowed"),
    ("subsystems.0.namespaces.0.size", 2 ** 100, "subsystems[0].namespaces[0].size: size must be between"),
    ("subsystems.0.namespaces.0.size", 4097, "subsystems[0].namespaces[0].size: size must be a multiple of 4096"),
    ("subsystems.0.namespaces.0.signature", "ext4;id", "subsystems[0].namespaces[0].signature: not a signature"),
    ("subsystems.0.namespaces.0.uuid", "fbd61f08-fde1-48e3-b431-57fda06e7aa9\n", "subsystems[0].namespaces[0].uuid: not a UUID"),
    ("ports.0.traddr", "192.168.100.1\n", "ports[0].traddr: not an IP address"),
    ("ports.0.traddr", "fe80::1%eth0", "ports[0].traddr: not an IP address"),
    ("hosts.0.dhchap_key", KEY[:-6] + "AAAAA:", "hosts[0].dhchap_key: not a valid DH-HMAC-CHAP secret"),
    ("hosts.0.dhchap_ctrl_key", CTRL_KEY + "\n", "hosts[0].dhchap_ctrl_key: not a valid DH-HMAC-CHAP secret: wrong format"),
    ("backing_prefixes.0", "/", "backing_prefixes[0]: not a backing prefix"),
    ("backing_prefixes.0", "/srv/../etc/", "backing_prefixes[0]: not a backing prefix"),
]


@pytest.mark.parametrize("where,value,message", HOSTILE, ids=[h[0] + "=" + repr(h[1])[:30] for h in HOSTILE])
def test_module_refuses_hostile_options_before_touching_anything(env, monkeypatch, capsys, where, value, message):
    p = params(env)
    _set(p, where, value.format(data=env["data"]) if isinstance(value, str) and "{data}" in value else value)
    before = snapshot(env["top"])
    for check in (True, False):
        res, raw = run(monkeypatch, capsys, p, check=check, diff=True)
        assert res["failed"] is True
        assert res["msg"].startswith("nvmet_target: ") and message in res["msg"], res["msg"]
        assert "\n" not in res["msg"]
        assert KEY not in raw and CTRL_KEY not in raw and KEY[10:40] not in raw and CTRL_KEY[10:40] not in raw
    assert snapshot(env["top"]) == before  # configfs, state, backing dir: nothing created or changed
    assert env["cmds"] == []
    assert not any(p.exists() for p in escape_targets(env["root"]))


def test_etc_shadow_as_a_device_is_refused_by_prefix_and_by_the_device_check(env, monkeypatch, capsys):
    ns = {"nsid": 1, "device_path": "/etc/shadow"}
    p = params(env)
    p["subsystems"][0]["namespaces"] = [ns]
    res, _ = run(monkeypatch, capsys, p)
    assert "subsystems[0].namespaces[0].device_path: not under an allowed backing prefix" in res["msg"]
    # even where a careless spec allows /etc/: not a block device (the real /proc and /sys here)
    p["backing_prefixes"] = ["/etc/"]
    p["subsystems"][0]["namespaces"] = [dict(ns, device_path="/etc/passwd", name="oops")]
    res, _ = run(monkeypatch, capsys, p)
    assert res["failed"] is True
    assert res["msg"].startswith("nvmet_target: subsystem %s namespace 1 (oops): /etc/passwd is not a block device" % SUBNQN)
    assert os.listdir(env["root"]) == [] and not env["state"].exists()


# ------------------------------------------------------------------------------------------
# backing files: created private, never grown or exported unless nvmeofctl made them
# ------------------------------------------------------------------------------------------


def test_created_file_is_private_recorded_and_accepted_again(env, monkeypatch, capsys):
    res, _ = run(monkeypatch, capsys, params(env))
    assert "failed" not in res, res.get("msg")
    img = env["data"] / "pool1.img"
    assert stat.S_IMODE(img.stat().st_mode) == 0o600 and stat.S_IMODE(env["data"].stat().st_mode) == 0o700
    managed = json.loads((env["state"] / "nvmet-managed.json").read_text())
    assert managed["files"] == [str(img)]
    # grow it: accepted, it is nvmeofctl's
    p = params(env)
    p["subsystems"][0]["namespaces"][0]["size"] = 2 << 20
    res, _ = run(monkeypatch, capsys, p)
    assert "failed" not in res and img.stat().st_size == 2 << 20


def test_existing_file_not_created_by_nvmeofctl_is_refused(env, monkeypatch, capsys):
    env["data"].mkdir()
    img = env["data"] / "pool1.img"
    img.write_bytes(b"someone else's data")
    before = snapshot(env["top"])
    for check in (True, False):
        res, _ = run(monkeypatch, capsys, params(env), check=check)
        assert res["failed"] is True
        assert res["msg"] == ("nvmet_target: subsystem %s namespace 1 (scratch): %s exists and was not created by "
                              "nvmeofctl; refusing to grow or export it (move it away, or pick another path)" % (SUBNQN, img))
    assert snapshot(env["top"]) == before and img.read_bytes() == b"someone else's data"


def test_symlink_at_the_backing_path_is_refused_even_when_recorded(env, monkeypatch, capsys, tmp_path):
    run(monkeypatch, capsys, params(env))
    img = env["data"] / "pool1.img"
    os.unlink(img)
    (tmp_path / "victim").write_bytes(b"v")
    img.symlink_to(tmp_path / "victim")
    res, _ = run(monkeypatch, capsys, params(env))
    assert res["failed"] is True and "%s is a symbolic link" % img in res["msg"]
    assert (tmp_path / "victim").read_bytes() == b"v"


def test_file_of_a_managed_subsystem_from_an_older_version_is_adopted(env, monkeypatch, capsys):
    # what an older nvmeofctl left: the namespace exported, nvmet-managed.json without "files"
    run(monkeypatch, capsys, params(env))
    old = {"version": 1, "hosts": [HOSTNQN], "subsystems": [SUBNQN], "ports": ["1"]}
    (env["state"] / "nvmet-managed.json").write_text(json.dumps(old))
    res, _ = run(monkeypatch, capsys, params(env))
    assert "failed" not in res, res.get("msg")
    assert res["managed"]["files"] == [str(env["data"] / "pool1.img")]  # recorded from now on
    # but the same file under a subsystem nvmeofctl does not manage is not adopted
    (env["state"] / "nvmet-managed.json").write_text(json.dumps(dict(old, subsystems=[])))
    res, _ = run(monkeypatch, capsys, params(env))
    assert res["failed"] is True and "was not created by nvmeofctl" in res["msg"]


def test_a_failed_run_does_not_disown_the_file_it_created(env, monkeypatch, capsys):
    # the namespace dir is a file: the apply fails after creating the backing file
    (env["root"] / "subsystems" / SUBNQN / "namespaces").mkdir(parents=True)
    (env["root"] / "subsystems" / SUBNQN / "namespaces" / "1").write_text("")
    res, _ = run(monkeypatch, capsys, params(env))
    assert res["failed"] is True and "namespace 1: create failed" in res["msg"]
    assert (env["data"] / "pool1.img").exists()
    os.unlink(env["root"] / "subsystems" / SUBNQN / "namespaces" / "1")
    res, _ = run(monkeypatch, capsys, params(env))
    assert "failed" not in res, res.get("msg")


def test_create_backing_file_bounds_and_cleans_up(tmp_path, monkeypatch):
    path = tmp_path / "a" / "b" / "x.img"
    with pytest.raises(nvmet.NvmetError, match="size must be"):
        nvmet.create_backing_file(str(path), 2 ** 100)
    assert not path.exists()
    real = os.ftruncate

    def enospc(fd, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nvmet.os, "ftruncate", enospc)
    with pytest.raises(OSError):
        nvmet.create_backing_file(str(path), 1 << 20)
    assert not path.exists()  # no empty file left behind to be exported later
    monkeypatch.setattr(nvmet.os, "ftruncate", real)
    nvmet.create_backing_file(str(path), 1 << 20)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700 and stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700
    with pytest.raises(FileExistsError):
        nvmet.create_backing_file(str(path), 1 << 20)  # O_EXCL: never reuses a path
    link = tmp_path / "link.img"
    link.symlink_to(tmp_path / "target.img")
    with pytest.raises(FileExistsError):
        nvmet.create_backing_file(str(link), 1 << 20)
    assert not (tmp_path / "target.img").exists()
    with pytest.raises(nvmet.NvmetError, match="symbolic link"):
        nvmet.grow_backing_file(str(link), 2 << 20)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(nvmet.NvmetError, match="not a regular file"):
        nvmet.grow_backing_file(str(tmp_path / "fifo"), 2 << 20)


def test_load_managed_reads_old_files_and_refuses_garbage(tmp_path):
    (tmp_path / "nvmet-managed.json").write_text(json.dumps({"version": 1, "hosts": ["h"], "subsystems": [], "ports": []}))
    assert nvmet.load_managed(str(tmp_path)) == {"hosts": ["h"], "subsystems": [], "ports": [], "files": []}
    (tmp_path / "nvmet-managed.json").write_text(json.dumps({"files": "/etc/shadow"}))
    with pytest.raises(nvmet.NvmetError, match="files is not a list"):
        nvmet.load_managed(str(tmp_path))


def test_managed_after_forgets_recorded_files_that_vanished():
    desired = {"hosts": {}, "subsystems": {}, "ports": {}}
    managed = {"hosts": [], "subsystems": [], "ports": [], "files": ["/var/lib/nvmeofctl/a.img", "/var/lib/nvmeofctl/b.img"]}
    observed = dict(nvmet.empty_tree(), files={"/var/lib/nvmeofctl/a.img": 4096, "/var/lib/nvmeofctl/b.img": None})
    assert nvmet.managed_after(desired, observed, [], managed)["files"] == ["/var/lib/nvmeofctl/a.img"]
    # the planner (no file probe) carries the list over
    assert nvmet.managed_after(desired, nvmet.empty_tree(), [], managed)["files"] == managed["files"]


# ------------------------------------------------------------------------------------------
# block devices: fake /proc and /sys, fake stat for the device nodes, fake blkid
# ------------------------------------------------------------------------------------------

# The lab target as FACTS.md describes it (virtio-blk, root=/dev/vda holding ext4 directly), plus
# disks in every state the checks know. name: (MAJ:MIN, parent device in /sys/devices, partitions,
# holders, slaves, dm name)
LAB = {
    "vda": ("254:0", "pci0000:00/0000:00:03.0/virtio1", {}, [], [], None),
    "vdb": ("254:16", "pci0000:00/0000:00:05.0/virtio3", {}, [], [], None),  # the shared disk, blank
    "vdc": ("254:32", "pci0000:00/0000:00:06.0/virtio4", {"vdc1": "254:33", "vdc2": "254:34"}, [], [], None),
    "vdd": ("254:48", "pci0000:00/0000:00:07.0/virtio5", {}, [], [], None),
    "vde": ("254:64", "pci0000:00/0000:00:08.0/virtio6", {}, ["dm-0"], [], None),
    "vdf": ("254:80", "pci0000:00/0000:00:09.0/virtio7", {}, [], [], None),
    "vdg": ("254:96", "pci0000:00/0000:00:0a.0/virtio8", {"vdg1": "254:97"}, [], [], None),
    "vdh": ("254:112", "pci0000:00/0000:00:0b.0/virtio9", {}, [], [], None),
    "vdi": ("254:128", "pci0000:00/0000:00:0c.0/virtio10", {}, [], [], None),
    "vdj": ("254:144", "pci0000:00/0000:00:0d.0/virtio11", {}, [], [], None),
    "dm-0": ("253:0", "virtual", {}, [], ["vde"], "vg1-data"),
    "md127": ("9:127", "virtual", {}, [], ["vdg1"], None),
}
PART_HOLDERS = {"vdg1": ["md127"]}
BLKID = {"vdf": (0, "blkid-p-ext4.txt"), "vdh": (0, "blkid-p-gpt.txt"), "vdi": (0, "blkid-p-lvm2.txt"),
         "vdj": (0, "blkid-p-swap.txt"), "vdb": (2, "blkid-p-blank.txt")}
# A production-like target: root on LVM (vg0-root on sda3), /boot on sda2, /boot/efi on sda1.
LVM_ROOT = {
    "sda": ("8:0", "pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0",
            {"sda1": "8:1", "sda2": "8:2", "sda3": "8:3"}, [], [], None),
    "sdb": ("8:16", "pci0000:00/0000:00:17.0/ata2/host1/target1:0:0/1:0:0:0", {}, [], [], None),
    "dm-0": ("253:0", "virtual", {}, [], ["sda3"], "vg0-root"),
    "dm-1": ("253:1", "virtual", {}, [], ["sda3"], "vg0-scratch"),
}


class Machine:
    """A fake host: sys/, proc/self/mountinfo, dev/ nodes (plain files; ``stat`` reports them as
    block devices), a root directory whose st_dev is the root filesystem's, and blkid results."""

    def __init__(self, top, devices, mountinfo, root_dev, part_holders=None, blkid=None):
        self.top = Path(top)
        self.sys = self.top / "sys"
        self.proc = self.top / "proc"
        self.dev = self.top / "dev"
        self.rootfs = self.top / "rootfs"
        self.rootfs.mkdir(parents=True)
        (self.proc / "self").mkdir(parents=True)
        (self.proc / "self" / "mountinfo").write_text((BLOCK / mountinfo).read_text())
        self.dev.mkdir()
        self.nodes = {}
        self.blkid_calls = []
        self.blkid = {}
        for name, (mm, parent, parts, holders, slaves, dm) in devices.items():
            d = self.sys / "devices" / parent / "block" / name
            self._node(d, name, mm, holders, slaves=slaves)
            if dm:
                (d / "dm").mkdir()
                (d / "dm" / "name").write_text(dm + "\n")
                (self.dev / "mapper").mkdir(exist_ok=True)
                (self.dev / "mapper" / dm).symlink_to("../" + name)
            for i, (pname, pmm) in enumerate(sorted(parts.items()), 1):
                pd = d / pname
                self._node(pd, pname, pmm, (part_holders or {}).get(pname, []))
                (pd / "partition").write_text("%d\n" % i)
        for name, (rc, fixture) in (blkid or {}).items():
            self.blkid[str(self.dev / name)] = (rc, (BLOCK / fixture).read_text(), "")
        self.root_dev = root_dev

    def _node(self, d, name, mm, holders, slaves=None):
        d.mkdir(parents=True)
        (d / "dev").write_text(mm + "\n")
        (d / "holders").mkdir()
        for h in holders:
            (d / "holders" / h).symlink_to(self.sys / "class" / "block" / h)
        if slaves is not None:
            (d / "slaves").mkdir()
            for s in slaves:
                (d / "slaves" / s).symlink_to(self.sys / "class" / "block" / s)
        for link in (self.sys / "dev" / "block" / mm, self.sys / "class" / "block" / name):
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(d, link.parent))
        (self.dev / name).write_text("")
        major, minor = (int(x) for x in mm.split(":"))
        self.nodes[str(self.dev / name)] = SimpleNamespace(st_mode=stat.S_IFBLK | 0o660, st_rdev=os.makedev(major, minor))

    def stat(self, path):
        if path == str(self.rootfs):
            major, minor = (int(x) for x in self.root_dev.split(":"))
            return SimpleNamespace(st_mode=stat.S_IFDIR | 0o755, st_dev=os.makedev(major, minor))
        return self.nodes.get(path) or os.stat(path)

    def run(self, argv):
        self.blkid_calls.append(list(argv))
        return self.blkid.get(argv[-1], (2, "", ""))

    def probe(self, blkid="/usr/sbin/blkid", run=None):
        return backing.BlockProbe(run=run or self.run, blkid=blkid, proc_root=str(self.proc), sys_root=str(self.sys),
                                  root=str(self.rootfs), stat=self.stat)


@pytest.fixture
def lab(tmp_path):
    return Machine(tmp_path / "lab", LAB, "mountinfo-lab-target-busy.txt", "254:0", PART_HOLDERS, BLKID)


@pytest.fixture
def lvm(tmp_path):
    return Machine(tmp_path / "lvm", LVM_ROOT, "mountinfo-lvm-root.txt", "253:0")


def test_parsers_of_the_documented_formats():
    mounts = backing.parse_mountinfo((BLOCK / "mountinfo-lab-target-busy.txt").read_text())
    assert ("254:0", "/") in mounts and ("254:48", "/mnt/with space") in mounts and ("254:48", "/srv/data") in mounts
    assert backing.parse_blkid_export((BLOCK / "blkid-p-lvm2.txt").read_text())["VERSION"] == "LVM2 001"
    assert backing.parse_blkid_export((BLOCK / "blkid-p-ext4.txt").read_text())["TYPE"] == "ext4"
    assert backing.parse_blkid_export((BLOCK / "blkid-p-gpt.txt").read_text()) == {
        "DEVNAME": "/tmp/cap-gpt.img", "PTUUID": "5f3c8a52-2a9f-4e8e-9d0b-0a6e3f2c5b11", "PTTYPE": "gpt"}
    assert backing.parse_blkid_export("") == {}


@pytest.mark.parametrize("name,reason", [
    ("vda", "holds the root filesystem"),
    ("vdc", "has partition /dev/vdc1 mounted at /mnt/scratch"),
    ("vdc1", "is mounted at /mnt/scratch"),
    ("vdd", "is mounted at /mnt/with space"),
    ("vde", "is in use by dm-0 (vg1-data) (holders in sysfs: LVM, md RAID or device-mapper on top)"),
    ("vdg", "has partition /dev/vdg1 in use by md127"),
    ("vdg1", "is in use by md127"),
    ("vdf", "holds an ext4 filesystem (set backing.signature: ext4 in the spec to export it anyway)"),
    ("vdh", "holds a gpt partition table (set backing.signature: gpt in the spec to export it anyway)"),
    ("vdi", "holds an LVM2_member signature (raid) (set backing.signature: LVM2_member in the spec"),
    ("vdj", "holds a swap signature (other) (set backing.signature: swap in the spec"),
])
def test_devices_in_use_are_refused(lab, name, reason):
    dev = str(lab.dev / name)
    why = lab.probe().problem(dev)
    assert why is not None and why.startswith(dev + " " + reason), why


def test_free_devices_and_matching_signatures_are_accepted(lab):
    probe = lab.probe()
    assert probe.problem(str(lab.dev / "vdb")) is None
    assert lab.blkid_calls == [["/usr/sbin/blkid", "-p", "-o", "export", str(lab.dev / "vdb")]]  # argv, no shell
    assert probe.problem(str(lab.dev / "vdc2")) is None  # its sibling is mounted, it is not
    assert probe.problem(str(lab.dev / "vdf"), signature="ext4") is None
    assert probe.problem(str(lab.dev / "vdh"), signature="gpt") is None
    assert "holds an ext4 filesystem" in probe.problem(str(lab.dev / "vdf"), signature="xfs")


def test_a_by_id_link_is_resolved_and_named_both_ways(lab):
    by_id = lab.dev / "disk" / "by-id"
    by_id.mkdir(parents=True)
    (by_id / "virtio-SHARED0").symlink_to("../../vdb")
    (by_id / "virtio-SCRATCH").symlink_to("../../vdc1")
    probe = lab.probe()
    assert probe.problem(str(by_id / "virtio-SHARED0")) is None
    assert probe.problem(str(by_id / "virtio-SCRATCH")) == "%s (%s) is mounted at /mnt/scratch" % (
        by_id / "virtio-SCRATCH", lab.dev / "vdc1")


def test_a_partition_of_a_mounted_disk_is_refused(tmp_path):
    m = Machine(tmp_path / "m", LAB, "mountinfo-lab-target.txt", "254:0", PART_HOLDERS, BLKID)
    (m.proc / "self" / "mountinfo").write_text(
        (BLOCK / "mountinfo-lab-target.txt").read_text() + "70 26 254:32 / /mnt/whole rw,relatime shared:40 - ext4 /dev/vdc rw\n")
    assert m.probe().problem(str(m.dev / "vdc2")) == "%s is a partition of /dev/vdc, which is mounted at /mnt/whole" % (m.dev / "vdc2")


def test_root_on_lvm_its_disk_and_partitions_are_refused_other_volumes_accepted(lvm):
    probe = lvm.probe()
    assert probe.problem(str(lvm.dev / "mapper" / "vg0-root")) == "%s (%s) holds the root filesystem" % (
        lvm.dev / "mapper" / "vg0-root", lvm.dev / "dm-0")
    assert probe.problem(str(lvm.dev / "sda")) == "%s is the root disk (the root filesystem lives on it)" % (lvm.dev / "sda")
    for part in ("sda1", "sda3"):
        assert probe.problem(str(lvm.dev / part)) == "%s is part of the root disk /dev/sda" % (lvm.dev / part)
    assert probe.problem(str(lvm.dev / "sdb")) is None
    assert probe.problem(str(lvm.dev / "mapper" / "vg0-scratch")) is None


def test_what_cannot_be_checked_is_refused(lab, tmp_path):
    probe = lab.probe()
    assert probe.problem("/etc/passwd") == "/etc/passwd is not a block device (a device backing must be one; " \
                                           "use a file backing for an image file nvmeofctl creates)"
    assert probe.problem(str(tmp_path / "nope")) == "%s does not exist" % (tmp_path / "nope")
    assert "blkid (util-linux) not found" in lab.probe(blkid=None).problem(str(lab.dev / "vdb"))
    amb = lab.probe(run=lambda argv: (8, "", "%s: ambivalent result (probably more filesystems on the device, use "
                                            "wipefs(8) to see more details)" % argv[-1]))
    assert "several conflicting signatures" in amb.problem(str(lab.dev / "vdb"))
    broken = lab.probe(run=lambda argv: (4, "", "blkid: error: %s: Permission denied\n" % argv[-1]))
    assert "cannot be probed (blkid -p exited 4: blkid: error:" in broken.problem(str(lab.dev / "vdb"))
    os.unlink(lab.sys / "dev" / "block" / "254:16")
    assert "is not in %s/dev/block" % lab.sys in probe.problem(str(lab.dev / "vdb"))


def test_this_machines_root_device_is_refused_with_the_real_proc_and_sys():
    """The real thing where it can be seen: the block device holding / on the machine running the
    tests (skipped in containers whose root is not a block device in sysfs)."""
    st = os.stat("/")
    mm = "%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev))
    sysdir = Path("/sys/dev/block") / mm
    if not sysdir.exists():
        pytest.skip("/ is not on a block device listed in /sys/dev/block (%s)" % mm)
    node = Path("/dev") / sysdir.resolve().name.replace("!", "/")
    if not node.exists() or not stat.S_ISBLK(node.stat().st_mode):
        pytest.skip("no device node %s" % node)
    calls = []
    why = backing.BlockProbe(run=lambda argv: calls.append(argv) or (2, "", "")).problem(str(node))
    assert why == "%s holds the root filesystem" % node
    assert calls == []  # refused before any probe command


def test_only_new_or_moved_device_namespaces_are_checked():
    desired = nvmet.normalize({"subsystems": [{"nqn": SUBNQN, "namespaces": [
        {"nsid": 1, "device_path": "/dev/nvme1n1"}, {"nsid": 2, "device_path": "/dev/nvme2n1"},
        {"nsid": 3, "device_path": "/dev/nvme3n1"},
        {"nsid": 4, "device_path": "/var/lib/nvmeofctl/x.img", "create_file": True, "size": 1 << 20}]}]})
    observed = nvmet.empty_tree()
    observed["subsystems"][SUBNQN] = dict(nvmet._subsys_record(), namespaces={
        "1": dict(nvmet._ns_record(), device_path="/dev/nvme1n1", enable=True),
        "2": dict(nvmet._ns_record(), device_path="/dev/nvme9n1", enable=True)})
    assert [(n, i) for n, i, _ in backing.namespaces_to_check(desired, observed)] == [(SUBNQN, "2"), (SUBNQN, "3")]


# ------------------------------------------------------------------------------------------
# the module with the fake machine behind its block_probe seam
# ------------------------------------------------------------------------------------------


def test_module_checks_a_device_when_it_is_first_exported_and_never_again(env, monkeypatch, capsys, tmp_path):
    m = Machine(tmp_path / "host", LAB, "mountinfo-lab-target.txt", "254:0", PART_HOLDERS, BLKID)
    monkeypatch.setattr(module, "block_probe", lambda mod: m.probe())
    p = params(env, backing_prefixes=[str(m.dev) + "/"])
    p["subsystems"][0]["namespaces"] = [{"nsid": 1, "name": "shared", "device_path": str(m.dev / "vdb")}]
    res, _ = run(monkeypatch, capsys, p)
    assert "failed" not in res, res.get("msg")
    assert (env["root"] / "subsystems" / SUBNQN / "namespaces" / "1" / "device_path").read_text() == str(m.dev / "vdb")
    assert len(m.blkid_calls) == 1
    # the GPU nodes put a filesystem on it through the fabric: the unchanged namespace is not re-checked
    m.blkid[str(m.dev / "vdb")] = (0, (BLOCK / "blkid-p-ext4.txt").read_text(), "")
    res, _ = run(monkeypatch, capsys, p)
    assert "failed" not in res and res["changed"] is False and len(m.blkid_calls) == 1
    # moving the namespace to a disk holding someone's ext4: refused before any change
    p["subsystems"][0]["namespaces"][0]["device_path"] = str(m.dev / "vdf")
    before = snapshot(env["top"])
    res, _ = run(monkeypatch, capsys, p)
    assert res["failed"] is True
    assert res["msg"] == ("nvmet_target: subsystem %s namespace 1 (shared): %s holds an ext4 filesystem "
                          "(set backing.signature: ext4 in the spec to export it anyway); not exported" % (SUBNQN, m.dev / "vdf"))
    assert snapshot(env["top"]) == before
    # named in the spec: exported
    p["subsystems"][0]["namespaces"][0]["signature"] = "ext4"
    p["allow_disruptive"] = True  # a namespace device change
    res, _ = run(monkeypatch, capsys, p)
    assert "failed" not in res, res.get("msg")
    assert (env["root"] / "subsystems" / SUBNQN / "namespaces" / "1" / "device_path").read_text() == str(m.dev / "vdf")


@pytest.mark.parametrize("name,reason", [("vda", "holds the root filesystem"), ("vde", "is in use by dm-0"),
                                         ("vdh", "holds a gpt partition table")])
def test_module_refuses_devices_in_use_in_check_mode_too(env, monkeypatch, capsys, lab, name, reason):
    monkeypatch.setattr(module, "block_probe", lambda mod: lab.probe())
    p = params(env, backing_prefixes=[str(lab.dev) + "/"])
    p["subsystems"][0]["namespaces"] = [{"nsid": 7, "name": "data", "device_path": str(lab.dev / name)}]
    for check in (True, False):
        res, _ = run(monkeypatch, capsys, p, check=check)
        assert res["failed"] is True
        assert res["msg"].startswith("nvmet_target: subsystem %s namespace 7 (data): %s %s" % (SUBNQN, lab.dev / name, reason))
    assert os.listdir(env["root"]) == [] and not env["state"].exists()


def test_configfs_has_the_kernels_semantics_whatever_the_root(tree, tmp_path):
    """No mode switched by the root's path: a write goes to an existing attribute only (on
    configfs the kernel made it at mkdir), so a plain tree gets no files it did not have."""
    root, _ = tree
    fs = nvmet.ConfigFS(str(root))
    fs.mkdir("subsystems", SUBNQN)
    with pytest.raises(FileNotFoundError):
        fs.write("nvmeofctl", "subsystems", SUBNQN, "attr_model")
    assert not (root / "subsystems" / SUBNQN / "attr_model").exists()
    (root / "subsystems" / SUBNQN / "attr_model").write_text("Linux\n")
    fs.write("nvmeofctl", "subsystems", SUBNQN, "attr_model")
    assert fs.read("subsystems", SUBNQN, "attr_model").startswith("nvmeofctl")
