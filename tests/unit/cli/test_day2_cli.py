"""`status`, `connect`, `disconnect`, `teardown` and `topology` end to end through the CLI, the
hosts answering with what the real lab answered (tests/fixtures/plan/lab-real/): exit codes,
JSON, and that a refusal never runs a playbook."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nvmeofctl.facts import hoststate
from nvmeofctl.facts.hoststate import HostState

REAL = Path(__file__).resolve().parents[2] / "fixtures" / "plan" / "lab-real"


@pytest.fixture
def lab(monkeypatch, real_states):
    """gather() answers from the captures; ``edits[host]`` replaces a host's sections; ``down``
    hosts are unreachable; no playbook may run."""
    ctl = {"edits": {}, "down": set(), "playbooks": []}

    def gather(spec_obj, names=None, timeout=120.0, extra=None):
        states = real_states(spec_obj, ctl["edits"])
        for name in ctl["down"]:
            h = spec_obj.host(name)
            states[name] = HostState(name, h.role, h.fabric.interface, False,
                                     "ssh 127.0.0.1:22: timed out after 15s", "unreachable")
        return {n: st for n, st in states.items() if names is None or n in names}

    def run_playbook(*args, **kwargs):
        ctl["playbooks"].append((args, kwargs))
        raise AssertionError("no playbook may run in this test")

    monkeypatch.setattr(hoststate, "gather", gather)
    import nvmeofctl.run.runner as runner
    monkeypatch.setattr(runner, "run_playbook", run_playbook)
    return ctl


SPEC = str(REAL / "cluster.yaml")
def test_status_exit_codes(lab, run_cli):
    rc, out, err = run_cli(["status", "-f", SPEC, "-o", "json"])
    assert rc == 0, err
    assert json.loads(out)["drift"] == 0
    lab["down"].add("gpu2")
    rc, out, err = run_cli(["status", "-f", SPEC, "-o", "json"])
    assert rc == 6 and json.loads(out)["hosts"][2]["read"] is False


def test_connect_refuses_what_the_node_is_not_given(lab, run_cli):
    rc, out, err = run_cli(["connect", "-f", SPEC, "--node", "gpu2", "--namespace", "ckpt"])
    assert rc == 2 and "is not exported to gpu2" in err
    rc, out, err = run_cli(["connect", "-f", SPEC, "--node", "gpu2", "-o", "json"])
    assert rc == 0 and json.loads(out)["changes"] == [] and lab["playbooks"] == []  # converged: no run


def test_teardown_needs_yes_off_a_terminal_and_check_changes_nothing(lab, run_cli):
    rc, out, err = run_cli(["teardown", "-f", SPEC])
    assert rc == 2 and "--yes" in err and lab["playbooks"] == []
    rc, out, err = run_cli(["teardown", "-f", SPEC, "--check", "-o", "json"])
    assert rc == 0, err
    doc = json.loads(out)
    assert [(h["host"], len(h["changes"])) for h in doc["hosts"]] == [("tgt1", 5), ("gpu1", 2), ("gpu2", 1)]
    assert doc["kept_backing_files"] == ["tgt1:/var/lib/nvmeofctl/train.img", "tgt1:/var/lib/nvmeofctl/ckpt.img"]


def test_teardown_refuses_when_a_host_cannot_be_read(lab, run_cli):
    lab["down"].add("gpu1")
    rc, out, err = run_cli(["teardown", "-f", SPEC, "--yes"])
    assert rc == 6 and "nothing changed" in err and lab["playbooks"] == []


def test_topology_from_the_spec_reads_nothing(lab, run_cli, monkeypatch):
    monkeypatch.setattr(hoststate, "gather", lambda *a, **k: (_ for _ in ()).throw(AssertionError("read")))
    rc, out, err = run_cli(["topology", "-f", SPEC, "--from-spec"])
    assert rc == 0 and out.startswith("cluster lab: rdma fabric")
