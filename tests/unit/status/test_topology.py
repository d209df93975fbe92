"""`topology` drawings over the real lab captures (tests/fixtures/plan/lab-real)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from nvmeofctl.plan.planner import Plan, make_plan
from nvmeofctl.report import topology
from nvmeofctl.status.model import build_status

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def lab(real_spec, real_observed):
    """``lab(drop_gpu2_path=False)``: (spec, status) of the real lab read."""
    def make(drop_gpu2_path=False):
        if drop_gpu2_path:
            del real_observed["gpu2"]["nvme_host"]["controllers"]["nvme0"]
        return real_spec, build_status(real_spec, real_observed, make_plan(real_spec, real_observed), {})
    return make


def test_svg_is_valid_and_names_every_host_and_namespace(lab):
    spec, st = lab(drop_gpu2_path=True)
    root = ET.fromstring(topology.svg(spec, st))
    assert root.tag == SVG + "svg"
    texts = [t.text for t in root.iter(SVG + "text")]
    for name in ("tgt1", "gpu1", "gpu2", "train", "ckpt"):
        assert name in texts, name
    assert "/dev/nvme0n1 connected" in texts and "/dev/nvme1n1 connected" in texts and "missing" in texts
    colours = sorted(l.get("stroke") for l in root.iter(SVG + "line"))
    assert colours.count("#2e7d32") == 2 and colours.count("#c62828") == 1  # 2 paths live, gpu2's missing


def test_text_and_dot_say_the_same(lab):
    spec, st = lab()
    txt = topology.text(spec, st)
    assert "  subsystem nqn.2024-01.io.nvmeofctl.lab:ckpt\n    namespace ckpt (128 MiB)\n      -> gpu1 /dev/nvme1n1 connected\n" in txt
    dot = topology.dot(spec, st)
    assert dot.startswith('digraph "nvmeofctl lab" {') and dot.rstrip().endswith("}")
    assert '"n:nqn.2024-01.io.nvmeofctl.lab:train/1" -> "g:gpu2" [label="/dev/nvme0n1 connected", color="#2e7d32"];' in dot
    assert dot.count(" -> ") == 2 + 2 + 3  # target->subsystem, subsystem->namespace, namespace->node


def test_from_the_spec_alone_nothing_is_read(real_spec):
    spec = real_spec
    st = build_status(spec, {}, Plan([]), {})
    txt = topology.text(spec, st, live=False)
    assert "-> gpu2\n" in txt and "unknown" not in txt
    root = ET.fromstring(topology.svg(spec, st, live=False))
    assert {l.get("stroke") for l in root.iter(SVG + "line")} == {"#90a4ae", "#37474f"}


def test_hostile_names_are_escaped(lab):
    spec, st = lab()
    st.namespaces[0].name = 'x<script>"&'
    root = ET.fromstring(topology.svg(spec, st))  # still well-formed
    assert 'x<script>"&' in [t.text for t in root.iter(SVG + "text")]
    assert '"x<script>\\"&' in topology.dot(spec, st)
