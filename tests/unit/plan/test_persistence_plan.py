"""The plan covers boot persistence (plan/persistence.py): the planner reads digests and modes of
the files the modules write and runs the modules' own persistence planning on them, so an empty
plan means a module run would change nothing (apply skips that host)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from nvmeofctl.plan import persistence
from nvmeofctl.plan.planner import plan_host
from nvmeofctl.resources import load_module_utils
from nvmeofctl.spec import load_spec

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
LAB = FIXTURES / "specs" / "good" / "lab.yaml"
persist = load_module_utils("persist")


@pytest.fixture(scope="module")
def spec():
    return load_spec(LAB)


def _empty_host(paths):
    """What state_command prints on a host that has none of the files: nothing."""
    return persist.parse_state("", paths)


@pytest.mark.parametrize("name", ["stor1", "gpu1", "gpu2"])
def test_the_paths_read_cover_every_question_the_plan_asks(spec, name):
    host = spec.host(name)
    paths, sections = persistence.read_sections(spec, host)
    hp = plan_host(spec, host, {"files": _empty_host(paths)})
    assert hp.error == "" and hp.complete
    objects = {(c.action, c.object) for c in hp.changes}
    unit = "nvmeofctl-nvmet.service" if host.role == "target" else "nvmeofctl-connect.service"
    assert ("create", f"file /etc/systemd/system/{unit}") in objects, objects
    assert ("update", f"systemd {unit}") in objects, objects
    assert ("create", "file /usr/local/lib/nvmeofctl/nvmeofctl-boot.pyz") in objects, objects
    # the RDMA link's boot script is read too (planned when the rdma dump is there: lab test)
    assert "/usr/local/lib/nvmeofctl/rdma-restore.sh" in paths, paths
    assert "/usr/local/lib/nvmeofctl/rdma-device" in paths, paths  # the device the script re-creates
    assert [s for s, _ in sections] == (["persist", "rdma-units", "nvmet-files"] if host.role == "target"
                                        else ["persist", "rdma-units"])
    # a path the dump did not cover is a plan error, never a silent "no change"
    short = plan_host(spec, host, {"files": _empty_host(paths[1:])})
    assert paths[0] in short.error and not short.converged


def test_without_the_files_read_a_host_is_never_called_converged(spec):
    """Older reads (no persist section) plan the domains only: apply must still run the module."""
    hp = plan_host(spec, spec.host("gpu2"), {"nvme_host": {"controllers": {}, "managed": []}})
    assert not hp.complete and not hp.converged


def test_files_written_as_the_module_writes_them_plan_nothing_and_drift_is_seen(spec, tmp_path):
    """nvme_host's files written by persist.apply from the module_utils plan (as the module does),
    read back by the real state_command, give an empty plan; an edited unit shows as exactly one
    rewrite + enable. Same functions, other directories (tmp_path)."""
    nh = load_module_utils("nvme_host")
    want = nh.normalize_desired(persistence.desired_mod.nvme_host_args(spec, spec.host("gpu1")))
    dirs = [str(tmp_path / "state"), str(tmp_path / "lib"), str(tmp_path / "etc/systemd/system")]
    prog = persistence.program()
    texts = persistence.texts(nh.template_vars(persistence.HOST_PYTHON, dirs[0], dirs[1]))  # as the action plugin
    todo = nh.file_changes(want, prog, texts, *dirs, True)
    done, failures = persist.apply(todo)  # no systemctl: the wants link is made directly
    assert failures == [] and len(done) == len(todo)
    rec = persist.Recorder()
    nh.file_changes(want, prog, texts, *dirs, True, fs=rec)

    def read():
        out = subprocess.run(["bash", "-c", persist.state_command(sorted(rec.paths))], capture_output=True,
                             text=True, check=True).stdout
        return persist.parse_state(out, sorted(rec.paths))

    assert nh.file_changes(want, prog, texts, *dirs, True, fs=read()) == []
    unit = tmp_path / "etc/systemd/system/nvmeofctl-connect.service"
    unit.write_text(unit.read_text() + "# edited\n")
    got = nh.file_changes(want, prog, texts, *dirs, True, fs=read())
    assert [(c["action"], c["object"]) for c in got] == [
        ("update", f"file {unit}"), ("update", "systemd nvmeofctl-connect.service")]
    assert got == nh.file_changes(want, prog, texts, *dirs, True)  # the module's own view agrees


def test_a_second_rail_has_its_own_boot_files_read_and_planned():
    """A host with two rails (the two-rail lab's spec, tests/fixtures/plan/lab-rails/): plan reads
    rail 2's boot script, device file and unit beside rail 1's, and on a host holding none of
    them (rail 2's rdma dump from the real read) plans to write them."""
    spec = load_spec(FIXTURES / "plan" / "lab-rails" / "cluster.yaml")
    host = spec.host("gpu1")
    paths, _sections = persistence.read_sections(spec, host)
    for path in ("/usr/local/lib/nvmeofctl/rdma-restore.sh", "/usr/local/lib/nvmeofctl/rdma-restore-eth2.sh",
                 "/usr/local/lib/nvmeofctl/rdma-device-eth2", "/etc/systemd/system/nvmeofctl-rdma-eth2.service"):
        assert path in paths, paths
    from nvmeofctl.facts.hoststate import HostState, parse_kv, split_sections

    sections = split_sections((FIXTURES / "plan" / "lab-rails" / "gpu1.txt").read_text())
    observed = HostState("gpu1", "gpu_node", "eth1", True, preflight=parse_kv(sections["preflight"]),
                         sections=sections).observed()
    observed["files"] = _empty_host(paths)
    hp = plan_host(spec, host, observed)
    assert hp.error == ""
    rail2 = [(c.action, c.object) for c in hp.changes if "eth2" in c.object]
    assert rail2 == [("create", "file /usr/local/lib/nvmeofctl/rdma-restore-eth2.sh"),
                     ("create", "file /usr/local/lib/nvmeofctl/rdma-device-eth2"),
                     ("create", "file /etc/systemd/system/nvmeofctl-rdma-eth2.service"),
                     ("update", "systemd nvmeofctl-rdma-eth2.service")]


def test_a_rail_the_spec_dropped_is_planned_away(tmp_path):
    """gpu1 of the two-rail lab read (tests/fixtures/plan/lab-rails/gpu1.txt) planned against its
    spec WITHOUT rail 2: the rail's boot files the host has are planned for removal, as the role
    module removes them. Which files the host has comes from rdma.rail_units_command run for real
    (bash) on a folder holding the files a rail-2 deploy writes, its paths then read as the host's."""
    import shutil

    rdma = load_module_utils("rdma")
    lib, unit = tmp_path / "lib", tmp_path / "unit"
    (unit / persist.WANTS).mkdir(parents=True)
    lib.mkdir()
    for f in (lib / "rdma-restore-eth2.sh", lib / "rdma-device-eth2", unit / "nvmeofctl-rdma-eth2.service",
              lib / "rdma-restore.sh", unit / "nvmeofctl-rdma.service"):
        f.write_text("x")
    (unit / persist.WANTS / "nvmeofctl-rdma-eth2.service").symlink_to(unit / "nvmeofctl-rdma-eth2.service")
    listing = subprocess.run([shutil.which("bash"), "-c", rdma.rail_units_command(str(lib), str(unit))],
                             capture_output=True, text=True, check=True).stdout
    assert len(listing.splitlines()) == 4  # rail 1's files are not rail units
    listing = listing.replace(str(lib), "/usr/local/lib/nvmeofctl").replace(str(unit), "/etc/systemd/system")

    text = (FIXTURES / "plan" / "lab-rails" / "cluster.yaml").read_text()
    one_rail = "\n".join(line for line in text.splitlines()
                         if "rails:" not in line and "{interface: eth2" not in line) + "\n"
    spec_file = tmp_path / "cluster.yaml"
    spec_file.write_text(one_rail)
    spec = load_spec(spec_file)
    assert spec.host("gpu1").rails == []
    from nvmeofctl.facts.hoststate import HostState, parse_kv, split_sections

    sections = split_sections((FIXTURES / "plan" / "lab-rails" / "gpu1.txt").read_text())
    observed = HostState("gpu1", "gpu_node", "eth1", True, preflight=parse_kv(sections["preflight"]),
                         sections=sections).observed()
    observed.pop("files")  # the boot files' digests: not what this test is about
    observed["rdma_units"] = listing
    hp = plan_host(spec, spec.host("gpu1"), observed)
    assert hp.error == ""
    assert [(c.action, c.object, c.reason) for c in hp.changes if "eth2" in c.object] == [
        ("disable", "systemd nvmeofctl-rdma-eth2.service", "rail eth2 is no longer in rdma_rails"),
        ("remove", "file /usr/local/lib/nvmeofctl/rdma-restore-eth2.sh", "rail eth2 is no longer in rdma_rails"),
        ("remove", "file /usr/local/lib/nvmeofctl/rdma-device-eth2", "rail eth2 is no longer in rdma_rails"),
        ("remove", "file /etc/systemd/system/nvmeofctl-rdma-eth2.service", "rail eth2 is no longer in rdma_rails")]
    # with rail 2 in the spec, the same host has nothing stale
    both = load_spec(FIXTURES / "plan" / "lab-rails" / "cluster.yaml")
    two = plan_host(both, both.host("gpu1"), observed)
    assert two.error == "" and [c for c in two.changes if c.reason.startswith("rail eth2")] == []
