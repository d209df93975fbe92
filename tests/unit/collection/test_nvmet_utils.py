"""module_utils/nvmet.py: parsers against the real lab captures, diff/apply against fake
configfs trees that enforce the kernel's rules (tests/fixtures/collection/target/faketarget.py)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fixtures" / "collection" / "target"))
import faketarget  # noqa: E402
from faketarget import CTRL_KEY, HOSTNQN, HOSTNQN2, KEY, SUBNQN  # noqa: E402

nvmet = faketarget.load_util("nvmet")
StrictFS = faketarget.make_strict_fs(nvmet)
PlainFS = faketarget.make_plain_fs(nvmet)  # configfs over a plain tree: the kernel's part emulated
SHA = lambda s: hashlib.sha256(s.encode()).hexdigest()  # noqa: E731


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def spec(tmp_path, **over):
    """A module-options-shaped spec like the lead builds: one host with a key, one subsystem
    with one file-backed namespace, an RDMA and a TCP port."""
    s = {
        "hosts": [{"nqn": HOSTNQN, "dhchap_key": KEY}],
        "subsystems": [{
            "nqn": SUBNQN, "serial": "0123456789abcdef", "model": "nvmeofctl",
            "allowed_hosts": [HOSTNQN],
            "namespaces": [{"nsid": 1, "device_path": str(tmp_path / "data" / "ns1.img"), "size": 1 << 20,
                            "create_file": True, "uuid": "fbd61f08-fde1-48e3-b431-57fda06e7aa9",
                            "nguid": "fbd61f08fde148e3b43157fda06e7aa9"}],
        }],
        "ports": [
            {"id": 1, "trtype": "rdma", "adrfam": "ipv4", "traddr": "192.168.100.1", "trsvcid": 4420, "subsystems": [SUBNQN]},
            {"id": 2, "trtype": "tcp", "adrfam": "ipv4", "traddr": "192.168.100.1", "trsvcid": 4420, "subsystems": [SUBNQN]},
        ],
    }
    s.update(over)
    return s


def observe(root, desired):
    obs = nvmet.read_tree(str(root))
    obs["files"] = nvmet.probe_files(desired)
    return obs


def converge(root, opts, managed=None, fs=None, **kw):
    desired = nvmet.normalize(opts)
    obs = observe(root, desired)
    changes = nvmet.diff(desired, obs, managed)
    nvmet.apply(str(root), desired, changes, fs=fs or PlainFS(str(root)), **kw)
    return desired, obs, changes


def objs(changes):
    return [(c["object"], c["action"]) for c in changes]


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "nvmet"
    r.mkdir()
    return r


# ------------------------------------------------------------------------------------------
# parsing real captures; read_tree and parse_dump agree
# ------------------------------------------------------------------------------------------


def test_parse_dump_of_the_real_k612_capture():
    t = nvmet.parse_dump(faketarget.fixture("k612-nvmet-configfs-attrs.txt"))
    h = t["hosts"][HOSTNQN]
    assert h == {"dhchap_key_set": True, "dhchap_key_hash": SHA(KEY), "dhchap_ctrl_key_set": True,
                 "dhchap_ctrl_key_hash": SHA(CTRL_KEY), "dhchap_hash": "hmac(sha256)", "dhchap_dhgroup": "ffdhe2048"}
    s = t["subsystems"][SUBNQN]
    assert s["allow_any_host"] is False
    assert s["serial"] == "0123456789abcdef"  # kernel pads to 20 with spaces
    assert s["model"] == "Linux"
    assert list(s["namespaces"]) == ["1", "2"]
    assert s["namespaces"]["1"] == {"device_path": "/dev/loop0", "device_uuid": "fbd61f08-fde1-48e3-b431-57fda06e7aa9",
                                    "device_nguid": "00000000-0000-0000-0000-000000000000", "enable": True,
                                    "buffered_io": False, "ana_grpid": 1}
    assert (s["cntlid_min"], s["cntlid_max"]) == (1, 65519)  # the kernel's defaults, as captured
    assert s["namespaces"]["2"]["device_path"] == "/dev/nullb0"
    assert t["ports"]["1"] == {"trtype": "rdma", "adrfam": "ipv4", "traddr": "192.168.100.1", "trsvcid": "4420", "subsystems": [],
                               "ana_groups": {"1": "optimized"}}
    assert t["ports"]["2"]["trtype"] == "tcp"
    # the capture printed keys in clear: parse_dump keeps only digests
    assert KEY not in json.dumps(t) and CTRL_KEY not in json.dumps(t)


def test_parse_dump_of_the_61_capture_without_dhchap():
    t = nvmet.parse_dump(faketarget.fixture("nvmet-configfs-attrs.txt"))
    assert t["hosts"] == {}  # 6.1: a host dir has no attribute files, the old capture misses it
    assert t["subsystems"][SUBNQN]["namespaces"]["1"]["device_path"] == "/dev/loop0"
    assert set(t["ports"]) == {"1", "2"}


def test_dump_command_output_parses_to_read_tree_of_the_same_tree(tmp_path):
    root = faketarget.build_tree_from_capture(tmp_path / "nvmet")
    out = subprocess.run(["sh", "-c", nvmet.dump_command(str(root))], capture_output=True, text=True, check=True).stdout
    assert KEY not in out and CTRL_KEY not in out  # hashed on the host side
    assert "dhchap_key=sha256:%s" % SHA(KEY) in out
    assert " -> " in out  # symlinks printed
    dumped = nvmet.parse_dump(out)
    read = nvmet.read_tree(str(root))
    assert dumped == read
    assert read["subsystems"][SUBNQN]["allowed_hosts"] == [HOSTNQN]
    assert read["ports"]["1"]["subsystems"] == [SUBNQN] and read["ports"]["2"]["subsystems"] == [SUBNQN]
    # and the original capture (files only) is the same state minus the symlinks
    capture = nvmet.parse_dump(faketarget.fixture("k612-nvmet-configfs-attrs.txt"))
    read["subsystems"][SUBNQN]["allowed_hosts"] = []
    for p in read["ports"].values():
        p["subsystems"] = []
    assert capture == read


def test_dump_command_default_root_and_read_only():
    assert nvmet.DUMP_COMMAND.startswith("cd /sys/kernel/config/nvmet ")
    # read-only: the only redirections are to /dev/null
    cmd = nvmet.DUMP_COMMAND
    assert "mkdir" not in cmd and "rm " not in cmd and "ln " not in cmd
    assert cmd.count(">") == cmd.count("2>/dev/null") + cmd.count("-> ")


def test_dump_command_on_missing_root_prints_nothing(tmp_path):
    out = subprocess.run(["sh", "-c", nvmet.dump_command(str(tmp_path / "absent"))], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == ""
    assert nvmet.parse_dump(out.stdout) == nvmet.empty_tree()


# ------------------------------------------------------------------------------------------
# create, no-op, incremental changes
# ------------------------------------------------------------------------------------------


def test_create_from_scratch_then_second_apply_is_a_noop(root, tmp_path):
    fs = StrictFS(root)
    desired, obs, changes = converge(root, spec(tmp_path), fs=fs)
    assert objs(changes) == [
        ("host %s" % HOSTNQN, "create"),
        ("subsystem %s" % SUBNQN, "create"),
        ("file %s" % (tmp_path / "data" / "ns1.img"), "create"),
        ("subsystem %s / namespace 1" % SUBNQN, "create"),
        ("subsystem %s / allowed host %s" % (SUBNQN, HOSTNQN), "create"),
        ("port 1", "create"),
        ("port 2", "create"),
        ("port 1 / subsystem %s" % SUBNQN, "create"),
        ("port 2 / subsystem %s" % SUBNQN, "create"),
    ]
    assert not any(c["disruptive"] for c in changes)
    after = observe(root, desired)
    assert nvmet.diff(desired, after, nvmet.managed_after(desired, obs, changes)) == []
    # the check-mode prediction of the end state is what the tree really holds
    assert nvmet.render(nvmet.simulate(obs, desired, changes)) == nvmet.render(after)
    # kernel facts honoured on creation
    assert (root / "subsystems" / SUBNQN / "attr_allow_any_host").read_text() == "0"
    assert os.readlink(root / "subsystems" / SUBNQN / "allowed_hosts" / HOSTNQN) == str(root / "hosts" / HOSTNQN)
    assert os.readlink(root / "ports" / "1" / "subsystems" / SUBNQN) == str(root / "subsystems" / SUBNQN)
    assert (root / "hosts" / HOSTNQN / "dhchap_hash").read_text() == "hmac(sha256)"
    assert (root / "hosts" / HOSTNQN / "dhchap_dhgroup").read_text() == "ffdhe2048"
    ns = root / "subsystems" / SUBNQN / "namespaces" / "1"
    assert (ns / "device_nguid").read_text() == "fbd61f08-fde1-48e3-b431-57fda06e7aa9"
    writes = [o[1].rsplit("/", 1)[1] for o in fs.ops if o[0] == "write" and o[1].startswith("subsystems/%s/namespaces" % SUBNQN)]
    assert writes[-1] == "enable"  # device attributes first, then enable
    img = tmp_path / "data" / "ns1.img"
    assert img.stat().st_size == 1 << 20 and img.stat().st_blocks == 0  # sparse


def test_adding_a_namespace_changes_only_that(root, tmp_path):
    converge(root, spec(tmp_path))
    before = nvmet.read_tree(str(root))
    s = spec(tmp_path)
    dev2 = tmp_path / "dev2.img"
    dev2.write_bytes(b"\0" * 4096)
    s["subsystems"][0]["namespaces"].append({"nsid": 2, "device_path": str(dev2), "uuid": "4013df99-864f-4fb8-85d8-865cdecb784a"})
    fs = StrictFS(root)
    _, _, changes = converge(root, s, fs=fs)
    assert objs(changes) == [("subsystem %s / namespace 2" % SUBNQN, "create")]
    assert all("/namespaces/2" in o[1] for o in fs.ops)
    after = nvmet.read_tree(str(root))
    assert after["subsystems"][SUBNQN]["namespaces"]["1"] == before["subsystems"][SUBNQN]["namespaces"]["1"]
    assert after["ports"] == before["ports"] and after["hosts"] == before["hosts"]


def test_port_address_change_is_disruptive_and_done_as_unlink_write_relink(root, tmp_path):
    converge(root, spec(tmp_path))
    s = spec(tmp_path)
    s["ports"][0]["traddr"] = "192.168.100.5"
    fs = StrictFS(root)
    desired, _, changes = converge(root, s, fs=fs)
    assert objs(changes) == [("port 1", "update")]
    c = changes[0]
    assert c["disruptive"] is True and "traddr: 192.168.100.1 -> 192.168.100.5" in c["detail"]
    link = "ports/1/subsystems/%s" % SUBNQN
    assert fs.ops == [("unlink", link), ("write", "ports/1/addr_traddr", "192.168.100.5"), ("symlink", link)]
    assert nvmet.diff(desired, observe(root, desired), None) == []


def test_port_change_without_links_is_not_disruptive(root, tmp_path):
    s = spec(tmp_path)
    s["ports"][0]["subsystems"] = []
    converge(root, s)
    s["ports"][0]["trsvcid"] = 4421
    desired = nvmet.normalize(s)
    changes = nvmet.diff(desired, observe(root, desired))
    assert objs(changes) == [("port 1", "update")] and changes[0]["disruptive"] is False


def test_namespace_device_change_disables_writes_and_reenables(root, tmp_path):
    converge(root, spec(tmp_path))
    s = spec(tmp_path)
    other = tmp_path / "other.img"
    other.write_bytes(b"\0" * 4096)
    ns = s["subsystems"][0]["namespaces"][0]
    ns.update(device_path=str(other), create_file=False, size=None)
    fs = StrictFS(root)
    _, _, changes = converge(root, s, fs=fs)
    assert objs(changes) == [("subsystem %s / namespace 1" % SUBNQN, "update")]
    assert changes[0]["disruptive"] is True
    base = "subsystems/%s/namespaces/1/" % SUBNQN
    assert fs.ops == [("write", base + "enable", "0"), ("write", base + "device_path", str(other)),
                      ("write", base + "enable", "1")]


def test_secrets_never_in_changes_diff_or_errors(root, tmp_path):
    converge(root, spec(tmp_path))
    new_key = "DHHC-1:01:wHLfu85jAAceYurQ8XBouvKUnFiX6D+Dn+kEXRxmB69TA2nk:"
    s = spec(tmp_path, hosts=[{"nqn": HOSTNQN, "dhchap_key": new_key, "dhchap_ctrl_key": KEY}])
    desired = nvmet.normalize(s)
    obs = observe(root, desired)
    changes = nvmet.diff(desired, obs)
    assert objs(changes) == [("host %s" % HOSTNQN, "update")]
    assert changes[0]["disruptive"] is True
    text = json.dumps(changes) + nvmet.render(obs) + nvmet.render(nvmet.simulate(obs, desired, changes), nvmet.changed_secrets(changes))
    text += json.dumps(obs) + json.dumps(nvmet.sanitize(desired))
    for secret in (KEY, new_key, KEY[10:30], new_key[10:30]):
        assert secret not in text
    assert "<changed>" in text
    fs = StrictFS(root)
    nvmet.apply(str(root), desired, changes, fs=fs)
    assert KEY not in json.dumps(fs.ops) and new_key not in json.dumps(fs.ops)
    assert (root / "hosts" / HOSTNQN / "dhchap_key").read_text() == new_key
    assert (root / "hosts" / HOSTNQN / "dhchap_ctrl_key").read_text() == KEY
    # validation errors name the field, never the value
    with pytest.raises(ValueError) as e:
        nvmet.normalize(spec(tmp_path, hosts=[{"nqn": HOSTNQN, "dhchap_key": "hunter2-not-a-key"}]))
    assert "hunter2" not in str(e.value) and "hosts[0].dhchap_key" in str(e.value)


def test_removing_a_key_recreates_the_host_and_relinks(root, tmp_path):
    converge(root, spec(tmp_path))
    s = spec(tmp_path, hosts=[{"nqn": HOSTNQN}])
    fs = StrictFS(root)
    desired, _, changes = converge(root, s, fs=fs)
    assert objs(changes) == [("host %s" % HOSTNQN, "update")] and changes[0]["disruptive"]
    assert [o[0] for o in fs.ops] == ["unlink", "rmdir", "mkdir", "symlink"]
    assert nvmet.read_tree(str(root))["hosts"][HOSTNQN]["dhchap_key_set"] is False
    assert nvmet.diff(desired, observe(root, desired)) == []


def test_check_mode_prediction_equals_the_changes_applied(root, tmp_path):
    converge(root, spec(tmp_path))
    s = spec(tmp_path)
    s["ports"][1]["traddr"] = "192.168.100.9"
    s["subsystems"][0]["namespaces"][0]["size"] = 2 << 20  # grow the backing file
    desired = nvmet.normalize(s)
    predicted = nvmet.diff(desired, observe(root, desired))
    snapshot = json.dumps(nvmet.read_tree(str(root)), sort_keys=True)
    assert json.dumps(nvmet.read_tree(str(root)), sort_keys=True) == snapshot  # diff wrote nothing
    done, failed = nvmet.apply(str(root), desired, nvmet.diff(desired, observe(root, desired)), fs=PlainFS(str(root)))
    assert failed == [] and done == predicted
    assert objs(predicted) == [("file %s" % (tmp_path / "data" / "ns1.img"), "update"), ("port 2", "update")]
    assert (tmp_path / "data" / "ns1.img").stat().st_size == 2 << 20


# ------------------------------------------------------------------------------------------
# managed vs foreign, deletions
# ------------------------------------------------------------------------------------------


def test_only_managed_objects_are_deleted_foreign_ones_are_left_alone(root, tmp_path):
    # the lab target as captured: someone built it by hand (foreign), then nvmeofctl took over
    faketarget.build_tree_from_capture(root)
    mine = "nqn.2024-01.io.lab:ckpt"
    s = spec(tmp_path, hosts=[{"nqn": HOSTNQN2}])
    s["subsystems"] = [{"nqn": mine, "allowed_hosts": [HOSTNQN2], "namespaces": []}]
    s["ports"] = [{"id": 3, "trtype": "tcp", "traddr": "192.168.100.1", "trsvcid": 4421, "subsystems": [mine]}]
    desired = nvmet.normalize(s)
    changes = nvmet.diff(desired, observe(root, desired), managed=None)
    assert all(c["action"] == "create" for c in changes)  # nothing foreign deleted
    assert set(nvmet.foreign_objects(observe(root, desired), desired)) == {
        "host %s" % HOSTNQN, "subsystem %s" % SUBNQN, "port 1", "port 2"}
    nvmet.apply(str(root), desired, changes, fs=PlainFS(str(root)))

    # now gpu-pool-1, port 1 and HOSTNQN are recorded as managed but no longer in the spec;
    # port 2 stays foreign
    managed = {"hosts": [HOSTNQN, HOSTNQN2], "subsystems": [SUBNQN, mine], "ports": ["1", "3"]}
    fs = StrictFS(root)
    obs = observe(root, desired)
    changes = nvmet.diff(desired, obs, managed)
    assert objs(changes) == [("port 1", "delete"), ("subsystem %s" % SUBNQN, "delete"), ("host %s" % HOSTNQN, "delete")]
    # removing exports is disruptive; a host entry no subsystem allows any more is not
    assert [c["disruptive"] for c in changes] == [True, True, False]
    nvmet.apply(str(root), desired, changes, fs=fs)
    t = nvmet.read_tree(str(root))
    assert set(t["subsystems"]) == {mine} and set(t["ports"]) == {"2", "3"} and set(t["hosts"]) == {HOSTNQN2}
    assert t["ports"]["2"]["subsystems"] == []  # the subsystem delete unlinked it from foreign port 2 too
    # order inside the subsystem delete: port links, allowed hosts, namespaces, then rmdir
    sub_ops = [o for o in fs.ops if SUBNQN in o[1]]
    assert sub_ops[-1] == ("rmdir", "subsystems/%s" % SUBNQN)
    assert nvmet.managed_after(desired, obs, changes, managed) == {"hosts": [HOSTNQN2], "subsystems": [mine], "ports": ["3"],
                                                                 "files": []}


def test_foreign_subsystem_linked_on_a_managed_port_keeps_its_link(root, tmp_path):
    converge(root, spec(tmp_path))
    foreign = "nqn.2024-01.io.other:scratch"
    (root / "subsystems" / foreign / "namespaces").mkdir(parents=True)
    os.symlink(root / "subsystems" / foreign, root / "ports" / "1" / "subsystems" / foreign)
    desired = nvmet.normalize(spec(tmp_path))
    managed = {"hosts": [HOSTNQN], "subsystems": [SUBNQN], "ports": ["1", "2"]}
    assert nvmet.diff(desired, observe(root, desired), managed) == []
    # a port address change must unlink it too (kernel rule) but relinks it afterwards
    s = spec(tmp_path)
    s["ports"][0]["traddr"] = "192.168.100.7"
    fs = StrictFS(root)
    converge(root, s, managed=managed, fs=fs)
    assert sorted(os.listdir(root / "ports" / "1" / "subsystems")) == sorted([SUBNQN, foreign])


def test_extra_namespace_allowed_host_and_link_in_managed_objects_are_removed(root, tmp_path):
    s = spec(tmp_path, hosts=[{"nqn": HOSTNQN, "dhchap_key": KEY}, {"nqn": HOSTNQN2}])
    s["subsystems"][0]["allowed_hosts"] = [HOSTNQN, HOSTNQN2]
    dev2 = tmp_path / "dev2.img"
    dev2.write_bytes(b"\0" * 4096)
    s["subsystems"][0]["namespaces"].append({"nsid": 2, "device_path": str(dev2)})
    converge(root, s)
    s2 = spec(tmp_path, hosts=[{"nqn": HOSTNQN, "dhchap_key": KEY}, {"nqn": HOSTNQN2}])
    s2["ports"][1]["subsystems"] = []
    fs = StrictFS(root)
    _, _, changes = converge(root, s2, managed={"hosts": [HOSTNQN, HOSTNQN2], "subsystems": [SUBNQN], "ports": ["1", "2"]}, fs=fs)
    assert objs(changes) == [
        ("port 2 / subsystem %s" % SUBNQN, "delete"),
        ("subsystem %s / allowed host %s" % (SUBNQN, HOSTNQN2), "delete"),
        ("subsystem %s / namespace 2" % SUBNQN, "delete"),
    ]
    assert all(c["disruptive"] for c in changes)
    assert "its data is kept" in changes[2]["detail"]
    assert dev2.exists()


# ------------------------------------------------------------------------------------------
# kernel rules, retries, files
# ------------------------------------------------------------------------------------------


def test_port_link_is_retried_while_the_fabric_address_is_missing(root, tmp_path, monkeypatch):
    monkeypatch.setattr(nvmet.time, "sleep", lambda s: None)
    fs = StrictFS(root, addr_missing_tries=2)
    converge(root, spec(tmp_path), fs=fs, link_timeout=60)
    assert [o[0] for o in fs.ops].count("symlink-failed") == 2
    assert len(os.listdir(root / "ports" / "1" / "subsystems")) == 1
    # without time to wait, the error is clear and names the object
    root2 = tmp_path / "nvmet2"
    root2.mkdir()
    with pytest.raises(nvmet.NvmetError) as e:
        converge(root2, spec(tmp_path), fs=StrictFS(root2, addr_missing_tries=1), link_timeout=0)
    assert "port 1 / subsystem %s: create failed" % SUBNQN in str(e.value)
    assert "EADDRNOTAVAIL" in str(e.value) and "fabric address" in str(e.value)
    assert [c["kind"] for c in e.value.done][-1] == "port"


def test_serial_change_after_discovery_fails_with_a_hint(root, tmp_path):
    converge(root, spec(tmp_path))
    s = spec(tmp_path)
    s["subsystems"][0]["serial"] = "feedface"
    with pytest.raises(nvmet.NvmetError) as e:
        converge(root, s, fs=StrictFS(root, discovered=[SUBNQN]))
    assert "serial/model" in str(e.value) and "re-create" in str(e.value)


def test_existing_backing_file_is_never_overwritten_or_shrunk(root, tmp_path):
    img = tmp_path / "data" / "ns1.img"
    img.parent.mkdir()
    img.write_bytes(b"precious" + b"\0" * ((4 << 20) - 8))
    desired, _, changes = converge(root, spec(tmp_path))  # spec says 1 MiB
    assert not [c for c in changes if c["kind"] == "file"]
    assert img.read_bytes()[:8] == b"precious" and img.stat().st_size == 4 << 20


def test_restore_program_rebuilds_an_empty_tree_but_never_creates_missing_files(root, tmp_path, capsys):
    desired, _, _ = converge(root, spec(tmp_path))
    cfg = tmp_path / "state" / "nvmet.json"
    faketarget.load_util("fileio").write_file(str(cfg), nvmet.config_text(desired), 0o600)
    assert oct(cfg.stat().st_mode & 0o777) == "0o600"
    boot = tmp_path / "boot-nvmet"
    boot.mkdir()
    rc = nvmet.main(["--config", str(cfg), "--configfs-root", str(boot), "--no-modprobe", "--link-timeout", "0"], make_fs=PlainFS)
    assert rc == 0
    assert nvmet.render(nvmet.read_tree(str(boot))) == nvmet.render(nvmet.read_tree(str(root)))
    out = capsys.readouterr().out
    assert KEY not in out
    # backing file gone (unmounted disk?): not re-created empty, other objects still restored
    os.unlink(tmp_path / "data" / "ns1.img")
    boot2 = tmp_path / "boot2"
    boot2.mkdir()
    rc = nvmet.main(["--config", str(cfg), "--configfs-root", str(boot2), "--no-modprobe", "--link-timeout", "0"], make_fs=PlainFS)
    assert rc == 1
    assert not (tmp_path / "data" / "ns1.img").exists()
    assert set(nvmet.read_tree(str(boot2))["ports"]) == {"1", "2"}
    assert "not re-created at boot" in capsys.readouterr().out


def test_normalize_rejects_inconsistent_specs(tmp_path):
    bad = spec(tmp_path)
    bad["subsystems"][0]["allowed_hosts"] = [HOSTNQN2]
    with pytest.raises(ValueError, match=r"subsystems\[0\].allowed_hosts: .* not in hosts"):
        nvmet.normalize(bad)
    bad = spec(tmp_path)
    bad["ports"][1].update(trtype="rdma")
    with pytest.raises(ValueError, match=r"ports\[1\]: same rdma 192.168.100.1:4420 as port 1"):
        nvmet.normalize(bad)
    bad = spec(tmp_path)
    bad["subsystems"][0]["namespaces"][0]["size"] = None
    with pytest.raises(ValueError, match="create_file needs a size"):
        nvmet.normalize(bad)
    with pytest.raises(ValueError, match="serial"):
        nvmet.normalize(spec(tmp_path, subsystems=[{"nqn": SUBNQN, "serial": "x" * 21}], ports=[]))


def test_missing_modules_uses_sys_module(tmp_path):
    desired = nvmet.normalize(spec(tmp_path))
    (tmp_path / "mods" / "nvmet").mkdir(parents=True)
    assert nvmet.missing_modules(desired, str(tmp_path / "mods")) == ["nvmet_rdma", "nvmet_tcp"]


def test_module_utils_are_stdlib_only_and_import_only_siblings():
    import ast

    siblings = {p.stem for p in faketarget.MODULE_UTILS.glob("*.py")}
    for name in sorted(siblings):
        tree = ast.parse((faketarget.MODULE_UTILS / (name + ".py")).read_text())
        mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        mods |= {n.module.split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom) and n.module and not n.level}
        # the only other imports: siblings, relatively (``from .fileio import ...``)
        rel = {n.module or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level
               for a in n.names}
        assert rel <= siblings and all(n.level == 1 for n in ast.walk(tree)
                                       if isinstance(n, ast.ImportFrom) and n.level), (name, rel)
        assert not mods & {"ansible", "ansible_collections", "nvmeofctl", "yaml", "pydantic"}, (name, mods)
        assert all(m in sys.stdlib_module_names or m == "__future__" for m in mods), (name, mods)


# ------------------------------------------------------------------------------------------
# the planner's view of the backing files (files_command, one round trip) vs the module's
# ------------------------------------------------------------------------------------------


def test_files_command_reads_what_probe_files_probes(tmp_path):
    """The real shell over real files: regular (empty or not), a symlink (never followed), a
    directory, missing paths, a quote in a name, and the files nvmet-managed.json records."""
    d = tmp_path / "var"
    d.mkdir()
    (d / "big.img").write_bytes(b"x" * 4096)
    (d / "empty.img").write_bytes(b"")
    os.symlink(d / "big.img", d / "link.img")
    (d / "dir.img").mkdir()
    (d / "recorded.img").write_bytes(b"y" * 10)
    names = ["big.img", "empty.img", "link.img", "dir.img", "missing.img", "it's.img"]
    desired = {"subsystems": {SUBNQN: {"namespaces": {
        str(i + 1): {"device_path": str(d / n), "create_file": True} for i, n in enumerate(names)}}}}
    managed = tmp_path / "nvmet-managed.json"
    recorded = [str(d / "recorded.img"), str(d / "gone.img"), str(d / "big.img")]
    managed.write_text(nvmet.managed_text({"files": recorded}))
    out = subprocess.run(["bash", "-c", nvmet.files_command(desired, str(managed))], capture_output=True,
                         text=True, check=True).stdout
    got = nvmet.parse_files(out)
    assert got == nvmet.probe_files(desired, recorded)
    assert got[str(d / "big.img")] == 4096 and got[str(d / "link.img")] == "symlink"
    assert got[str(d / "dir.img")] == "not-regular" and got[str(d / "gone.img")] is None
    # no nvmet-managed.json: only the spec's paths
    managed.unlink()
    out = subprocess.run(["bash", "-c", nvmet.files_command(desired, str(managed))], capture_output=True,
                         text=True, check=True).stdout
    assert nvmet.parse_files(out) == nvmet.probe_files(desired)
