"""Why an authenticated connect failed, read from the kernel log of the attempt. Fed with the
real captures in tests/fixtures/nvme (dmesg lines of lab GPU nodes, kernel 6.12, see
PROVENANCE.tsv): a wrong secret over RDMA (fast EIO), the same hanging ~370 s, no secret."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "playbooks" / "collections"))
from ansible_collections.nvmeofctl.fabric.plugins.module_utils import nvme_host as nh  # noqa: E402

FX = REPO / "tests" / "fixtures" / "nvme"


def _capture(name):
    return (FX / name).read_text()


def _authenticated_connect(tmp_path, runner, uptime):
    """connect() of the lab's ckpt path with a host secret, through ``runner``, at kernel ``uptime``."""
    conn = {"subsysnqn": "nqn.2024-01.io.nvmeofctl.test:ckpt", "transport": "rdma", "traddr": "192.168.100.11",
            "trsvcid": "4420", "dhchap_secret": "DHHC-1:00:" + "A" * 48 + ":", "dhchap_ctrl_secret": None}
    opts = nh.normalize_desired({"hostnqn": "nqn.2014-08.org.nvmexpress:uuid:x", "hostid": "x",
                                 "connections": [conn]})
    paths = nh.paths_for(str(tmp_path / "class" / "nvme"), str(tmp_path / "etc" / "nvme"))
    return nh.connect(conn, opts, paths, 5, runner=runner, clock=lambda: uptime)


def test_wrong_secret_over_rdma_is_named_authentication():
    kind, line = nh.auth_evidence(_capture("dhchap-connect-rdma-wrong-secret.txt"), 586.0)
    assert kind == "failed"
    assert line == "nvme nvme0: qid 0 failed to receive success1, nvme status 881"


def test_lines_before_the_attempt_are_ignored():
    assert nh.auth_evidence(_capture("dhchap-connect-rdma-wrong-secret.txt"), 600.0) == (None, "")
    assert nh.auth_evidence(_capture("dhchap-connect-rdma-wrong-secret.txt"), None) == (None, "")


def test_hanging_negotiation_is_reported_as_no_answer_until_the_failure_shows():
    text = _capture("dhchap-connect-rdma-wrong-secret-hang-370s.txt")
    # while the connect hangs only the fabrics-command timeouts are in the log
    lines = text.splitlines()
    first_failure = next(i for i, line in enumerate(lines) if "failed to receive" in line or "authentication failed" in line)
    hanging = "\n".join(lines[:first_failure])
    kind, line = nh.auth_evidence(hanging, 800.0)
    assert (kind, line) == ("no_answer", "nvme nvme0: I/O tag 29 (001d) opcode 0x7f (Fabrics Cmd) QID 0 timeout")
    assert nh.auth_evidence(text, 800.0) == ("failed", "nvme nvme0: qid 0 failed to receive success1, nvme status 881")


def test_successful_authentication_is_not_evidence_of_failure():
    assert nh.auth_evidence(_capture("dhchap-connect-rdma-bidirectional.txt"), 0.0) == (None, "")
    assert nh.auth_evidence(_capture("dhchap-connect-rdma-no-secret.txt"), 0.0)[0] == "failed"


def test_connect_names_authentication_from_the_kernel_log(tmp_path):
    """connect() with a secret: the writer says EIO (as the real one does), the kernel log of
    the attempt says authentication: the result is auth_failed, never retried as not-ready."""
    dmesg = _capture("dhchap-connect-rdma-wrong-secret.txt")
    calls = []

    def runner(argv, timeout, stdin_data=None):
        calls.append(argv[0])
        if argv == ["dmesg"]:
            return 0, dmesg, "", False
        return 1, "", "Failed to write to /dev/nvme-fabrics: Input/output error\n", False

    res = _authenticated_connect(tmp_path, runner, uptime=586.5)
    assert res["category"] == "auth_failed" and res["ok"] is False
    assert res["message"] == ("DH-HMAC-CHAP authentication failed (kernel: nvme nvme0: qid 0 failed to receive "
                              "success1, nvme status 881)")
    assert "auth_failed" not in nh.__dict__.get("NOT_READY", ())
    assert calls[-1] == "dmesg"


def test_authenticated_connect_that_times_out_names_authentication(tmp_path):
    """The other real outcome of a wrong secret over RDMA (dhchap-connect-rdma-wrong-secret-hang-
    370s.txt): the connect hangs past the tool's bound with nothing in the kernel log yet."""
    def runner(argv, timeout, stdin_data=None):
        if argv == ["dmesg"]:
            return 0, "", "", False
        return None, "", "", True  # killed at the bound

    res = _authenticated_connect(tmp_path, runner, uptime=10.0)
    assert res["category"] == "timeout" and res["ok"] is False
    assert res["message"] == ("DH-HMAC-CHAP authentication did not complete within the connect timeout "
                              "(over RDMA the kernel waits ~370 s on a secret the target rejects)")
