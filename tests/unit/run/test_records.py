"""Run records: where they live, what they hold (never a secret), retention, damaged files."""

from __future__ import annotations

import json
import os
import re
import stat
from datetime import timezone
from pathlib import Path

import pytest

from nvmeofctl.errors import NvmeofctlError, UsageError
from nvmeofctl.run import records

T0 = 1709294400.0  # 2024-03-01T12:00:00Z
SECRET_KEY = "DHHC-1:00:c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTIzNDU2Nzg5MDEyMzQ1Ng==:"
CTRL_KEY = "DHHC-1:01:Y3RybGtleWN0cmxrZXljdHJsa2V5Y3RybGtleWN0cmxrZXkxMjM0NTY3ODkw:"


def _plan() -> dict:
    return {
        "changes": 2, "disruptive": 1,
        "hosts": [{"host": "stor1", "role": "target", "error": None, "changes": [
            {"host": "stor1", "concern": "nvmet", "object": "subsystem nqn.2024-03.io.lab:s1", "action": "create",
             "detail": "namespace 1", "disruptive": False, "reason": ""},
            {"host": "stor1", "concern": "nvmet", "object": "port 1", "action": "update",
             "detail": "addr 10.0.0.1 -> 10.0.0.2", "disruptive": True, "reason": "moves the port"},
        ]}],
    }


def _hosts() -> list[dict]:
    return [
        {"host": "stor1", "role": "target", "status": "changed", "changed_tasks": 1, "failure": None,
         "changes": [{"object": "host nqn.2024-03.io.lab:gpu1", "action": "create",
                      "detail": f"allow with key {SECRET_KEY}", "dhchap_key": "plainsecretvalue",
                      "dhchap_ctrl_key": CTRL_KEY}]},
        {"host": "gpu1", "role": "gpu_node", "status": "ok", "changed_tasks": 0, "failure": None, "changes": []},
        {"host": "gpu2", "role": "gpu_node", "status": "unreachable", "changed_tasks": 0, "changes": [],
         "failure": "ssh 127.0.0.1:2203: connection refused"},
    ]


def _record(tmp_path: Path, **over) -> Path | None:
    spec = tmp_path / "cluster.yaml"
    if not spec.exists():
        spec.write_bytes(b"name: c\n")
    args = dict(spec_path=spec, check=False, allow_disruptive=True, limit=["stor1", "gpu1", "gpu2"], strict=False,
                plan=_plan(), skipped=[], hosts=_hosts(), exit_code=6, error=None, started=T0, finished=T0 + 12.5,
                phases=[{"name": "preflight", "seconds": 1.25}], root=tmp_path / "state")
    args.update(over)
    return records.record_apply(**args)


# ---------------------------------------------------------------- where


def test_state_dir_precedence(monkeypatch, tmp_path):
    env = {"NVMEOFCTL_STATE": "/srv/nv", "XDG_STATE_HOME": "/x/state", "HOME": "/home/op"}
    assert records.state_dir(env) == Path("/srv/nv")
    del env["NVMEOFCTL_STATE"]
    assert records.state_dir(env) == Path("/x/state/nvmeofctl")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NVMEOFCTL_STATE", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert records.state_dir() == tmp_path / ".local" / "state" / "nvmeofctl"
    monkeypatch.setenv("NVMEOFCTL_STATE", str(tmp_path / "st"))
    assert records.runs_dir() == tmp_path / "st" / "runs"


# ---------------------------------------------------------------- writing


def test_record_file_and_folder_are_private(tmp_path):
    old = os.umask(0o022)
    try:
        path = _record(tmp_path)
    finally:
        os.umask(old)
    assert path is not None and path.parent == tmp_path / "state" / "runs"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "state" / "runs").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_an_open_runs_folder_is_closed(tmp_path):
    runs = tmp_path / "state" / "runs"
    runs.mkdir(parents=True)
    runs.chmod(0o755)
    assert _record(tmp_path) is not None
    assert stat.S_IMODE(os.stat(runs).st_mode) == 0o700


def test_record_content(tmp_path):
    path = _record(tmp_path)
    rec = json.loads(path.read_text())
    assert re.fullmatch(r"20240301T120000Z-%d-[0-9a-f]{4}" % os.getpid(), rec["id"])
    assert path.name == rec["id"] + ".json"
    assert rec["version"] == 1 and rec["command"] == "apply"
    assert rec["started"] == "2024-03-01T12:00:00.000+00:00"
    assert rec["finished"] == "2024-03-01T12:00:12.500+00:00"
    assert rec["seconds"] == 12.5
    assert rec["spec"] == str(tmp_path / "cluster.yaml")
    assert rec["spec_sha256"] == "cfef9bbdf4828bbbb44ba9c682fa7c2f65f567deb038ef3b3cd794c4df59b741"
    assert (rec["check"], rec["allow_disruptive"], rec["strict"]) == (False, True, False)
    assert rec["limit"] == ["stor1", "gpu1", "gpu2"]
    assert rec["exit_code"] == 6 and rec["error"] is None
    assert rec["plan"]["changes"] == 2 and rec["plan"]["hosts"][0]["changes"][1]["detail"] == "addr 10.0.0.1 -> 10.0.0.2"
    assert rec["hosts"][2] == {"host": "gpu2", "role": "gpu_node", "status": "unreachable", "changed_tasks": 0,
                               "changes": [], "failure": "ssh 127.0.0.1:2203: connection refused"}
    assert rec["skipped"] == [] and rec["phases"] == [{"name": "preflight", "seconds": 1.25}]
    assert isinstance(rec["user"], str) and rec["user"]


def test_failed_before_planning_and_missing_spec(tmp_path):
    path = records.record_apply(
        spec_path=tmp_path / "nope.yaml", check=True, allow_disruptive=False, limit="gpu1, gpu2", strict=True,
        plan=None, skipped=[], hosts=[], exit_code=3, error="nope.yaml: no such file", started=T0, finished=T0 + 0.25,
        root=tmp_path / "state",
    )
    rec = json.loads(path.read_text())
    assert rec["spec_sha256"] is None and rec["plan"] is None and rec["phases"] is None
    assert rec["limit"] == ["gpu1", "gpu2"] and rec["check"] is True and rec["strict"] is True
    assert rec["exit_code"] == 3 and rec["error"] == "nope.yaml: no such file"


def test_no_secret_reaches_the_file(tmp_path):
    path = _record(tmp_path, skipped=[{"host": "gpu3", "role": "gpu_node", "status": "skipped",
                                       "failure": f"target said {CTRL_KEY}"}],
                   error=f"refused: {SECRET_KEY}")
    raw = path.read_bytes()
    for needle in (b"DHHC-1", b"plainsecretvalue", b"c2VjcmV0c2VjcmV0", b"Y3RybGtleWN0"):
        assert needle not in raw
    rec = json.loads(raw)
    change = rec["hosts"][0]["changes"][0]
    assert change == {"object": "host nqn.2024-03.io.lab:gpu1", "action": "create", "detail": "<secret>",
                      "dhchap_key": "<secret>", "dhchap_ctrl_key": "<secret>"}
    assert rec["skipped"][0]["failure"] == "<secret>" and rec["error"] == "<secret>"


def test_redact_is_precise_and_leaves_its_input_alone():
    data = {
        "changes": [{"object": "port 1", "detail": "mtu 4200"}],
        "dhchap_key": "k1", "dhchap_ctrl_key": "k2", "DHCHAP_HOST_KEY": "k3", "client_secret": "s",
        "db_password": "p", "auth_token": {"value": "t", "n": 7}, "nested": ("a", "DHHC-1:00:x:"),
        "key": "kept", "monkey": "kept", "keys_total": 3, "dhchap_hash": "hmac(sha256)",
        "token_count": None, "secret_set": True,
    }
    before = json.dumps(data, default=list)
    out = records.redact(data)
    assert out == {
        "changes": [{"object": "port 1", "detail": "mtu 4200"}],
        "dhchap_key": "<secret>", "dhchap_ctrl_key": "<secret>", "DHCHAP_HOST_KEY": "<secret>",
        "client_secret": "<secret>", "db_password": "<secret>", "auth_token": {"value": "<secret>", "n": "<secret>"},
        "nested": ["a", "<secret>"], "key": "kept", "monkey": "kept", "keys_total": 3, "dhchap_hash": "hmac(sha256)",
        "token_count": None, "secret_set": True,
    }
    assert json.dumps(data, default=list) == before


def test_redact_hides_pydantic_secrets():
    from pydantic import SecretStr

    assert records.redact({"auth": [SecretStr("DHHC-1:00:abc:")]}) == {"auth": ["<secret>"]}


def test_retention_keeps_the_newest_500(tmp_path):
    runs = tmp_path / "state" / "runs"
    runs.mkdir(parents=True, mode=0o700)
    for i in range(501):  # 2024-02-29 12:00:00Z + i seconds: all older than the new record
        minute, sec = divmod(i, 60)
        (runs / f"20240229T12{minute:02d}{sec:02d}Z-100-abcd.json").write_text("{}")
    (runs / "notes.txt").write_text("mine")
    (runs / "20200101T000000Z-1-abcd.json.bak").write_text("mine too")
    path = _record(tmp_path)
    names = sorted(p.name for p in runs.iterdir())
    assert len(names) == 502  # 500 records + the two files that are not records
    assert "notes.txt" in names and "20200101T000000Z-1-abcd.json.bak" in names
    assert path.name in names
    assert "20240229T120000Z-100-abcd.json" not in names and "20240229T120001Z-100-abcd.json" not in names
    assert "20240229T120002Z-100-abcd.json" in names and "20240229T120820Z-100-abcd.json" in names


def test_prune_deletes_only_record_names(tmp_path):
    for name in ("20240101T000000Z-1-aaaa.json", "20240101T000001Z-1-aaaa.json", "20240101T000002Z-1-aaaa.json",
                 "other.json", ".20240101T000003Z-1-aaaa.json.1234abcd.tmp"):
        (tmp_path / name).write_text("{}")
    assert records.prune(tmp_path, keep=1) == ["20240101T000000Z-1-aaaa.json", "20240101T000001Z-1-aaaa.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".20240101T000003Z-1-aaaa.json.1234abcd.tmp", "20240101T000002Z-1-aaaa.json", "other.json"]


# ---------------------------------------------------------------- failures


def test_io_problems_return_none_and_warn(tmp_path):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state folder should be")
    said: list[str] = []
    assert _record(tmp_path, warn=said.append) is None
    assert len(said) == 1 and said[0].startswith("run record not written: ") and str(blocker) in said[0]
    assert _record(tmp_path) is None  # without warn: still no exception


def test_a_symlinked_runs_folder_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / "state").mkdir(mode=0o700)
    (tmp_path / "state" / "runs").symlink_to(elsewhere)
    said: list[str] = []
    assert _record(tmp_path, warn=said.append) is None
    assert list(elsewhere.iterdir()) == [] and "not a folder" in said[0]


@pytest.mark.parametrize("over", [{"exit_code": "6"}, {"started": "yesterday"}, {"hosts": ["stor1"]},
                                  {"limit": 3}, {"hosts": [{"host": "stor1", "changes": [object()]}]}])
def test_wrong_arguments_raise(tmp_path, over):
    with pytest.raises(TypeError):
        _record(tmp_path, **over)
    assert not (tmp_path / "state").exists()  # raised before any I/O


# ---------------------------------------------------------------- reading


def test_list_newest_first_and_skip_damaged_files(tmp_path):
    first = _record(tmp_path, started=T0 - 86400, finished=T0 - 86390)
    second = _record(tmp_path, check=True, exit_code=0)
    runs = tmp_path / "state" / "runs"
    (runs / "20240302T000000Z-7-dead.json").write_text("{not json")
    (runs / "20240302T000001Z-7-beef.json").write_text(json.dumps({"version": 1, "id": "something else"}))
    (runs / "README").write_text("not a record name: ignored")
    hist = records.read_history(tmp_path / "state")
    assert [r["id"] for r in hist.records] == [second.stem, first.stem]
    assert len(hist.problems) == 2
    assert hist.problems[0].startswith(str(runs / "20240302T000001Z-7-beef.json"))
    assert "id does not match" in hist.problems[0]
    assert hist.problems[1].startswith(str(runs / "20240302T000000Z-7-dead.json")) and "not JSON" in hist.problems[1]
    assert [r["id"] for r in records.list_records(tmp_path / "state")] == [second.stem, first.stem]


def test_reading_creates_nothing(tmp_path):
    assert records.read_history(tmp_path / "state").records == []
    assert not (tmp_path / "state").exists()


def test_load_record_by_id_and_prefix(tmp_path):
    path = _record(tmp_path)
    assert records.load_record(path.stem, tmp_path / "state")["exit_code"] == 6
    assert records.load_record("20240301T12", tmp_path / "state")["id"] == path.stem
    for bad in ("20240301T130000Z-1-abcd", "../../etc/passwd", ""):
        with pytest.raises(UsageError):
            records.load_record(bad, tmp_path / "state")
    path.write_text("[]")
    with pytest.raises(NvmeofctlError) as exc:
        records.load_record(path.stem, tmp_path / "state")
    assert "damaged" in str(exc.value) and not isinstance(exc.value, UsageError)


# ---------------------------------------------------------------- pure summaries


def test_summary_of_a_partial_run():
    rec = {"id": "20240301T120000Z-1-abcd", "started": "2024-03-01T12:00:00.000+00:00", "check": False,
           "exit_code": 6, "spec": "/etc/c.yaml", "seconds": 12.5, "error": None, "plan": {"changes": 2},
           "hosts": [{"host": "stor1", "status": "changed", "changes": [{}, {}]},
                     {"host": "gpu1", "status": "skipped", "changes": []},
                     {"host": "gpu2", "status": "unreachable", "changes": []},
                     {"host": "gpu3", "status": "failed", "changes": [{}]}],
           "skipped": [{"host": "gpu1", "status": "skipped"}]}
    s = records.summarize(rec)
    assert s["mode"] == "apply" and s["exit_code"] == 6 and s["hosts"] == 4
    assert s["hosts_changed"] == ["stor1", "gpu3"] and s["changes"] == 3 and s["planned_changes"] == 2
    assert s["failed_hosts"] == ["gpu2", "gpu3"] and s["skipped_hosts"] == ["gpu1"]


def test_summary_of_a_run_stopped_at_preflight():
    rec = {"id": "x", "check": True, "exit_code": 4, "plan": None, "hosts": [], "error": "preflight: stor1: no nvmet",
           "skipped": [{"host": "stor1", "status": "preflight failed"}, {"host": "gpu1", "status": "skipped"}]}
    s = records.summarize(rec)
    assert s["mode"] == "apply --check" and s["hosts_changed"] == [] and s["changes"] == 0
    assert s["failed_hosts"] == ["stor1"] and s["skipped_hosts"] == ["gpu1"] and s["planned_changes"] is None


def test_local_time():
    assert records.local_time("2024-03-01T12:00:00.000+00:00", timezone.utc) == "2024-03-01 12:00:00"
    assert records.local_time("garbage", timezone.utc) == "garbage"
    assert records.local_time(None) == ""
