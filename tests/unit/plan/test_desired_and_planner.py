"""Spec -> module options (plan.desired) and the planner over the modules' own diff logic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nvmeofctl.plan import desired
from nvmeofctl.plan.planner import make_plan, plan_host
from nvmeofctl.resources import load_module_utils
from nvmeofctl.spec import load_spec

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
LAB = FIXTURES / "specs" / "good" / "lab.yaml"


@pytest.fixture(scope="module")
def spec():
    return load_spec(LAB)


def test_nvmet_args_follow_the_spec(spec):
    args = desired.nvmet_args(spec, spec.host("stor1"))
    gpu1, gpu2 = spec.host("gpu1").host_nqn, spec.host("gpu2").host_nqn
    assert [h["nqn"] for h in args["hosts"]] == [gpu1, gpu2]
    # gpu1 authenticates (bidirectional) on stor1; gpu2 has no key
    assert args["hosts"][0]["dhchap_key"].startswith("DHHC-1:") and args["hosts"][0]["dhchap_ctrl_key"]
    assert "dhchap_key" not in args["hosts"][1]
    data, secure = args["subsystems"]
    assert data["allowed_hosts"] == [gpu1, gpu2] and secure["allowed_hosts"] == [gpu1]
    assert [(n["nsid"], n["device_path"], n["create_file"], n.get("size")) for n in data["namespaces"]] == [
        (1, "/var/lib/nvmeofctl/data0.img", True, 256 * 2**20),
        (2, "/var/lib/nvmeofctl/data1.img", True, 2**30),
    ]
    assert secure["namespaces"][0]["device_path"] == "/dev/loop7" and not secure["namespaces"][0]["create_file"]
    assert args["ports"] == [{"id": 1, "trtype": "rdma", "adrfam": "ipv4", "traddr": "10.99.0.1", "trsvcid": 4420,
                              "subsystems": [data["nqn"], secure["nqn"]]}]
    # the module accepts them as they are
    load_module_utils("nvmet").normalize(args)


def test_nvme_host_args_carry_policy_and_the_targets_key(spec):
    a1 = desired.nvme_host_args(spec, spec.host("gpu1"))
    assert a1["hostnqn"] == spec.host("gpu1").host_nqn and a1["hostid"] == str(spec.host("gpu1").host_id)
    assert (a1["ctrl_loss_tmo"], a1["reconnect_delay"], a1["keep_alive_tmo"], a1["iopolicy"]) == (600, 10, 5, "round-robin")
    # nvmet keeps one key per host per target: gpu1 authenticates to EVERY subsystem on stor1
    assert [c["subsysnqn"].rsplit(":", 1)[1] for c in a1["connections"]] == ["data", "secure"]
    assert all(c["dhchap_secret"].startswith("DHHC-1:") and c["dhchap_ctrl_secret"] for c in a1["connections"])
    a2 = desired.nvme_host_args(spec, spec.host("gpu2"))
    assert [c["subsysnqn"].rsplit(":", 1)[1] for c in a2["connections"]] == ["data"]
    assert "dhchap_secret" not in a2["connections"][0]
    assert a2["connections"][0] | {} == {"subsysnqn": a2["connections"][0]["subsysnqn"], "transport": "rdma",
                                         "traddr": "10.99.0.1", "trsvcid": "4420"}
    load_module_utils("nvme_host").normalize_desired(a1)


def test_rdma_args_only_for_rdma(spec):
    assert desired.rdma_args(spec, spec.host("gpu1")) == {
        "interface": "eth1", "mtu": 1500, "soft_roce": True, "roce_mode": "RoCE v2", "roce_tos": 106,
        "rdma_device": "rxe0"}
    tcp = spec.model_copy(update={"fabric": spec.fabric.model_copy(update={"transport": "tcp"})})
    assert desired.rdma_args(tcp, tcp.host("gpu1")) == {}


def test_host_vars_never_mix_roles(spec):
    hv = desired.host_vars(spec)
    assert set(hv["stor1"]) == {"nvmeofctl_rdma", "nvmeofctl_nvmet"}
    assert set(hv["gpu1"]) == {"nvmeofctl_rdma", "nvmeofctl_nvme_host"}


def _rdma_dump(rxe_bound: bool) -> str:
    links = '[{"ifindex":1,"ifname":"rxe0","port":1,"state":"ACTIVE","physical_state":"LINK_UP","netdev":"eth1","netdev_index":3}]'
    return "\n".join([
        "mtu=1500",
        f"links={links if rxe_bound else '[]'}",
        f"mod_rdma_rxe={'1' if rxe_bound else '0'}", "mod_rdma_cm=1", "cm_exposed=1",
        "cm_mode.rxe0=RoCE v2" if rxe_bound else "", "cm_tos.rxe0=106" if rxe_bound else "",
    ])


def test_fresh_target_plan_creates_everything_and_nothing_is_disruptive(spec):
    rdma = load_module_utils("rdma")
    observed = {"rdma": rdma.parse_dump(_rdma_dump(False), "eth1"), "nvmet": {}, "nvmet_managed": {}}
    hp = plan_host(spec, spec.host("stor1"), observed)
    assert not hp.error
    assert {c.action for c in hp.changes} <= {"create", "update"}
    assert not hp.disruptive
    objs = [c.object for c in hp.changes]
    assert any(o.startswith("rdma link") for o in objs)
    assert sum(o.startswith("subsystem") and "/" not in o for o in objs) == 2
    assert any(o.startswith("port 1") for o in objs)
    # secrets never appear in a plan
    key = desired.nvmet_args(spec, spec.host("stor1"))["hosts"][0]["dhchap_key"]
    assert key not in json.dumps([c.to_dict() for c in hp.changes])


def test_converged_target_plan_is_empty_and_edits_are_exact(spec):
    nvmet, rdma = load_module_utils("nvmet"), load_module_utils("rdma")
    want = nvmet.normalize(desired.nvmet_args(spec, spec.host("stor1")))
    changes = nvmet.diff(want, nvmet.empty_tree(), {})
    converged = nvmet.simulate(nvmet.empty_tree(), want, changes)
    managed = nvmet.managed_after(want, nvmet.empty_tree(), changes, {})
    observed = {"rdma": rdma.parse_dump(_rdma_dump(True), "eth1"), "nvmet": converged, "nvmet_managed": managed}
    assert plan_host(spec, spec.host("stor1"), observed).changes == []
    # drop an export: removing what a GPU node uses is disruptive, and only that changes
    edited = spec.model_copy(deep=True)
    edited.subsystems[0].allowed_gpu_nodes.remove("gpu2")
    hp = plan_host(edited, edited.host("stor1"), observed)
    gpu2 = spec.host("gpu2").host_nqn
    # gpu2 loses its ACL entry on `data`, and (allowed nowhere on stor1 now) its host entry
    assert [c.action for c in hp.changes] == ["delete", "delete"]
    assert all(gpu2 in c.object for c in hp.changes)
    acl = next(c for c in hp.changes if "allowed host" in c.object)
    assert acl.disruptive and acl.object.startswith("subsystem " + spec.subsystems[0].nqn)


def test_gpu_node_plan_fresh_then_converged(spec):
    fresh = {"hostnqn": None, "hostid": None, "controllers": {}, "subsystems": {}, "managed": [], "modules": {}}
    hp = plan_host(spec, spec.host("gpu2"), {"nvme_host": fresh})
    assert [c.action for c in hp.changes].count("connect") == 1
    assert not hp.disruptive
    assert any("/etc/nvme/hostnqn" in c.object for c in hp.changes)


def test_make_plan_counts(spec):
    p = make_plan(spec, {"gpu2": {"nvme_host": {"controllers": {}, "managed": []}}})
    d = p.to_dict()
    assert d["changes"] == len(p.changes) and [h["host"] for h in d["hosts"]] == ["gpu2"]


# ---- real host states captured from the provisioned lab (tests/fixtures/plan/lab-real/) ------
REAL = FIXTURES / "plan" / "lab-real"


def _real_observed(spec_obj):
    return {name: st.observed() for name, st in _real_states(spec_obj).items()}


def _real_spec_with(tmp_path, extra: str):
    """The real lab spec with `extra` appended to its subsystems (secrets from the fixtures)."""
    text = (REAL / "cluster.yaml").read_text().replace("../../specs/good/secrets", str(FIXTURES / "specs/good/secrets"))
    (tmp_path / "cluster.yaml").write_text(text + extra)
    return load_spec(tmp_path / "cluster.yaml")


def test_real_converged_lab_plans_no_change():
    spec_obj = load_spec(REAL / "cluster.yaml")
    plan = make_plan(spec_obj, _real_observed(spec_obj))
    assert [(h.host, h.error) for h in plan.hosts] == [("tgt1", ""), ("gpu1", ""), ("gpu2", "")]
    assert plan.changes == []


def _real_states(spec_obj) -> dict:
    """HostState per host from the real lab captures (fixtures/plan/lab-real/<host>.txt)."""
    from nvmeofctl.facts.hoststate import HostState, parse_kv, split_sections

    states = {}
    for host in spec_obj.hosts:
        sections = split_sections((REAL / f"{host.name}.txt").read_text())
        states[host.name] = HostState(host.name, host.role, host.fabric.interface, True,
                                      preflight=parse_kv(sections["preflight"]), sections=sections)
    return states


def test_real_lab_preflight_passes():
    from nvmeofctl.plan.preflight import evaluate

    spec_obj = load_spec(REAL / "cluster.yaml")
    states = _real_states(spec_obj)
    assert evaluate(spec_obj, states) == []
    # the same host without DH-HMAC-CHAP in its kernel is refused, naming what is missing
    states["tgt1"].preflight["CONFIG_NVME_TARGET_AUTH"] = "n"
    problems = evaluate(spec_obj, states)
    assert [p.host for p in problems] == ["tgt1"] and "CONFIG_NVME_TARGET_AUTH" in problems[0].message
    # an nvme-cli without --dhchap-secret (1.x) on the node that must authenticate
    states["tgt1"].preflight["CONFIG_NVME_TARGET_AUTH"] = "y"
    states["gpu1"].preflight["nvme_cli"] = "nvme version 1.16"
    states["gpu2"].preflight["mod_nvme_rdma"] = "no"
    assert [str(p) for p in evaluate(spec_obj, states)] == [
        "gpu1: nvme-cli 1.16 is too old (DH-HMAC-CHAP and JSON connect output need >= 2.0): upgrade nvme-cli",
        "gpu2: kernel 6.12.95+deb12-amd64 has no module nvme_rdma",
    ]


def test_real_lab_plan_of_an_added_export_is_exact(tmp_path):
    edited = _real_spec_with(tmp_path, (
        "  - nqn: nqn.2024-01.io.nvmeofctl.lab:scratch\n    target: tgt1\n    allowed_gpu_nodes: [gpu2]\n"
        "    namespaces:\n      - {nsid: 1, name: scratch, backing: {file: /var/lib/nvmeofctl/scratch.img, size: 64MiB}}\n"))
    plan = make_plan(edited, _real_observed(edited))
    by_host = {h.host: [(c.action, c.object) for c in h.changes] for h in plan.hosts}
    assert by_host["gpu1"] == []
    assert by_host["gpu2"] == [("connect", "connection:rdma://192.168.100.11:4420/nqn.2024-01.io.nvmeofctl.lab:scratch")]
    sub = "subsystem nqn.2024-01.io.nvmeofctl.lab:scratch"
    gpu2 = edited.host("gpu2").host_nqn
    assert by_host["tgt1"] == [
        ("create", sub), ("create", f"{sub} / namespace 1"), ("create", f"{sub} / allowed host {gpu2}"),
        ("create", "port 1 / subsystem nqn.2024-01.io.nvmeofctl.lab:scratch"),
    ]
    assert not plan.disruptive


def test_target_exporting_a_device_needs_blkid(tmp_path):
    """The target checks a device's signatures with blkid before exporting it: preflight says so."""
    from nvmeofctl.plan.preflight import evaluate

    spec_obj = _real_spec_with(tmp_path, (
        "  - nqn: nqn.2024-01.io.nvmeofctl.lab:raw\n    target: tgt1\n    allowed_gpu_nodes: [gpu2]\n"
        "    namespaces:\n      - {nsid: 1, name: raw, backing: {device: /dev/nvme0n1}}\n"))
    states = _real_states(spec_obj)
    assert evaluate(spec_obj, states) == []  # captures taken before the probe asked: not refused
    states["tgt1"].preflight["blkid"] = "no"
    assert [str(p) for p in evaluate(spec_obj, states)] == [
        "tgt1: blkid (util-linux) is missing: the target checks a device for filesystem signatures before it "
        "exports it"]
    states["tgt1"].preflight["blkid"] = "yes"
    assert evaluate(spec_obj, states) == []
