"""Paths, rollout decisions, the plan's "another path carries the I/O" and health's per-namespace
path count, on REAL reads of a dual-controller lab (tests/fixtures/plan/lab-multipath/README.md).
Expected values are written out here from what the captures show."""

from __future__ import annotations

from pathlib import Path

import pytest

from nvmeofctl.facts.hoststate import HostState, parse_kv, split_sections
from nvmeofctl.plan import paths as paths_mod
from nvmeofctl.plan.alternate import relieve
from nvmeofctl.plan.planner import Change, HostPlan, Plan
from nvmeofctl.rollout import model
from nvmeofctl.spec import load_spec

MP = Path(__file__).resolve().parents[2] / "fixtures" / "plan" / "lab-multipath"
NQN = "nqn.2024-01.io.nvmeofctl.test-mp:shared"


@pytest.fixture(scope="module")
def spec():
    return load_spec(MP / "cluster.yaml")


def observed(spec, state: str = "") -> dict:
    out = {}
    for h in spec.hosts:
        sections = split_sections((MP / f"{h.name}{state}.txt").read_text())
        st = HostState(h.name, h.role, h.fabric.interface, True, preflight=parse_kv(sections["preflight"]),
                       sections=sections)
        out[h.name] = st.observed()
    return out


def test_paths_of_the_healthy_lab(spec):
    got = [(p.node, p.namespace, p.target, p.controller, p.state, p.ana_state, p.carries_io)
           for p in paths_mod.paths(spec, observed(spec))]
    assert got == [("gpu1", "shared", "tgt1", "nvme0", "live", "optimized", True),
                   ("gpu1", "shared", "tgt2", "nvme1", "live", "non-optimized", True)]


def test_paths_with_the_partner_link_down_and_drained(spec):
    down = paths_mod.paths(spec, observed(spec, "-tgt2-link-down"))
    assert [(p.target, p.state, p.carries_io) for p in down] == [("tgt1", "live", True), ("tgt2", "connecting", False)]
    drained = paths_mod.paths(spec, observed(spec, "-tgt1-drained"))
    assert [(p.target, p.ana_state, p.carries_io) for p in drained] == [("tgt1", "inaccessible", False),
                                                                       ("tgt2", "optimized", True)]


def test_rollout_refuses_only_when_the_last_path_would_go(spec):
    assert model.lost_paths(spec, observed(spec), {"tgt1"}) == []
    assert model.lost_paths(spec, observed(spec, "-tgt2-link-down"), {"tgt1"}) == [
        f"gpu1: namespace shared ({NQN}) would lose its last live path: no live path through "
        "gpu1 shared via tgt2 (nvme1, connecting)"]
    # both targets at once: nothing left, whatever the state
    assert model.lost_paths(spec, observed(spec), {"tgt1", "tgt2"}) == [
        f"gpu1: namespace shared ({NQN}) would lose its last live path: only tgt1, tgt2 serves it"]


def test_drain_and_restore_waits_follow_the_ana_states(spec):
    assert model.pending_drain(spec, observed(spec), {"tgt1"}) == ["gpu1 shared via tgt1 (nvme0, optimized)"]
    assert model.pending_drain(spec, observed(spec, "-tgt1-drained"), {"tgt1"}) == []
    assert model.pending_restore(spec, observed(spec, "-tgt1-drained"), {"tgt1", "tgt2"}) == [
        "gpu1 shared via tgt1 (nvme0, inaccessible), want optimized",
        "gpu1 shared via tgt2 (nvme1, optimized), want non-optimized"]
    assert model.pending_restore(spec, observed(spec), {"tgt1", "tgt2"}) == []


def _plan(*changes: Change) -> Plan:
    return Plan([HostPlan(c.host, "target" if c.host.startswith("tgt") else "gpu_node", [c]) for c in changes])


def test_a_path_change_is_not_disruptive_while_the_other_path_is_live(spec):
    port = Change("tgt1", "nvmet", "port 1", "update", "traddr: 192.168.100.11 -> 192.168.100.31; unlink 1 "
                  "subsystem(s), write, relink", True, "hosts connected through this port are disconnected")
    recon = Change("gpu1", "nvme_host", f"connection:rdma://192.168.100.12:4420/{NQN}", "reconnect",
                   "nvme1: kato 5 -> 10", True, "these settings are fixed at connect time")
    for change in (port, recon):
        relieve(spec, _plan(change), observed(spec))
    assert [c.disruptive for c in (port, recon)] == [False, False]
    assert port.reason.endswith("; not disruptive: I/O continues on gpu1 shared via tgt2 (nvme1, non-optimized)")
    assert recon.reason.endswith("; not disruptive: I/O continues on gpu1 shared via tgt1 (nvme0, optimized)")


def test_changes_that_interrupt_both_paths_stay_disruptive_and_point_to_rollout(spec):
    """A port moved on both targets (fabric.port changed): each path's alternative is interrupted
    by the same plan, so a plain apply would stop I/O; the reason names rollout and the paths."""
    ports = [Change(t, "nvmet", "port 1", "update", "trsvcid: 4420 -> 4421; unlink 1 subsystem(s), write, relink",
                    True, "hosts connected through this port are disconnected") for t in ("tgt1", "tgt2")]
    relieve(spec, _plan(*ports), observed(spec))
    assert [c.disruptive for c in ports] == [True, True]
    assert ports[0].reason.endswith("; this plan also interrupts the other path(s): `nvmeofctl rollout` changes one "
                                    "target at a time, I/O continuing meanwhile on gpu1 shared via tgt2 (nvme1, "
                                    "non-optimized)")


def test_a_path_change_stays_disruptive_without_a_live_alternative(spec):
    port = Change("tgt1", "nvmet", "port 1", "update", "traddr", True, "hosts connected through this port are "
                  "disconnected")
    plan = _plan(port)
    relieve(spec, plan, observed(spec, "-tgt2-link-down"))  # tgt2's path is connecting
    assert port.disruptive and "not disruptive" not in port.reason
    # and without the GPU node's read (apply --limit tgt1) nothing is cleared
    plan = _plan(port)
    relieve(spec, plan, {k: v for k, v in observed(spec).items() if k != "gpu1"})
    assert port.disruptive


def test_health_counts_paths_per_namespace(spec):
    from nvmeofctl.facts.probe import HostFacts
    from nvmeofctl.health.checks_nvme import check_nvme_host
    from nvmeofctl.health.expect import expectations_from_spec

    exp = expectations_from_spec(spec)

    def findings(state):
        f = HostFacts("gpu1", nvme_host=observed(spec, state)["gpu1"]["nvme_host"])
        return [(x.check, x.status.value, x.observed) for x in check_nvme_host(f, exp)
                if x.check in ("nvme_controller", "nvme_paths")]

    assert findings("") == [
        ("nvme_controller", "ok", "nvme0 live rdma 192.168.100.11:4420"),
        ("nvme_controller", "ok", "nvme1 live rdma 192.168.100.12:4420"),
        ("nvme_paths", "ok", "2/2 paths carry I/O: nvme0 tgt1 optimized, nvme1 tgt2 non-optimized")]
    assert findings("-tgt2-link-down") == [
        ("nvme_controller", "ok", "nvme0 live rdma 192.168.100.11:4420"),
        ("nvme_controller", "warn", "nvme1 connecting; I/O continues on nvme0 192.168.100.11"),
        ("nvme_paths", "warn", "1/2 paths carry I/O: nvme0 tgt1 optimized; down: tgt2 (nvme1 connecting)")]
    assert findings("-tgt1-drained")[-1] == (
        "nvme_paths", "warn", "1/2 paths carry I/O: nvme1 tgt2 optimized; down: tgt1 (nvme0 inaccessible)")


def test_with_the_port_moved_in_the_spec_the_paths_on_the_old_port_still_carry_the_io(spec, tmp_path):
    """The spec moves fabric.port 4420 -> 4421; the node's paths are still on 4420. They are the
    spec's paths (not moved yet) but they carry the I/O now: rollout may start (each target in turn
    keeps the other's old path), and waits for the moved path of the target it changed."""
    moved_file = tmp_path / "cluster.yaml"
    moved_file.write_text((MP / "cluster.yaml").read_text().replace("  port: 4420\n", "  port: 4421\n", 1))
    moved = load_spec(moved_file)
    obs = observed(moved)
    assert [p.controller for p in paths_mod.paths(moved, obs)] == [None, None]  # none on 4421 yet
    assert model.lost_paths(moved, obs, {"tgt1"}) == []
    assert model.pending_restore(moved, obs, {"tgt1"}, {"tgt2"}) == ["gpu1 shared via tgt1 (not connected), want optimized"]


def test_status_shows_both_targets_and_both_controllers(spec):
    from nvmeofctl.plan.planner import make_plan
    from nvmeofctl.status.model import build_status

    obs = observed(spec)
    st = build_status(spec, obs, make_plan(spec, obs), {})
    (ns,) = st.to_dict()["namespaces"]
    assert (ns["targets"], ns["exported"], ns["drift"]) == (["tgt1", "tgt2"], "yes", [])
    (path,) = ns["paths"]
    assert (path["node"], path["state"], path["device"]) == ("gpu1", "connected", "/dev/nvme0n1")
    assert [(c["name"], c["state"]) for c in path["controllers"]] == [("nvme0", "live"), ("nvme1", "live")]
    assert st.drift == 0


def test_topology_draws_both_targets_of_a_dual_controller_subsystem(spec):
    from nvmeofctl.plan.planner import make_plan
    from nvmeofctl.report import topology
    from nvmeofctl.status.model import build_status

    obs = observed(spec)
    st = build_status(spec, obs, make_plan(spec, obs), {})
    text = topology.text(spec, st)
    assert text.count(f"  subsystem {NQN} (dual-controller: tgt1, tgt2)") == 2  # under each target
    dot = topology.dot(spec, st)
    assert f'"t:tgt1" -> "s:{NQN}";' in dot and f'"t:tgt2" -> "s:{NQN}";' in dot
    svg = topology.svg(spec, st)
    assert svg.count("<line ") == 4  # tgt1 and tgt2 to the subsystem, subsystem to namespace, namespace to gpu1
