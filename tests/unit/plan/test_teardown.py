"""`teardown` planning (plan/teardown.py): the modules' own diff with "nothing" options, over the
real lab captures (tests/fixtures/plan/lab-real), and the boot files' removal planned from the
real state_command read of files written as the modules write them (tmp dirs)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from nvmeofctl.plan import persistence, teardown
from nvmeofctl.plan.planner import plan_host
from nvmeofctl.resources import load_module_utils
from nvmeofctl.spec import load_spec

REAL = Path(__file__).resolve().parents[2] / "fixtures" / "plan" / "lab-real"
persist = load_module_utils("persist")


@pytest.fixture
def spec(real_spec):
    return real_spec


def test_the_provisioned_lab_is_torn_down_node_paths_and_exports(spec, real_observed):
    plans = {h.name: plan_host(spec, h, real_observed[h.name], args=teardown.teardown_args(spec, h))
             for h in spec.hosts}
    got = {n: [(c.action, c.object) for c in p.changes] for n, p in plans.items()}
    assert got["gpu1"] == [("disconnect", "controller:nvme0"), ("disconnect", "controller:nvme1")]
    assert got["gpu2"] == [("disconnect", "controller:nvme0")]
    assert got["tgt1"] == [
        ("delete", "port 1"),
        ("delete", "subsystem nqn.2024-01.io.nvmeofctl.lab:ckpt"),
        ("delete", "subsystem nqn.2024-01.io.nvmeofctl.lab:train"),
        ("delete", "host nqn.2014-08.org.nvmexpress:uuid:452a16fc-bb18-5cfa-ba28-8e97503bc225"),
        ("delete", "host nqn.2014-08.org.nvmexpress:uuid:bce6f754-ea93-5cb5-89d7-177f392bcd4b"),
    ]
    assert teardown.kept_backing_files(spec, ["tgt1"]) == ["tgt1:/var/lib/nvmeofctl/train.img",
                                                          "tgt1:/var/lib/nvmeofctl/ckpt.img"]


def test_args_keep_identity_drop_connections_and_boot_files(spec):
    args = teardown.teardown_args(spec, spec.host("gpu2"))
    nh = args["nvme_host"]
    assert nh["connections"] == [] and nh["persist"] is False and nh["allow_disruptive"] is True
    assert nh["hostnqn"] == spec.host("gpu2").host_nqn
    assert args["rdma"]["persist"] is False and args["rdma"]["interface"] == "eth1"
    hv = teardown.host_vars(teardown.teardown_args(spec, spec.host("tgt1")))
    assert hv["nvmeofctl_nvmet"]["subsystems"] == [] and hv["nvmeofctl_nvmet"]["persist"] is False


def _read(paths):
    out = subprocess.run(["bash", "-c", persist.state_command(sorted(paths))], capture_output=True, text=True,
                         check=True).stdout
    return persist.parse_state(out, sorted(paths))


def test_boot_files_removed_then_a_second_teardown_plans_nothing(spec, tmp_path):
    """A GPU node's and a target's boot files written by persist.apply as the modules write them,
    read back by the real state_command: removal planned, applied, then nothing left to plan."""
    nh, nvmet, rdma = load_module_utils("nvme_host"), load_module_utils("nvmet"), load_module_utils("rdma")
    state, lib, unit = str(tmp_path / "state"), str(tmp_path / "lib"), str(tmp_path / "etc/systemd/system")
    want = nh.normalize_desired(persistence.desired_mod.nvme_host_args(spec, spec.host("gpu1")))
    texts = persistence.texts(nh.template_vars(persistence.HOST_PYTHON, state, lib))
    rdesired = rdma.normalize({"interface": "eth1", "soft_roce": True})
    rtexts = persistence.texts(rdma.template_vars(rdesired, lib))
    written = nh.file_changes(want, persistence.program(), texts, state, lib, unit, True)
    written += rdma.persist_changes(rdesired, "rxe_eth1", rtexts, lib, unit)[0]
    assert persist.apply(written)[1] == []
    rec = persist.Recorder()
    nh.file_changes(want, persistence.program(), None, state, lib, unit, False, fs=rec)
    rdma.persist_removal(lib, unit, fs=rec)
    nvmet.persist_removal(state, lib, unit, fs=rec)
    paths = rec.paths | {c["key"][0] for c in written if c["object"].startswith("file ")}

    none = nh.normalize_desired(teardown.teardown_args(spec, spec.host("gpu1"))["nvme_host"])
    gone = nh.file_changes(none, persistence.program(), None, state, lib, unit, False, fs=_read(paths))
    gone += rdma.persist_removal(lib, unit, fs=_read(paths))
    assert [(c["action"], c["object"].replace(str(tmp_path), "")) for c in gone] == [
        ("update", "file /state/initiator-managed.json"),  # the record stays, listing nothing
        ("disable", "systemd nvmeofctl-connect.service"),
        ("remove", "file /etc/systemd/system/nvmeofctl-connect.service"),
        ("remove", "file /state/connections.json"),
        ("remove", "file /lib/nvmeofctl-boot.pyz"),
        ("disable", "systemd nvmeofctl-rdma.service"),
        ("remove", "file /lib/rdma-restore.sh"),
        ("remove", "file /lib/rdma-device"),
        ("remove", "file /etc/systemd/system/nvmeofctl-rdma.service"),
    ]
    assert persist.apply(gone)[1] == []
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file() or p.is_symlink())
    assert left == ["state/initiator-managed.json"]
    again = nh.file_changes(none, persistence.program(), None, state, lib, unit, False, fs=_read(paths))
    again += rdma.persist_removal(lib, unit, fs=_read(paths))
    assert again == []
    # a target's boot files: the program stays while a connect unit uses it
    assert nvmet.persist_removal(state, lib, unit, fs=_read(paths)) == []
