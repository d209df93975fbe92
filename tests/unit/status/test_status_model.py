"""`status` over the real lab captures (tests/fixtures/plan/lab-real: the provisioned lab read by
plan's one round trip, see its README): the converged lab, then the faults an operator meets,
each made by one documented edit of the parsed capture."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from nvmeofctl.plan.planner import make_plan
from nvmeofctl.spec import load_spec
from nvmeofctl.status.model import build_status

REAL = Path(__file__).resolve().parents[2] / "fixtures" / "plan" / "lab-real"
TRAIN = "nqn.2024-01.io.nvmeofctl.lab:train"
CKPT = "nqn.2024-01.io.nvmeofctl.lab:ckpt"


@pytest.fixture
def spec(real_spec):
    return real_spec


@pytest.fixture
def observed(real_observed):
    return real_observed


def status(spec, observed, errors=None):
    return build_status(spec, observed, make_plan(spec, observed), errors or {})


def rows(st):
    return [(ns.name, p.node, p.state, p.device, p.drift) for ns in st.namespaces for p in ns.paths]


def test_the_provisioned_lab_matches_its_spec(spec, observed):
    st = status(spec, observed)
    assert st.drift == 0 and st.unexpected == []
    assert rows(st) == [("train", "gpu1", "connected", "/dev/nvme0n1", []),
                        ("train", "gpu2", "connected", "/dev/nvme0n1", []),
                        ("ckpt", "gpu1", "connected", "/dev/nvme1n1", [])]
    train = st.namespaces[0]
    assert (train.target, train.backing, train.size, train.exported) == ("tgt1", "/var/lib/nvmeofctl/train.img",
                                                                          256 << 20, "yes")
    assert train.uuid == "75508b74-261e-5f58-a877-00ab0a73f7c0"
    p = train.paths[0]
    assert (p.transport, p.traddr, p.trsvcid, p.iopolicy) == ("rdma", "192.168.100.11", "4420", "numa")
    assert p.controllers == [{"name": "nvme0", "state": "live"}]


def test_a_path_disconnected_by_hand_is_missing(spec, observed):
    """gpu2 after `nvme disconnect -d nvme0` (its only controller, to train): gone from sysfs."""
    del observed["gpu2"]["nvme_host"]["controllers"]["nvme0"]
    st = status(spec, observed)
    assert rows(st)[1] == ("train", "gpu2", "missing", None, [])
    assert st.drift == 1


def test_a_reconnecting_controller_is_degraded(spec, observed):
    observed["gpu1"]["nvme_host"]["controllers"]["nvme1"]["state"] = "connecting"
    st = status(spec, observed)
    assert rows(st)[2][:3] == ("ckpt", "gpu1", "degraded") and st.drift == 1


def test_a_wrong_policy_and_an_unwanted_controller_are_marked(spec, observed, tmp_path):
    """The spec asks round-robin (the capture has numa); gpu2 also holds a controller to ckpt,
    which the spec does not export to it (copied from gpu1's, as if connected by hand)."""
    text = (REAL / "cluster.yaml").read_text().replace(
        "reconnect: {ctrl_loss_tmo: -1, reconnect_delay: 5, keep_alive_tmo: 5}",
        "reconnect: {ctrl_loss_tmo: -1, reconnect_delay: 5, keep_alive_tmo: 5}\n  iopolicy: round-robin")
    text = text.replace("../../specs/good/secrets", str(REAL.parents[1] / "specs" / "good" / "secrets"))
    (tmp_path / "cluster.yaml").write_text(text)
    edited = load_spec(tmp_path / "cluster.yaml")
    stray = copy.deepcopy(observed["gpu1"]["nvme_host"]["controllers"]["nvme1"])
    stray["name"] = "nvme1"
    observed["gpu2"]["nvme_host"]["controllers"]["nvme1"] = stray
    st = status(edited, observed)
    assert [p.drift for ns in st.namespaces for p in ns.paths] == [["wrong policy: iopolicy numa -> round-robin"]] * 3
    assert [(u.node, u.controller, u.subsysnqn, u.managed) for u in st.unexpected] == [("gpu2", "nvme1", CKPT, False)]
    assert "left alone" in st.unexpected[0].note
    assert st.drift == 4


def test_an_export_missing_on_the_target_is_marked_with_the_plans_change(spec, observed):
    del observed["tgt1"]["nvmet"]["subsystems"][CKPT]["namespaces"]["1"]
    st = status(spec, observed)
    ckpt = st.namespaces[1]
    assert ckpt.exported == "missing"
    assert ckpt.drift == [f"subsystem {CKPT} / namespace 1: create mkdir; device_path=/var/lib/nvmeofctl/ckpt.img, "
                          "uuid=cf0ce369-6ea5-5f9f-9b5d-36a9fcbccddc, nguid=4904317c-2019-55e2-bf0d-27b2d69e8a4f; enable"]
    assert st.namespaces[0].exported == "yes" and st.namespaces[0].drift == []


def test_a_node_not_read_is_unknown_not_missing(spec, observed):
    del observed["gpu2"]
    st = status(spec, observed, {"gpu2": "connection refused"})
    assert rows(st)[1][:3] == ("train", "gpu2", "unknown")
    assert [(h.host, h.read, h.error) for h in st.hosts][2] == ("gpu2", False, "connection refused")
    d = st.to_dict()
    assert d["namespaces"][0]["paths"][1]["state"] == "unknown" and d["drift"] == 1
