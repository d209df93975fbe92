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
