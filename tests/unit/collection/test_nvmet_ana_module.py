"""plugins/modules/nvmet_ana.py run in-process against a plain tree built from the real k612
nvmet configfs capture (ports 1 and 2, each with the kernel's default ANA group 1, optimized)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "fixtures" / "collection" / "target"))
sys.path.insert(0, str(REPO / "playbooks" / "collections"))
import faketarget  # noqa: E402
from modrun import run_module  # noqa: E402

from ansible_collections.nvmeofctl.fabric.plugins.modules import nvmet_ana as module  # noqa: E402


def state(root, port, grp):
    return (root / "ports" / port / "ana_groups" / grp / "ana_state").read_text().strip()


def test_sets_states_live_predicts_in_check_mode_and_is_idempotent(tmp_path, monkeypatch, capsys):
    root = faketarget.build_tree_from_capture(tmp_path / "nvmet")
    # (creating a group needs the kernel, which makes its ana_state file: test_nvmet_ana.py covers it)
    params = {"configfs_root": str(root), "ports": [{"id": 1, "ana_groups": [{"grpid": 1, "state": "inaccessible"}]}]}
    pred, _ = run_module(module, monkeypatch, capsys, params, check=True)
    assert pred["changed"] is True and state(root, "1", "1") == "optimized"  # check mode wrote nothing
    assert pred["ana_groups"]["1"] == {"1": "inaccessible"}

    res, _ = run_module(module, monkeypatch, capsys, params)
    assert [(c["object"], c["action"], c["detail"], c["disruptive"]) for c in res["changes"]] == [
        ("port 1 / ana group 1", "update", "ana_state: optimized -> inaccessible", True)]
    assert state(root, "1", "1") == "inaccessible"
    assert state(root, "2", "1") == "optimized"  # port 2 not named: untouched
    assert res["ana_groups"] == {"1": {"1": "inaccessible"}, "2": {"1": "optimized"}}
    # nothing persisted: no state file written anywhere but configfs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nvmet"]

    again, _ = run_module(module, monkeypatch, capsys, params)
    assert again["changed"] is False and again["changes"] == []


def test_refuses_a_port_that_is_not_configured_and_bad_values(tmp_path, monkeypatch, capsys):
    root = faketarget.build_tree_from_capture(tmp_path / "nvmet")
    res, _ = run_module(module, monkeypatch, capsys, {"configfs_root": str(root), "ports": [
        {"id": 7, "ana_groups": [{"grpid": 1, "state": "inaccessible"}]}]})
    assert res["failed"] is True and res["msg"] == ("nvmet_ana: port 7 is not configured on this target "
                                                    "(nvmet_target makes it)")
    res, _ = run_module(module, monkeypatch, capsys, {"configfs_root": str(root), "ports": [
        {"id": 1, "ana_groups": [{"grpid": 200, "state": "optimized"}]}]})
    assert res["failed"] is True and "grpid: an integer 1..128" in res["msg"]
