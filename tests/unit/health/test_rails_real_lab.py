"""Health, paths and plan on REAL reads of a two-rail lab (issue #10, scenario 1), captured with
``tests/fixtures/health/probe/lab-rails/capture.py`` (the health probe's stdout) and
``tests/fixtures/plan/lab-multipath/capture.py`` (plan's one read) from
``nvmeofctl lab up --name dev --targets 2 --gpu-nodes 1 --rails 2 --shared-disk`` after
``nvmeofctl apply`` of the ``cluster.yaml`` beside them: every host on eth1 (rail 1) and eth2
(rail 2); ``shared`` served by tgt1 and tgt2, ``railed`` by tgt1 only. The ``-tgt1-rail1-down``
files were read 25 s after ``ip link set eth1 down`` on tgt1. Expected values are written out
from what the captures show, never computed by the code under test."""

from __future__ import annotations

from pathlib import Path

import pytest

from nvmeofctl.facts.hoststate import HostState, parse_kv, split_sections
from nvmeofctl.facts.probe import parse_probe_output
from nvmeofctl.health.checks import run_checks
from nvmeofctl.health.expect import expectations_from_spec
from nvmeofctl.health.model import Status, exit_code_for
from nvmeofctl.plan import paths as paths_mod
from nvmeofctl.plan.planner import make_plan
from nvmeofctl.rollout import model
from nvmeofctl.spec import load_spec

FIX = Path(__file__).resolve().parents[2] / "fixtures"
PROBE = FIX / "health" / "probe" / "lab-rails"
PLAN = FIX / "plan" / "lab-rails"
RAILED = "nqn.2024-01.io.nvmeofctl.dev:railed"
SHARED = "nqn.2024-01.io.nvmeofctl.dev:shared"


@pytest.fixture(scope="module")
def spec():
    return load_spec(PROBE / "cluster.yaml")


def findings(spec, state: str = ""):
    facts = {h.name: parse_probe_output(h.name, (PROBE / f"{h.name}{state}.txt").read_text()) for h in spec.hosts}
    return run_checks(facts, expectations_from_spec(spec))


def observed(spec, state: str = "") -> dict:
    out = {}
    for h in spec.hosts:
        sections = split_sections((PLAN / f"{h.name}{state}.txt").read_text())
        st = HostState(h.name, h.role, h.fabric.interface, True, preflight=parse_kv(sections["preflight"]),
                       sections=sections, persist_paths=[])
        out[h.name] = st.observed()
    return out


def test_the_probe_reads_every_rails_interface(spec):
    facts = parse_probe_output("tgt1", (PROBE / "tgt1.txt").read_text())
    assert sorted(facts.netifs) == ["eth1", "eth2"] and facts.netif.name == "eth1"
    assert (facts.netifs["eth2"].operstate, facts.netifs["eth2"].mtu) == ("up", 1500)


def test_healthy_two_rail_lab_checks_each_rail_and_is_ok(spec):
    found = findings(spec)
    assert exit_code_for(found) == 0, [(f.host, f.check, f.observed) for f in found if f.status != Status.ok]
    rails = {(f.host, f.check, f.device) for f in found if f.check in ("fabric_interface", "rdma_device")}
    assert rails == {(h, c, d) for h in ("tgt1", "tgt2", "gpu1")
                     for c, d in (("fabric_interface", "eth1"), ("fabric_interface", "eth2"),
                                  ("rdma_device", "rxe_eth1"), ("rdma_device", "rxe_eth2"))}
    paths = {f.device: f.observed for f in found if f.check == "nvme_paths"}
    assert paths == {
        f"{SHARED} nsid 1": "4/4 paths carry I/O: nvme0 tgt1 192.168.100.11 optimized, nvme2 tgt1 192.168.101.11 "
                            "optimized, nvme1 tgt2 192.168.100.12 non-optimized, nvme3 tgt2 192.168.101.12 non-optimized",
        f"{RAILED} nsid 1": "2/2 paths carry I/O: nvme4 tgt1 192.168.100.11 optimized, nvme5 tgt1 192.168.101.11 "
                            "optimized"}


def test_one_rail_down_is_degraded_naming_the_path_not_failed(spec):
    found = findings(spec, "-tgt1-rail1-down")
    assert exit_code_for(found) == 10
    bad = [(f.host, f.check, f.status.value, f.device, f.observed) for f in found if f.status in (Status.warn,
                                                                                                 Status.fail)]
    degraded = "(rail 1 of 2, eth1: degraded; rail 2 (eth2) up)"
    assert bad == [
        ("tgt1", "fabric_interface", "warn", "eth1", f"operstate down {degraded}"),
        ("tgt1", "fabric_ip", "warn", "eth1", f"none {degraded}"),
        ("tgt1", "rdma_port", "warn", "rxe_eth1/1", f"DOWN/DISABLED, Ethernet {degraded}"),
        ("tgt1", "roce_v2_gid", "warn", "rxe_eth1/1",
         f"0:fe80:0000:0000:0000:5054:00ff:fefa:0001(RoCE v2) {degraded}"),
        ("gpu1", "nvme_controller", "warn", f"{SHARED} via tgt1 192.168.100.11",
         "nvme0 connecting; I/O continues on nvme1 192.168.100.12, nvme2 192.168.101.11, nvme3 192.168.101.12"),
        ("gpu1", "nvme_controller", "warn", f"{RAILED} via tgt1 192.168.100.11",
         "nvme4 connecting; I/O continues on nvme5 192.168.101.11"),
        ("gpu1", "nvme_paths", "warn", f"{SHARED} nsid 1",
         "3/4 paths carry I/O: nvme2 tgt1 192.168.101.11 optimized, nvme1 tgt2 192.168.100.12 non-optimized, "
         "nvme3 tgt2 192.168.101.12 non-optimized; down: tgt1 192.168.100.11 (nvme0 connecting)"),
        ("gpu1", "nvme_paths", "warn", f"{RAILED} nsid 1",
         "1/2 paths carry I/O: nvme5 tgt1 192.168.101.11 optimized; down: tgt1 192.168.100.11 (nvme4 connecting)"),
    ]


def test_every_rail_down_is_still_a_failure(spec):
    """No rail passing: nothing carries the fabric, so nothing is softened (the rail-1-down
    capture with rail 2's interface also read as down)."""
    from nvmeofctl.health import checks

    text = (PROBE / "tgt1-tgt1-rail1-down.txt").read_text()
    marker = "### netif eth2\nexists=1\nmtu=1500\noperstate=up\n"
    assert text.count(marker) == 1
    facts = parse_probe_output("tgt1", text.replace(marker, marker.replace("operstate=up", "operstate=down")))
    found = checks.rail_checks(facts, expectations_from_spec(spec))
    assert [(f.check, f.device) for f in found if f.status == Status.fail] == [
        ("fabric_interface", "eth1"), ("fabric_ip", "eth1"), ("rdma_port", "rxe_eth1/1"), ("roce_v2_gid", "rxe_eth1/1"),
        ("fabric_interface", "eth2")]


def test_paths_are_per_rail_and_rollout_counts_them(spec):
    got = [(p.namespace, p.target, p.address, p.controller, p.state, p.carries_io)
           for p in paths_mod.paths(spec, observed(spec, "-tgt1-rail1-down"))]
    assert got == [("shared", "tgt1", "192.168.100.11", "nvme0", "connecting", False),
                   ("shared", "tgt1", "192.168.101.11", "nvme2", "live", True),
                   ("shared", "tgt2", "192.168.100.12", "nvme1", "live", True),
                   ("shared", "tgt2", "192.168.101.12", "nvme3", "live", True),
                   ("railed", "tgt1", "192.168.100.11", "nvme4", "connecting", False),
                   ("railed", "tgt1", "192.168.101.11", "nvme5", "live", True)]
    # taking tgt1 out: shared keeps tgt2's paths; railed has only tgt1
    assert model.lost_paths(spec, observed(spec), {"tgt1"}) == [
        f"gpu1: namespace railed ({RAILED}) would lose its last live path: only tgt1 serves it"]


def test_the_converged_two_rail_lab_plans_nothing(spec):
    """Both rails' RDMA links and ports as the spec wants them (persistence files not read here:
    the captures hold their digests, the unit test of the reads is test_persistence_plan)."""
    plan = make_plan(spec, {name: {k: v for k, v in obs.items() if k != "files"}
                            for name, obs in observed(spec).items()})
    assert [(h.host, h.error, [c.object for c in h.changes]) for h in plan.hosts] == [
        ("tgt1", "", []), ("tgt2", "", []), ("gpu1", "", [])]


def test_a_wrong_mtu_on_one_rail_stays_a_failure(spec):
    """Configuration is not a link state: rail 2's MTU off the spec fails even though rail 1 is fine."""
    from nvmeofctl.health import checks

    text = (PROBE / "tgt1.txt").read_text()
    marker = "### netif eth2\nexists=1\nmtu=1500\n"
    assert text.count(marker) == 1
    facts = parse_probe_output("tgt1", text.replace(marker, marker.replace("mtu=1500", "mtu=1400")))
    found = checks.rail_checks(facts, expectations_from_spec(spec))
    assert [(f.check, f.device, f.status.value, f.observed) for f in found if f.status != Status.ok
            and f.status != Status.na] == [("mtu", "eth2", "fail", "1400")]
