"""Which playbook an apply runs: the single parallel play unless targets change exports that
GPU nodes change paths to (then release -> targets -> GPU nodes). Plans are written out by
hand, as the planner reports them for the lab (objects as in tests/lab/test_02_provision.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

from nvmeofctl.plan.ordering import order_for
from nvmeofctl.plan.planner import Change, HostPlan, Plan

REPO = Path(__file__).resolve().parents[3]
SCRATCH = "nqn.2024-01.io.nvmeofctl.test:scratch"


def _c(host, concern, obj, action, disruptive=False):
    return Change(host, concern, obj, action, "", disruptive, "")


def _plan(*changes):
    hosts = {}
    for c in changes:
        hosts.setdefault(c.host, HostPlan(c.host, "target" if c.concern == "nvmet" else "gpu_node")).changes.append(c)
    return Plan(list(hosts.values()))


def test_converged_redeploy_is_one_parallel_play():
    o = order_for(Plan([HostPlan("tgt1", "target"), HostPlan("gpu1", "gpu_node")]))
    assert (o.playbook, o.release, o.ordered) == ("site.yml", [], False)


def test_gpu_only_or_target_only_changes_stay_parallel():
    gpu_only = _plan(_c("gpu1", "nvme_host", "subsystem:x", "set-iopolicy"))
    target_only = _plan(_c("tgt1", "nvmet", "namespace " + SCRATCH + "/2", "create"))
    assert order_for(gpu_only).playbook == "site.yml"
    assert order_for(target_only).playbook == "site.yml"


def test_removed_export_releases_gpu_paths_before_the_target_removes_it():
    plan = _plan(
        _c("tgt1", "nvmet", "subsystem " + SCRATCH, "delete", True),
        _c("gpu2", "nvme_host", "controller:nvme2", "disconnect", True),
        _c("gpu1", "nvme_host", "subsystem:x", "set-iopolicy"),
    )
    o = order_for(plan)
    assert (o.playbook, o.release) == ("site_ordered.yml", ["gpu2"])
    assert o.why == "tgt1 change exports that gpu2 use: gpu2 disconnect first"


def test_new_export_orders_target_before_connect_without_release():
    plan = _plan(
        _c("tgt1", "nvmet", "subsystem " + SCRATCH, "create"),
        _c("gpu2", "nvme_host", "connection:rdma://192.168.100.11:4420/" + SCRATCH, "connect"),
    )
    o = order_for(plan)
    assert (o.playbook, o.release) == ("site_ordered.yml", [])


def test_check_mode_never_orders():
    plan = _plan(_c("tgt1", "nvmet", "subsystem " + SCRATCH, "delete", True),
                 _c("gpu2", "nvme_host", "controller:nvme2", "disconnect", True))
    assert order_for(plan, check=True).playbook == "site.yml"


def test_ordered_playbook_plays_and_options_match_the_single_play():
    ordered = yaml.safe_load((REPO / "playbooks" / "site_ordered.yml").read_text())
    single = yaml.safe_load((REPO / "playbooks" / "site.yml").read_text())
    assert [p["hosts"] for p in ordered] == ["release", "targets", "gpu_nodes"]
    assert ordered[0]["any_errors_fatal"] is True and ordered[0]["max_fail_percentage"] == 0
    release = ordered[0]["tasks"][0]["nvmeofctl.fabric.nvme_host"]
    assert release["phase"] == "release"
    # plays 2 and 3 pass exactly what the single play passes
    assert ordered[1]["tasks"][0] == single[0]["tasks"][0]
    assert ordered[2]["tasks"][0] == single[0]["tasks"][1]


def test_the_targets_own_boot_files_do_not_order_a_gpu_change():
    """A new boot program or state record on a target (kind "persist", as persist.py reports
    them) changes no export: a GPU node's new path alongside it stays one parallel play."""
    boot = Change("tgt1", "nvmet", "file /usr/local/lib/nvmeofctl/nvmeofctl-boot.pyz", "update", "", False, "",
                  "persist")
    connect = _c("gpu2", "nvme_host", "connection:rdma://192.168.100.11:4420/" + SCRATCH, "connect")
    assert order_for(_plan(boot, connect)).playbook == "site.yml"
    export = _c("tgt1", "nvmet", "subsystem " + SCRATCH, "create")
    assert order_for(_plan(boot, export, connect)).playbook == "site_ordered.yml"
