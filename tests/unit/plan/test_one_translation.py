"""One translation of the spec (plan.desired): plan and health read the same desired state, so
they cannot disagree. Host states are the real lab captures:
  tests/fixtures/plan/lab-real/<host>.txt            the plan's one-round-trip dump (facts.hoststate)
  tests/fixtures/health/probe/lab-real/<host>-healthy.txt   the health probe (facts.probe)
both taken from the same provisioned lab (kernel 6.12.95, nvme-cli 2.3; see their PROVENANCE files),
edited below by exact, counted replacements. Expected values are literals."""

from __future__ import annotations

from pathlib import Path

import pytest

from nvmeofctl.facts import hoststate
from nvmeofctl.facts.probe import parse_probe_output
from nvmeofctl.health import checks_nvme, checks_rdma
from nvmeofctl.health.expect import expectations_from_desired, expectations_from_spec
from nvmeofctl.health.model import Status
from nvmeofctl.plan import kmods
from nvmeofctl.plan.desired import desired_state, host_vars
from nvmeofctl.plan.planner import make_plan
from nvmeofctl.resources import load_module_utils
from nvmeofctl.spec import SpecValidationError, load_spec, parse_spec

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PLAN_REAL = FIXTURES / "plan" / "lab-real"
PROBE_REAL = FIXTURES / "health" / "probe" / "lab-real"
TRAIN = "nqn.2024-01.io.nvmeofctl.lab:train"
CKPT = "nqn.2024-01.io.nvmeofctl.lab:ckpt"
GPU1_HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:bce6f754-ea93-5cb5-89d7-177f392bcd4b"
GPU2_HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:452a16fc-bb18-5cfa-ba28-8e97503bc225"


def edit(text: str, old: str, new: str, count: int) -> str:
    assert text.count(old) == count, f"capture edit: expected {count}x {old!r}, found {text.count(old)}"
    return text.replace(old, new)


def _spec(tmp_path, reconnect: str | None = None):
    text = (PLAN_REAL / "cluster.yaml").read_text()
    text = edit(text, "../../specs/good/secrets", str(FIXTURES / "specs/good/secrets"), 2)
    if reconnect:
        text = edit(text, "{ctrl_loss_tmo: -1, reconnect_delay: 5, keep_alive_tmo: 5}", reconnect, 1)
    (tmp_path / "cluster.yaml").write_text(text)
    return load_spec(tmp_path / "cluster.yaml")


def _plan(spec, gpu1_dump: str):
    observed = {}
    for host in spec.hosts:
        text = gpu1_dump if host.name == "gpu1" else (PLAN_REAL / f"{host.name}.txt").read_text()
        sections = hoststate.split_sections(text)
        observed[host.name] = hoststate.HostState(host.name, host.role, host.fabric.interface, True,
                                                  preflight=hoststate.parse_kv(sections["preflight"]),
                                                  sections=sections).observed()
    return make_plan(spec, observed)


def test_expectations_are_the_desired_state_of_the_real_lab(tmp_path):
    spec = _spec(tmp_path)
    exp = expectations_from_desired(desired_state(spec))
    assert exp == expectations_from_spec(spec)
    gpu1, tgt1 = exp.hosts["gpu1"], exp.hosts["tgt1"]
    assert [(e.nqn, e.target, e.target_ips) for e in gpu1.exports] == [
        (TRAIN, "tgt1", ("192.168.100.11",)), (CKPT, "tgt1", ("192.168.100.11",))]
    assert (gpu1.host_nqn, gpu1.ctrl_loss_tmo, gpu1.reconnect_delay, gpu1.keep_alive_tmo, gpu1.iopolicy) == (
        GPU1_HOSTNQN, -1, 5, 5, "numa")
    # the device rdma_link would create (soft-RoCE, none named in the spec), the MTU and ToS it sets
    assert (gpu1.rdma_device, gpu1.rdma_device_explicit, gpu1.soft_roce, gpu1.mtu, gpu1.roce_tos) == (
        "rxe_eth1", False, True, 1500, 106)
    assert tgt1.subsystems == {TRAIN: (GPU1_HOSTNQN, GPU2_HOSTNQN), CKPT: (GPU1_HOSTNQN,)}
    assert (tgt1.ips, exp.fabric.transport, exp.fabric.port) == (("192.168.100.11",), "rdma", 4420)
    assert exp.peers("tgt1") == ["gpu1", "gpu2"]
    # the inventory apply hands Ansible is the same translation
    hv = host_vars(spec)
    assert hv["gpu1"]["nvmeofctl_nvme_host"]["hostnqn"] == gpu1.host_nqn
    assert [s["nqn"] for s in hv["tgt1"]["nvmeofctl_nvmet"]["subsystems"]] == [TRAIN, CKPT]


def test_converged_lab_plan_is_empty_and_health_ok(tmp_path):
    spec = _spec(tmp_path)
    assert _plan(spec, (PLAN_REAL / "gpu1.txt").read_text()).changes == []
    exp = expectations_from_spec(spec)
    facts = parse_probe_output("gpu1", (PROBE_REAL / "gpu1-healthy.txt").read_text())
    assert {f.status for f in checks_nvme.check_nvme_host(facts, exp)} == {Status.ok}


def test_ctrl_loss_tmo_rounded_by_the_kernel_is_converged_for_plan_and_health(tmp_path):
    """ctrl_loss_tmo 600 every 7 s: the kernel keeps ceil(600/7) = 86 attempts and shows 86 * 7 = 602.
    Both captures edited to what that kernel shows; neither plan nor health may ask for a change."""
    spec = _spec(tmp_path, "{ctrl_loss_tmo: 600, reconnect_delay: 7, keep_alive_tmo: 5}")
    dump = (PLAN_REAL / "gpu1.txt").read_text()
    dump = edit(dump, "ctrl_loss_tmo\toff", "ctrl_loss_tmo\t602", 2)
    dump = edit(dump, "reconnect_delay\t5", "reconnect_delay\t7", 2)
    assert [(h.host, h.changes) for h in _plan(spec, dump).hosts if h.host == "gpu1"] == [("gpu1", [])]
    probe = (PROBE_REAL / "gpu1-healthy.txt").read_text()
    probe = edit(edit(probe, "ctrl_loss_tmo\toff", "ctrl_loss_tmo\t602", 2), "reconnect_delay\t5", "reconnect_delay\t7", 2)
    found = [f for f in checks_nvme.check_nvme_host(parse_probe_output("gpu1", probe), expectations_from_spec(spec))
             if f.check == "nvme_reconnect"]
    assert [(f.device, f.status, f.observed) for f in found] == [
        (TRAIN, Status.ok, "ctrl_loss_tmo=602 reconnect_delay=7 kato=5"),
        (CKPT, Status.ok, "ctrl_loss_tmo=602 reconnect_delay=7 kato=5")]
    # and the unedited controllers (off, every 5 s) are a change for plan and a warning for health alike
    unedited = _plan(spec, (PLAN_REAL / "gpu1.txt").read_text())
    assert [c.detail for c in unedited.changes if c.host == "gpu1"] == [
        "nvme0: ctrl_loss_tmo off -> 602; reconnect_delay 5 -> 7",
        "nvme1: ctrl_loss_tmo off -> 602; reconnect_delay 5 -> 7"]
    found = checks_nvme.check_nvme_host(parse_probe_output("gpu1", (PROBE_REAL / "gpu1-healthy.txt").read_text()),
                                        expectations_from_spec(spec))
    assert {f.status for f in found if f.check == "nvme_reconnect"} == {Status.warn}


# ---- MTU: one bound, from module_utils/validators.py, for the spec and rdma_link -------------------
SPEC_TCP = ("name: c\nfabric: {transport: tcp, mtu: MTU}\nhosts:\n"
            "  - {name: t1, role: target, ssh: {address: 10.0.0.1}, fabric: {interface: eth1, ips: [10.9.0.1]}}\n")


@pytest.mark.parametrize("mtu", [576, 9000, 9216])
def test_mtu_the_spec_accepts_rdma_link_sets(mtu):
    assert parse_spec(SPEC_TCP.replace("MTU", str(mtu))).fabric.mtu == mtu
    assert load_module_utils("rdma").normalize({"interface": "eth1", "mtu": mtu})["mtu"] == mtu


@pytest.mark.parametrize("mtu", [575, 9217, 9978])
def test_mtu_rdma_link_refuses_the_spec_refuses(mtu):
    with pytest.raises(SpecValidationError) as exc:
        parse_spec(SPEC_TCP.replace("MTU", str(mtu)), source="c.yaml")
    assert [str(d) for d in exc.value.details] == [
        f"c.yaml:2 fabric.mtu: MTU {mtu} is outside 576..9216 "
        "(the range rdma_link sets; jumbo frames are usually 9000)"]
    with pytest.raises(ValueError):
        load_module_utils("rdma").normalize({"interface": "eth1", "mtu": mtu})


# ---- kernel modules: one list (plan/kmods.py) for the probe, preflight and health ----------------
def test_kernel_modules_by_role_and_transport():
    assert kmods.needed("target", "rdma", True) == ("rdma_rxe", "nvmet", "nvmet_rdma")
    assert kmods.needed("gpu_node", "rdma", False) == ("nvme_rdma",)
    assert kmods.needed("gpu_node", "tcp", True) == ("nvme_tcp",)  # no Soft-RoCE on a TCP fabric
    assert kmods.needed("target", "tcp", False) == ("nvmet", "nvmet_tcp")
    with pytest.raises(ValueError):
        kmods.needed("initiator", "rdma", False)
    assert hoststate.MODULES is kmods.PROBED  # what the preflight probe asks each host about


def test_preflight_and_health_name_the_same_missing_module(tmp_path):
    from nvmeofctl.plan.preflight import evaluate

    spec = _spec(tmp_path)
    text = edit((PLAN_REAL / "gpu2.txt").read_text(), "mod_nvme_rdma=yes", "mod_nvme_rdma=no", 1)
    sections = hoststate.split_sections(text)
    state = hoststate.HostState("gpu2", "gpu_node", "eth1", True,
                                preflight=hoststate.parse_kv(sections["preflight"]), sections=sections)
    assert [str(p) for p in evaluate(spec, {"gpu2": state})] == [
        "gpu2: kernel 6.12.95+deb12-amd64 has no module nvme_rdma"]
    probe = (PROBE_REAL / "gpu2-healthy.txt").read_text()
    probe = edit(probe, "\nnvme_rdma\n", "\n", 2)  # not in /proc/modules, nor in /sys/module (not built in)
    (f,) = checks_rdma.check_modules(parse_probe_output("gpu2", probe), expectations_from_spec(spec))
    assert (f.status, f.observed, f.expected) == (Status.fail, "missing nvme_rdma", "rdma_rxe, nvme_rdma")
