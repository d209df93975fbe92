"""`nvmeofctl history`: the table, JSON, --show, --limit, and its one-line errors."""

from __future__ import annotations

import json
import time

import pytest

from nvmeofctl.cli.main import run
from nvmeofctl.run import records

T0 = 1709294400.0  # 2024-03-01T12:00:00Z
KEY = "DHHC-1:00:c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTIzNDU2Nzg5MDEyMzQ1Ng==:"


@pytest.fixture
def state(tmp_path, monkeypatch):
    """An empty state folder, UTC as local time, a wide non-TTY terminal."""
    monkeypatch.setenv("NVMEOFCTL_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("NO_COLOR", "1")
    time.tzset()
    yield tmp_path / "state"
    monkeypatch.undo()
    time.tzset()


def nvmeofctl(capsys, *args: str) -> tuple[int, str, str]:
    try:
        rc = run(list(args))
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return rc, out, err


def _two_runs(tmp_path, state):
    spec = tmp_path / "cluster.yaml"
    spec.write_text("name: c\n")
    first = records.record_apply(
        spec_path=spec, check=True, allow_disruptive=False, limit=None, strict=False,
        plan={"changes": 1, "disruptive": 0, "hosts": []}, skipped=[],
        hosts=[{"host": "stor1", "role": "target", "status": "changed", "changed_tasks": 1, "failure": None,
                "changes": [{"object": "subsystem nqn.2024-03.io.lab:s1", "action": "create", "detail": "1 namespace"}]}],
        exit_code=0, error=None, started=T0, finished=T0 + 3.0, root=state,
    )
    second = records.record_apply(
        spec_path=spec, check=False, allow_disruptive=True, limit=["stor1", "gpu1", "gpu2"], strict=False,
        plan={"changes": 2, "disruptive": 1, "hosts": []},
        skipped=[{"host": "gpu2", "role": "gpu_node", "status": "unreachable", "failure": "ssh refused"}],
        hosts=[
            {"host": "stor1", "role": "target", "status": "changed", "changed_tasks": 1, "failure": None,
             "changes": [{"object": "host nqn.2024-03.io.lab:gpu1", "action": "create",
                          "detail": f"key {KEY}", "dhchap_key": "plainsecretvalue"},
                         {"object": "port 1", "action": "update", "detail": "addr 10.0.0.1 -> 10.0.0.2",
                          "disruptive": True}]},
            {"host": "gpu1", "role": "gpu_node", "status": "changed", "changed_tasks": 1, "failure": None,
             "changes": [{"object": "ctrl nqn.2024-03.io.lab:s1", "action": "connect", "detail": "rdma 10.0.0.2:4420"}]},
            {"host": "gpu2", "role": "gpu_node", "status": "unreachable", "changed_tasks": 0, "changes": [],
             "failure": "ssh refused"},
        ],
        exit_code=6, error=None, started=T0 + 3600, finished=T0 + 3612.5, root=state,
        phases=[{"name": "preflight", "seconds": 1.5}, {"name": "playbook", "seconds": 10.0}],
    )
    return first.stem, second.stem


def test_help_has_an_example(capsys):
    rc, out, _ = nvmeofctl(capsys, "history", "--help")
    assert rc == 0 and "Example" in out and "nvmeofctl history --show" in out


def test_empty_history_is_a_friendly_line(capsys, state):
    rc, out, err = nvmeofctl(capsys, "history")
    assert rc == 0
    assert out.strip() == f"no runs recorded yet in {state / 'runs'} (each `nvmeofctl apply` adds one)"
    rc, out, _ = nvmeofctl(capsys, "history", "-o", "json")
    assert rc == 0 and json.loads(out)["runs"] == []


def test_table_newest_first(capsys, state, tmp_path):
    first, second = _two_runs(tmp_path, state)
    rc, out, err = nvmeofctl(capsys, "history")
    assert rc == 0, err
    lines = [ln for ln in out.splitlines() if first in ln or second in ln]
    assert len(lines) == 2 and second in lines[0] and first in lines[1]
    newest = [c.strip() for c in lines[0].split("│")[1:-1]]
    assert newest == [second, "2024-03-01 13:00:00", "apply", "6", "2/3", "3", "gpu2 (unreachable)",
                      str(tmp_path / "cluster.yaml")]
    oldest = [c.strip() for c in lines[1].split("│")[1:-1]]
    assert oldest[1:7] == ["2024-03-01 12:00:00", "apply --check", "0", "1/1", "1", ""]
    assert "DHHC-1" not in out and "plainsecretvalue" not in out


def test_limit(capsys, state, tmp_path):
    first, second = _two_runs(tmp_path, state)
    rc, out, err = nvmeofctl(capsys, "history", "--limit", "1")
    assert rc == 0 and second in out and first not in out
    assert "showing the newest 1 of 2 runs" in err


def test_json_list(capsys, state, tmp_path):
    first, second = _two_runs(tmp_path, state)
    rc, out, _ = nvmeofctl(capsys, "history", "--output", "json")
    data = json.loads(out)
    assert rc == 0 and data["schema_version"] == 1 and data["total"] == 2 and data["problems"] == []
    assert [r["id"] for r in data["runs"]] == [second, first]
    newest = data["runs"][0]
    assert newest["mode"] == "apply" and newest["exit_code"] == 6
    assert newest["hosts_changed"] == ["stor1", "gpu1"] and newest["changes"] == 3
    assert newest["failed_hosts"] == ["gpu2"] and newest["skipped_hosts"] == []
    assert newest["started"] == "2024-03-01T13:00:00.000+00:00" and newest["seconds"] == 12.5


def test_show_table(capsys, state, tmp_path):
    _, second = _two_runs(tmp_path, state)
    rc, out, err = nvmeofctl(capsys, "history", "--show", second)
    assert rc == 0, err
    assert out.splitlines()[0] == f"run {second}: apply, exit 6"
    assert "  started   2024-03-01 13:00:00 (local), took 12.5s, by " in out
    assert "  options   --allow-disruptive --limit stor1,gpu1,gpu2" in out
    assert "  phases    preflight 1.5s, playbook 10.0s" in out
    assert "  stor1: + host nqn.2024-03.io.lab:gpu1: <secret>" in out
    assert "  stor1: ~ port 1: addr 10.0.0.1 -> 10.0.0.2  DISRUPTIVE" in out
    assert "  gpu1: + ctrl nqn.2024-03.io.lab:s1: rdma 10.0.0.2:4420" in out
    assert "ssh refused" in out
    assert "DHHC-1" not in out and "plainsecretvalue" not in out


def test_show_json(capsys, state, tmp_path):
    first, _ = _two_runs(tmp_path, state)
    rc, out, _ = nvmeofctl(capsys, "history", "--show", first, "-o", "json")
    data = json.loads(out)
    assert rc == 0 and data["schema_version"] == 1 and data["id"] == first
    assert data["check"] is True and data["exit_code"] == 0 and data["seconds"] == 3.0
    assert data["hosts"][0]["changes"] == [
        {"object": "subsystem nqn.2024-03.io.lab:s1", "action": "create", "detail": "1 namespace"}]


def test_show_unknown_id_is_a_one_line_usage_error(capsys, state, tmp_path):
    _two_runs(tmp_path, state)
    rc, out, err = nvmeofctl(capsys, "history", "--show", "20990101T000000Z-1-abcd")
    assert rc == 2 and out == ""
    assert err.strip().splitlines() == [
        f"error: no run '20990101T000000Z-1-abcd' in {state / 'runs'} (`nvmeofctl history` lists the runs)"]


def test_damaged_record_is_skipped_with_a_warning(capsys, state, tmp_path):
    first, second = _two_runs(tmp_path, state)
    (state / "runs" / "20240302T000000Z-9-dead.json").write_text("{truncated")
    rc, out, err = nvmeofctl(capsys, "history")
    assert rc == 0 and first in out and second in out and "dead" not in out
    assert f"warning: skipped {state / 'runs' / '20240302T000000Z-9-dead.json'}: not JSON" in err
