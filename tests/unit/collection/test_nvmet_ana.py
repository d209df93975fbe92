"""module_utils/nvmet: ANA groups and states, namespace ANA group ids and controller-id ranges
(dual-controller targets, issue #10), against the fake configfs that enforces the kernel's rules
(tests/fixtures/collection/target/faketarget.py: the defaults the kernel creates with each
directory are those of the real k612 capture)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fixtures" / "collection" / "target"))
import faketarget  # noqa: E402
from faketarget import HOSTNQN, SUBNQN  # noqa: E402

nvmet = faketarget.load_util("nvmet")
StrictFS = faketarget.make_strict_fs(nvmet)


def opts(tmp_path, state2="non-optimized", grpid=2, cntlid=(1025, 2047)):
    """One target of a dual-controller pair: its controller ids in 1025-2047, the namespace in
    ANA group 2, which this target's ports serve as ``state2``."""
    dev = tmp_path / "dev" / "shared0"
    dev.parent.mkdir(exist_ok=True)
    dev.write_bytes(b"")
    return {
        "hosts": [{"nqn": HOSTNQN}],
        "subsystems": [{
            "nqn": SUBNQN, "serial": "0123456789abcdef", "allowed_hosts": [HOSTNQN],
            "cntlid_min": cntlid[0], "cntlid_max": cntlid[1],
            "namespaces": [{"nsid": 1, "device_path": str(dev), "ana_grpid": grpid,
                            "uuid": "fbd61f08-fde1-48e3-b431-57fda06e7aa9"}],
        }],
        "ports": [{"id": 1, "trtype": "rdma", "traddr": "192.168.100.12", "trsvcid": 4420, "subsystems": [SUBNQN],
                   "ana_groups": [{"grpid": 1, "state": "optimized"}, {"grpid": 2, "state": state2}]}],
    }


def converge(root, o, fs=None):
    desired = nvmet.normalize(o)
    obs = nvmet.read_tree(str(root))
    obs["files"] = nvmet.probe_files(desired)
    changes = nvmet.diff(desired, obs)
    fs = fs or StrictFS(root)
    done, failed = nvmet.apply(str(root), desired, changes, fs=fs)
    assert failed == []
    return desired, obs, changes, fs


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "nvmet"
    r.mkdir()
    return r


def read(root, *parts):
    return (root.joinpath(*parts)).read_text().strip()


def test_dual_controller_target_from_scratch_then_noop(root, tmp_path):
    desired, obs, changes, fs = converge(root, opts(tmp_path))
    objs = [(c["object"], c["action"]) for c in changes]
    assert ("port 1 / ana group 2", "create") in objs
    # group 1 is the kernel's default (optimized): nothing to write for it
    assert not any(o == "port 1 / ana group 1" for o, _a in objs)
    # ANA state is set before the port is linked: hosts never see the default state first
    assert objs.index(("port 1 / ana group 2", "create")) < objs.index(("port 1 / subsystem %s" % SUBNQN, "create"))
    assert not any(c["disruptive"] for c in changes)
    assert read(root, "ports", "1", "ana_groups", "2", "ana_state") == "non-optimized"
    assert read(root, "subsystems", SUBNQN, "namespaces", "1", "ana_grpid") == "2"
    assert (read(root, "subsystems", SUBNQN, "attr_cntlid_min"), read(root, "subsystems", SUBNQN, "attr_cntlid_max")) \
        == ("1025", "2047")
    after = nvmet.read_tree(str(root))
    after["files"] = nvmet.probe_files(desired)
    assert nvmet.diff(desired, after) == []
    assert nvmet.render(nvmet.simulate(obs, desired, changes)) == nvmet.render(after)
    assert "ana group 2: non-optimized" in nvmet.render(after)


def test_state_changes_and_which_are_disruptive(root, tmp_path):
    converge(root, opts(tmp_path))
    desired = nvmet.normalize(opts(tmp_path, state2="inaccessible"))
    changes = nvmet.diff(desired, nvmet.read_tree(str(root)))
    assert [(c["object"], c["detail"], c["disruptive"]) for c in changes] == [
        ("port 1 / ana group 2", "ana_state: non-optimized -> inaccessible", True)]
    nvmet.apply(str(root), desired, changes, fs=StrictFS(root))
    assert read(root, "ports", "1", "ana_groups", "2", "ana_state") == "inaccessible"
    # back to a live state: not disruptive; and optimized <-> non-optimized is not either
    for state in ("optimized", "non-optimized"):
        desired = nvmet.normalize(opts(tmp_path, state2=state))
        changes = nvmet.diff(desired, nvmet.read_tree(str(root)))
        assert len(changes) == 1 and not changes[0]["disruptive"]
        nvmet.apply(str(root), desired, changes, fs=StrictFS(root))
        assert read(root, "ports", "1", "ana_groups", "2", "ana_state") == state


def test_namespace_group_moves_while_enabled_without_disabling(root, tmp_path):
    converge(root, opts(tmp_path))
    desired = nvmet.normalize(opts(tmp_path, grpid=3))
    changes = nvmet.diff(desired, nvmet.read_tree(str(root)))
    ns_changes = [c for c in changes if c["kind"] == "namespace"]
    assert [(c["detail"], c["disruptive"]) for c in ns_changes] == [("ana_grpid: 2 -> 3", False)]
    fs = StrictFS(root)
    nvmet.apply(str(root), desired, changes, fs=fs)
    ns_writes = [o for o in fs.ops if o[0] == "write" and "/namespaces/" in o[1]]
    assert ns_writes == [("write", "subsystems/%s/namespaces/1/ana_grpid" % SUBNQN, "3")]  # enable untouched


def test_unlisted_group_is_removed_but_group_1_never(root, tmp_path):
    converge(root, opts(tmp_path))
    o = opts(tmp_path)
    o["ports"][0]["ana_groups"] = [{"grpid": 1, "state": "optimized"}]
    o["subsystems"][0]["namespaces"][0]["ana_grpid"] = 1
    desired = nvmet.normalize(o)
    changes = nvmet.diff(desired, nvmet.read_tree(str(root)))
    assert [(c["object"], c["action"]) for c in changes if c["kind"] == "ana_group"] == [("port 1 / ana group 2", "delete")]
    nvmet.apply(str(root), desired, changes, fs=StrictFS(root))
    assert not (root / "ports" / "1" / "ana_groups" / "2").exists()
    assert read(root, "ports", "1", "ana_groups", "1", "ana_state") == "optimized"


def test_port_the_spec_drops_goes_with_its_ana_groups(root, tmp_path):
    # a second rail's port serving ANA group 2: dropping the rail deletes the port, which the
    # kernel refuses while group 2 is there (ENOTEMPTY, seen on the lab in CI): links, the
    # group, then the port
    o = opts(tmp_path)
    o["ports"].append(dict(o["ports"][0], id=2, traddr="192.168.101.12"))
    converge(root, o)
    assert read(root, "ports", "2", "ana_groups", "2", "ana_state") == "non-optimized"
    desired = nvmet.normalize(opts(tmp_path))
    changes = nvmet.diff(desired, nvmet.read_tree(str(root)), {"ports": ["1", "2"]})  # both ours
    fs = StrictFS(root)
    assert nvmet.apply(str(root), desired, changes, fs=fs)[1] == []
    assert [(c["object"], c["action"], c["disruptive"]) for c in changes] == [("port 2", "delete", True)]
    assert "ANA group" in changes[0]["detail"], changes[0]
    assert fs.ops == [("unlink", "ports/2/subsystems/%s" % SUBNQN), ("rmdir", "ports/2/ana_groups/2"),
                      ("rmdir", "ports/2")]
    assert not (root / "ports" / "2").exists() and (root / "ports" / "1" / "ana_groups" / "2").is_dir()


def test_cntlid_range_above_the_current_one_writes_max_first(root, tmp_path):
    converge(root, opts(tmp_path, cntlid=(1, 1023)))
    desired = nvmet.normalize(opts(tmp_path, cntlid=(2049, 3071)))
    changes = nvmet.diff(desired, nvmet.read_tree(str(root)))
    assert [c["detail"] for c in changes] == ["cntlid_min: 1 -> 2049; cntlid_max: 1023 -> 3071"]
    assert not changes[0]["disruptive"]
    fs = StrictFS(root)  # refuses min > current max, as the kernel does
    nvmet.apply(str(root), desired, changes, fs=fs)
    assert [o[1].rsplit("/", 1)[1] for o in fs.ops if o[0] == "write"] == ["attr_cntlid_max", "attr_cntlid_min"]


def test_specs_without_ana_or_cntlid_leave_them_alone_and_keep_nvmet_json(root, tmp_path):
    o = opts(tmp_path)
    converge(root, o)
    for key in ("cntlid_min", "cntlid_max"):
        del o["subsystems"][0][key]
    del o["subsystems"][0]["namespaces"][0]["ana_grpid"]
    del o["ports"][0]["ana_groups"]
    desired = nvmet.normalize(o)
    assert nvmet.diff(desired, nvmet.read_tree(str(root))) == []
    # unset keys stay out of the desired state that nvmet.json records (files of earlier versions match)
    keys = set()
    for sub in desired["subsystems"].values():
        keys |= set(sub) | {k for ns in sub["namespaces"].values() for k in ns}
    keys |= {k for p in desired["ports"].values() for k in p}
    assert not keys & {"ana_grpid", "ana_groups", "cntlid_min", "cntlid_max"}


@pytest.mark.parametrize("change, message", [
    (lambda o: o["ports"][0]["ana_groups"].append({"grpid": 2, "state": "optimized"}), "duplicate ANA group 2"),
    (lambda o: o["ports"][0]["ana_groups"].__setitem__(1, {"grpid": 2, "state": "standby"}), "state: one of"),
    (lambda o: o["ports"][0]["ana_groups"].__setitem__(1, {"grpid": 129, "state": "optimized"}), "grpid: an integer 1..128"),
    (lambda o: o["subsystems"][0]["namespaces"][0].__setitem__("ana_grpid", 0), "ana_grpid: an integer 1..128"),
    (lambda o: o["subsystems"][0].__setitem__("cntlid_min", 3000), "cntlid_min: 3000 is above cntlid_max 2047"),
    (lambda o: o["subsystems"][0].__setitem__("cntlid_max", 65520), "cntlid_max: an integer 1..65519"),
])
def test_normalize_refuses_bad_ana_and_cntlid_values(tmp_path, change, message):
    o = opts(tmp_path)
    change(o)
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        nvmet.normalize(o)


def test_dump_reads_groups_states_and_ids_as_read_tree_does(root, tmp_path):
    converge(root, opts(tmp_path))
    out = subprocess.run(["sh", "-c", nvmet.dump_command(str(root))], capture_output=True, text=True, check=True)
    parsed = nvmet.parse_dump(out.stdout)
    tree = nvmet.read_tree(str(root))
    assert parsed["ports"] == tree["ports"]
    assert parsed["ports"]["1"]["ana_groups"] == {"1": "optimized", "2": "non-optimized"}
    assert parsed["subsystems"][SUBNQN]["namespaces"]["1"]["ana_grpid"] == 2
    assert (parsed["subsystems"][SUBNQN]["cntlid_min"], parsed["subsystems"][SUBNQN]["cntlid_max"]) == (1025, 2047)
