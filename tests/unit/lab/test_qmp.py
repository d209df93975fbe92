"""The QMP client the lab saves and loads shared-disk VMs' states with, against a fake QEMU."""

import json
import socket
import threading

import pytest

from nvmeofctl.lab.process import Qmp, QmpError


def _serve(path, replies):
    """A one-client QMP server: greets, then answers each command with the next reply of
    ``replies[command]`` (a list), interleaving an event before every answer. Returns the list
    the commands it received are appended to."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(1)
    seen = []

    def run():
        conn, _ = srv.accept()
        f = conn.makefile("rwb")
        f.write(b'{"QMP": {"version": {}, "capabilities": []}}\r\n')
        f.flush()
        for line in f:
            msg = json.loads(line)
            seen.append(msg)
            f.write(b'{"event": "JOB_STATUS_CHANGE", "data": {}}\r\n')
            f.write(json.dumps(replies[msg["execute"]].pop(0)).encode() + b"\r\n")
            f.flush()
        conn.close()
        srv.close()

    threading.Thread(target=run, daemon=True).start()
    return seen


def test_job_waits_until_concluded_and_dismisses(tmp_path):
    sock = tmp_path / "qmp.sock"
    seen = _serve(sock, {
        "qmp_capabilities": [{"return": {}}],
        "snapshot-save": [{"return": {}}],
        "query-jobs": [{"return": [{"id": "j1", "status": "running"}]},
                       {"return": [{"id": "j1", "status": "concluded"}]}],
        "job-dismiss": [{"return": {}}],
    })
    with Qmp(sock) as qmp:
        qmp.run_job("snapshot-save", "j1", tag="saved", vmstate="root0", devices=["root0"])
    assert [m["execute"] for m in seen] == ["qmp_capabilities", "snapshot-save", "query-jobs", "query-jobs",
                                            "job-dismiss"]
    assert seen[1]["arguments"] == {"job-id": "j1", "tag": "saved", "vmstate": "root0", "devices": ["root0"]}


def test_failed_job_raises_qemus_message(tmp_path):
    sock = tmp_path / "qmp.sock"
    _serve(sock, {
        "qmp_capabilities": [{"return": {}}],
        "snapshot-load": [{"return": {}}],
        "query-jobs": [{"return": [{"id": "j2", "status": "concluded",
                                    "error": "Snapshot 'zz' does not exist in one or more devices"}]}],
        "job-dismiss": [{"return": {}}],
    })
    with Qmp(sock) as qmp, pytest.raises(QmpError, match="does not exist"):
        qmp.run_job("snapshot-load", "j2", tag="zz", vmstate="root0", devices=["root0"])


def test_command_error_raises(tmp_path):
    sock = tmp_path / "qmp.sock"
    _serve(sock, {
        "qmp_capabilities": [{"return": {}}],
        "cont": [{"error": {"class": "GenericError", "desc": "Resetting the Virtual Machine is required"}}],
    })
    with Qmp(sock) as qmp, pytest.raises(QmpError, match="Resetting"):
        qmp.execute("cont")
