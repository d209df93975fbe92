"""module_utils/rdma.py: parsers fed the real lab captures, sysfs readers on fake trees, plan."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fixtures" / "collection" / "target"))
import faketarget  # noqa: E402

rdma = faketarget.load_util("rdma")


def fake_sysfs(root, gid_table="k612-sysfs-gid-table.txt", dev="rxe0", netdev="eth1", mtu=1500):
    """/sys with class/net/<netdev>/mtu and the GID table of <dev> from a capture, plus an
    unused GID slot whose type cannot be read (the kernel answers EINVAL: here, no file)."""
    (root / "class" / "net" / netdev).mkdir(parents=True)
    (root / "class" / "net" / netdev / "mtu").write_text("%d\n" % mtu)
    (root / "module").mkdir(parents=True, exist_ok=True)
    if dev:
        port = root / "class" / "infiniband" / dev / "ports" / "1"
        for d in ("gids", "gid_attrs/types", "gid_attrs/ndevs"):
            (port / d).mkdir(parents=True)
        for g in rdma.parse_gid_table(faketarget.fixture(gid_table)):
            (port / "gids" / str(g["index"])).write_text(g["gid"] + "\n")
            (port / "gid_attrs" / "types" / str(g["index"])).write_text(g["type"] + "\n")
            (port / "gid_attrs" / "ndevs" / str(g["index"])).write_text(g["ndev"] + "\n")
        (port / "gids" / "5").write_text(rdma.ZERO_GID + "\n")
        (port / "gids" / "6").write_text("fe80:0000:0000:0000:0000:0000:0000:0099\n")  # type unreadable
        (port / "state").write_text("4: ACTIVE\n")
        (port / "phys_state").write_text("5: LinkUp\n")
    return root


@pytest.mark.parametrize("name", ["k612-rdma-link-show.json", "rdma-link-show.json", "rdma-link-show-detail.json"])
def test_parse_link_show_real_captures(name):
    links = rdma.parse_link_show(faketarget.fixture(name))
    assert links == [{"device": "rxe0", "port": 1, "state": "ACTIVE", "physical_state": "LINK_UP", "netdev": "eth1"}]
    assert rdma.devices_on(links, "eth1") == ["rxe0"] and rdma.devices_on(links, "eth0") == []


def test_parse_link_show_empty_and_unbound():
    assert rdma.parse_link_show("") == [] and rdma.parse_link_show("[]\n") == []
    links = rdma.parse_link_show(json.dumps([{"ifname": "mlx5_0", "port": 1, "state": "DOWN", "physical_state": "DISABLED"}]))
    assert links[0]["netdev"] is None


@pytest.mark.parametrize("name", ["k612-sysfs-gid-table.txt", "sysfs-gid-table.txt"])
def test_parse_gid_table_real_captures(name):
    gids = rdma.parse_gid_table(faketarget.fixture(name))
    assert [(g["index"], g["type"], g["ndev"], g["ipv4"]) for g in gids] == [
        (0, "RoCE v2", "eth1", None), (1, "RoCE v2", "eth1", "192.168.100.1")]


def test_read_gid_table_from_sysfs_matches_the_capture_and_skips_bad_entries(tmp_path):
    sysfs = fake_sysfs(tmp_path / "sys")
    from_sysfs = rdma.read_gid_table("rxe0", 1, str(sysfs))
    captured = rdma.parse_gid_table(faketarget.fixture("k612-sysfs-gid-table.txt"))
    assert from_sysfs[:2] == captured
    assert from_sysfs[2] == {"index": 6, "gid": "fe80:0000:0000:0000:0000:0000:0000:0099", "type": None, "ndev": None, "ipv4": None}
    assert rdma.read_links_sysfs(str(sysfs)) == rdma.parse_link_show(faketarget.fixture("k612-rdma-link-show.json"))


def test_choose_device():
    links = rdma.parse_link_show(faketarget.fixture("k612-rdma-link-show.json"))
    d = lambda **kw: rdma.normalize(dict({"interface": "eth1", "soft_roce": True}, **kw))  # noqa: E731
    assert rdma.choose_device(d(), []) == ("rxe_eth1", True)
    assert rdma.choose_device(d(), links) == ("rxe0", False)  # adopt what is bound
    assert rdma.choose_device(d(rdma_device="rxe0"), links) == ("rxe0", False)
    with pytest.raises(ValueError, match="eth1 already has RDMA device rxe0, not rxe9: set rdma_device: rxe0"):
        rdma.choose_device(d(rdma_device="rxe9"), links)
    with pytest.raises(ValueError, match="RDMA device rxe0 is bound to eth1, not eth2"):
        rdma.choose_device(d(interface="eth2", rdma_device="rxe0"), links)
    with pytest.raises(ValueError, match="no RDMA device is bound to eth2 .* soft_roce: true"):
        rdma.choose_device(d(interface="eth2", soft_roce=False), links)


def test_plan_fresh_soft_roce_host():
    desired = rdma.normalize({"interface": "eth1", "mtu": 9000, "soft_roce": True, "roce_tos": 106})
    obs = {"mtu": 1500, "links": [], "modules": {}, "rdma_cm": {"exposed": False, "exists": False}}
    changes, dev = rdma.plan(desired, obs)
    assert dev == "rxe_eth1"
    assert [(c["object"], c["detail"]) for c in changes] == [
        ("netdev eth1", "mtu: 1500 -> 9000 (ip link set dev eth1 mtu 9000)"),
        ("kernel modules", "modprobe -a rdma_rxe rdma_cm"),
        ("rdma link rxe_eth1", "rdma link add rxe_eth1 type rxe netdev eth1"),
        ("rdma_cm rxe_eth1 port 1", "mkdir rdma_cm/rxe_eth1; default_roce_mode: ? -> RoCE v2; default_roce_tos: ? -> 106"),
    ]
    assert not any(c["disruptive"] for c in changes)


def test_plan_noop_lowering_mtu_and_not_exposed():
    links = rdma.parse_link_show(faketarget.fixture("k612-rdma-link-show.json"))
    desired = rdma.normalize({"interface": "eth1", "mtu": 9000, "soft_roce": True, "roce_tos": 106})
    cm = {"exposed": True, "exists": True, "default_roce_mode": "RoCE v2", "default_roce_tos": 106}
    mods = {"rdma_rxe": True, "rdma_cm": True}
    assert rdma.plan(desired, {"mtu": 9000, "links": links, "modules": mods, "rdma_cm": cm}) == ([], "rxe0")
    changes, _ = rdma.plan(dict(desired, mtu=1500), {"mtu": 9000, "links": links, "modules": mods, "rdma_cm": cm})
    assert [c["kind"] for c in changes] == ["mtu"] and changes[0]["disruptive"] is True
    # rdma_cm loaded but its configfs is not exposed: nothing to do there, no failure
    changes, _ = rdma.plan(desired, {"mtu": 9000, "links": links, "modules": mods, "rdma_cm": {"exposed": False}})
    assert changes == []
    # mlx5-like default RoCE v1: switched to v2
    changes, _ = rdma.plan(desired, {"mtu": 9000, "links": links, "modules": mods,
                                     "rdma_cm": dict(cm, default_roce_mode="IB/RoCE v1")})
    assert [c["detail"] for c in changes] == ["default_roce_mode: IB/RoCE v1 -> RoCE v2"]


def test_plan_fails_for_a_missing_interface():
    with pytest.raises(ValueError, match="interface eth7 not found"):
        rdma.plan(rdma.normalize({"interface": "eth7"}), {"mtu": None, "links": []})


def test_normalize_rejects_bad_options():
    with pytest.raises(ValueError, match="roce_mode"):
        rdma.normalize({"interface": "eth1", "roce_mode": "RoCE v3"})
    with pytest.raises(ValueError, match="roce_tos"):
        rdma.normalize({"interface": "eth1", "roce_tos": 300})
    with pytest.raises(ValueError, match="interface"):
        rdma.normalize({"interface": "eth1; reboot"})


class _Module:
    """What merge_into needs of an AnsibleModule: exit_json/fail_json and the diff-mode flag."""

    def __init__(self, diff):
        self._diff = diff
        self.exited = []
        self.exit_json = lambda **kw: self.exited.append(("exit", kw))
        self.fail_json = lambda **kw: self.exited.append(("fail", kw))


@pytest.mark.parametrize("diff", [False, True])
def test_merge_into_leads_with_the_link_and_diffs_only_in_diff_mode(diff):
    link = {"changed": True, "rdma_device": "rxe_eth1", "observed": {"mtu": 9000},
            "changes": [{"object": "netdev eth1", "action": "update"}],
            "diff": {"before": "netdev eth1: mtu 1500\n", "after": "netdev eth1: mtu 9000\n"}}
    m = _Module(diff)
    rdma.merge_into(m, link)
    own = {"changed": False, "changes": [{"object": "port 1", "action": "create"}]}
    if diff:
        own["diff"] = {"before": "port 1: absent\n", "after": "port 1: rdma\n"}
    m.exit_json(**own)
    m.fail_json(msg="boom")
    (how, kw), (how2, kw2) = m.exited
    assert how == "exit" and how2 == "fail"
    assert [c["object"] for c in kw["changes"]] == ["netdev eth1", "port 1"] and kw["changed"] is True
    assert kw["rdma"] == {"rdma_device": "rxe_eth1", "observed": {"mtu": 9000}, "changed": True}
    assert [c["object"] for c in kw2["changes"]] == ["netdev eth1"] and kw2["msg"] == "boom"
    if diff:
        assert kw["diff"] == {"before": "netdev eth1: mtu 1500\nport 1: absent\n",
                              "after": "netdev eth1: mtu 9000\nport 1: rdma\n"}
        assert kw2["diff"]["after"] == "netdev eth1: mtu 9000\n"
    else:
        assert "diff" not in kw and "diff" not in kw2


@pytest.mark.parametrize("mtu,ok", [(575, False), (576, True), (9000, True), (9216, True), (9217, False)])
def test_the_module_takes_the_mtus_the_spec_takes(mtu, ok):
    """One range (validators.mtu_problem): what `spec validate` accepts, rdma_link sets."""
    if ok:
        assert rdma.normalize({"interface": "eth1", "mtu": mtu})["mtu"] == mtu
    else:
        with pytest.raises(ValueError, match="outside 576..9216"):
            rdma.normalize({"interface": "eth1", "mtu": mtu})


# --------------------------------------------------------------------------------------------
# several fabric interfaces ("rails"): rail 1 keeps its names, rail N >= 2 names its own
# --------------------------------------------------------------------------------------------


def test_boot_names_rail_1_unchanged_rail_n_named_after_the_interface():
    assert rdma.boot_names(1, "eth1") == ("rdma-restore.sh", "rdma-device", "nvmeofctl-rdma.service")
    assert rdma.boot_names(1, None) == (rdma.SCRIPT_NAME, rdma.DEVICE_FILE, rdma.UNIT_NAME)
    assert rdma.boot_names(2, "eth2") == ("rdma-restore-eth2.sh", "rdma-device-eth2", "nvmeofctl-rdma-eth2.service")
    assert rdma.boot_names(3, "ens1f1") == ("rdma-restore-ens1f1.sh", "rdma-device-ens1f1",
                                            "nvmeofctl-rdma-ens1f1.service")
    assert rdma.host_files_keys(1, "eth1") == ("rdma_script", "rdma_unit")
    assert rdma.host_files_keys(2, "eth2") == ("rdma_script@eth2", "rdma_unit@eth2")
    for rail, interface in ((0, "eth1"), (2, None), (2, ""), (2, "../etc"), (2, "-rf"), (2, "eth2@1")):
        with pytest.raises(ValueError, match="rail"):
            rdma.boot_names(rail, interface)
    assert "boot_names" in rdma.__all__ and "host_files_keys" in rdma.__all__


def test_normalize_rail():
    assert rdma.normalize({"interface": "eth1"})["rail"] == 1
    assert rdma.normalize({"interface": "eth2", "rail": 2})["rail"] == 2
    assert rdma.normalize({"interface": "eth2", "rail": None})["rail"] == 1
    with pytest.raises(ValueError, match="rail: 1 or more expected, got 0"):
        rdma.normalize({"interface": "eth1", "rail": 0})
    assert rdma.ARGUMENT_SPEC["rail"] == {"type": "int", "default": 1}


def test_template_vars_and_files_rail_1_as_before_rail_2_its_own():
    lib, unit = "/srv/lib", "/srv/unit"
    one = rdma.template_vars(rdma.normalize({"interface": "eth1"}), lib)
    assert sorted(one) == ["rdma_script", "rdma_unit"]
    assert one["rdma_script"]["device_file"] == "/srv/lib/rdma-device"
    assert one["rdma_unit"]["script_path"] == "/srv/lib/rdma-restore.sh"
    assert one == rdma.template_vars({k: v for k, v in rdma.normalize({"interface": "eth1"}).items()
                                      if k != "rail"}, lib)  # a desired state from before rails
    d2 = rdma.normalize({"interface": "eth2", "rail": 2, "soft_roce": True})
    two = rdma.template_vars(d2, lib)
    assert sorted(two) == ["rdma_script@eth2", "rdma_unit@eth2"]
    assert two["rdma_script@eth2"]["device_file"] == "/srv/lib/rdma-device-eth2"
    assert two["rdma_script@eth2"]["interface"] == "eth2"
    assert two["rdma_unit@eth2"] == {"interface": "eth2", "script_path": "/srv/lib/rdma-restore-eth2.sh"}
    texts = {"rdma_script@eth2": "#!/bin/sh\n", "rdma_unit@eth2": "[Unit]\n"}
    assert rdma.persistence_files(d2, "rxe_eth2", texts, lib, unit) == [
        ("/srv/lib/rdma-restore-eth2.sh", "#!/bin/sh\n", 0o755),
        ("/srv/lib/rdma-device-eth2", "rxe_eth2\n", 0o644),
        ("/srv/unit/nvmeofctl-rdma-eth2.service", "[Unit]\n", 0o644)]
    with pytest.raises(ValueError, match="host_files.rdma_script@eth2, host_files.rdma_unit@eth2 not given"):
        rdma.persistence_files(d2, "rxe_eth2", {"rdma_script": "x", "rdma_unit": "y"}, lib, unit)
    rec = rdma.persist.Recorder()  # which paths the plan reads: the rail's own, never rail 1's
    changes, states = rdma.persist_changes(d2, "rxe_eth2", texts, lib, unit, fs=rec)
    assert changes == [] and [p for p, _st in states] == [
        "/srv/lib/rdma-restore-eth2.sh", "/srv/lib/rdma-device-eth2", "/srv/unit/nvmeofctl-rdma-eth2.service"]
    assert sorted(rec.paths) == ["/srv/lib/rdma-device-eth2", "/srv/lib/rdma-restore-eth2.sh",
                                 "/srv/unit/multi-user.target.wants/nvmeofctl-rdma-eth2.service",
                                 "/srv/unit/nvmeofctl-rdma-eth2.service"]


def test_persist_removal_of_rail_2_leaves_rail_1():
    lib, unit = "/srv/lib", "/srv/unit"
    everything = ["/srv/lib/rdma-restore.sh", "/srv/lib/rdma-device", "/srv/unit/nvmeofctl-rdma.service",
                  "/srv/unit/multi-user.target.wants/nvmeofctl-rdma.service",
                  "/srv/lib/rdma-restore-eth2.sh", "/srv/lib/rdma-device-eth2",
                  "/srv/unit/nvmeofctl-rdma-eth2.service",
                  "/srv/unit/multi-user.target.wants/nvmeofctl-rdma-eth2.service"]
    fs = rdma.persist.DumpedFiles(everything, {}, {}, everything)
    gone = rdma.persist_removal(lib_dir=lib, unit_dir=unit, fs=fs, rail=2, interface="eth2")
    assert [(c["action"], c["object"]) for c in gone] == [
        ("disable", "systemd nvmeofctl-rdma-eth2.service"),
        ("remove", "file /srv/lib/rdma-restore-eth2.sh"),
        ("remove", "file /srv/lib/rdma-device-eth2"),
        ("remove", "file /srv/unit/nvmeofctl-rdma-eth2.service")]
    # rail 1 (the defaults, as src/nvmeofctl/plan/persistence.py calls it): today's names
    assert [c["object"] for c in rdma.persist_removal(lib, unit, fs=fs)] == [
        "systemd nvmeofctl-rdma.service", "file /srv/lib/rdma-restore.sh", "file /srv/lib/rdma-device",
        "file /srv/unit/nvmeofctl-rdma.service"]
    with pytest.raises(ValueError, match="rail 2"):
        rdma.persist_removal(lib, unit, fs=fs, rail=2)


def test_rail_params_rails_are_2_to_n_and_one_interface_is_one_rail():
    links = rdma.rail_params({"interface": "eth1"}, [{"interface": "eth2", "rail": 7}, {"interface": "eth3"}])
    assert [(where, p["interface"], p["rail"]) for where, p in links] == [
        ("rdma", "eth1", 1), ("rdma_rails[0]", "eth2", 2), ("rdma_rails[1]", "eth3", 3)]
    assert [(w, p["rail"]) for w, p in rdma.rail_params(None, [{"interface": "eth2"}])] == [("rdma_rails[0]", 2)]
    with pytest.raises(ValueError) as e:
        rdma.rail_params({"interface": "eth1"}, [{"interface": "eth2"}, {"interface": "eth1"}])
    assert str(e.value) == "rdma_rails[1]: interface eth1 is already the fabric link of rdma (one interface, one rail)"
    with pytest.raises(ValueError, match=r"rdma_rails\[1\]: interface eth2 is already the fabric link of rdma_rails\[0\]"):
        rdma.rail_params(None, [{"interface": "eth2"}, {"interface": "eth2"}])


@pytest.mark.parametrize("diff", [False, True])
def test_merge_into_with_rails_in_rail_order(diff):
    def link(ifname, mtu_from, changed=True):
        return {"changed": changed, "rdma_device": "rxe_" + ifname, "observed": {"interface": ifname},
                "changes": [{"object": "netdev " + ifname, "action": "update"}] if changed else [],
                "diff": {"before": "netdev %s: mtu %d\n" % (ifname, mtu_from), "after": "netdev %s: mtu 9000\n" % ifname}}
    m = _Module(diff)
    rdma.merge_into(m, link("eth1", 9000, changed=False), [link("eth2", 1500), link("eth3", 1500)])
    own = {"changed": False, "changes": [{"object": "port 1", "action": "create"}]}
    if diff:
        own["diff"] = {"before": "port 1: absent\n", "after": "port 1: rdma\n"}
    m.exit_json(**own)
    (how, kw), = m.exited
    assert [c["object"] for c in kw["changes"]] == ["netdev eth2", "netdev eth3", "port 1"] and kw["changed"] is True
    assert kw["rdma"] == {"rdma_device": "rxe_eth1", "observed": {"interface": "eth1"}, "changed": False}
    assert kw["rdma_rails"] == [{"rdma_device": "rxe_eth2", "observed": {"interface": "eth2"}, "changed": True},
                                {"rdma_device": "rxe_eth3", "observed": {"interface": "eth3"}, "changed": True}]
    if diff:
        assert kw["diff"]["before"] == ("netdev eth1: mtu 9000\nnetdev eth2: mtu 1500\nnetdev eth3: mtu 1500\n"
                                        "port 1: absent\n")
    else:
        assert "diff" not in kw
    m = _Module(False)  # rails without `rdma`: no `rdma` key
    rdma.merge_into(m, None, [link("eth2", 1500)])
    m.exit_json(changed=False, changes=[])
    (how, kw), = m.exited
    assert "rdma" not in kw and [r["rdma_device"] for r in kw["rdma_rails"]] == ["rxe_eth2"] and kw["changed"] is True
