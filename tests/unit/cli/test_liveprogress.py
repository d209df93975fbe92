"""The live per-host board of `apply` on a terminal (cli/liveprogress.py), fed the messages the
runner emits (run/runner.py), and its plain-line fallback."""

from __future__ import annotations

import io

from rich.console import Console

from nvmeofctl.cli.liveprogress import HostBoard, host_progress


def test_board_rows_follow_the_runners_messages():
    board = HostBoard(["tgt1", "gpu1"])
    assert board.take("gpu1: NVMe-oF host identity, connections changed (3 changes)") is True
    assert board.take("tgt1: nvmet subsystems, namespaces, hosts and ports ok") is True
    assert board.take("task: NVMe-oF fabric") is False and board.take("running playbooks/site.yml") is False
    assert board.rows["gpu1"]["status"] == "changed" and board.rows["gpu1"]["changes"] == 3
    assert board.rows["gpu1"]["task"] == "NVMe-oF host identity, connections"
    assert board.rows["tgt1"]["status"] == "ok" and board.rows["tgt1"]["changes"] == 0


def test_live_on_a_terminal_plain_lines_otherwise():
    buf = io.StringIO()
    term = Console(file=buf, force_terminal=True, width=120, color_system=None)
    with host_progress(term, ["gpu1"], live=True) as say:
        say("gpu1: task x changed (2 changes)")
        say("a line about the run")
    out = buf.getvalue()
    assert "gpu1" in out and "changed" in out and "a line about the run" in out and "host" in out
    buf = io.StringIO()
    log = Console(file=buf, force_terminal=False, width=120)
    with host_progress(log, ["gpu1"], live=False) as say:
        say("gpu1: task x changed (2 changes)")
    assert buf.getvalue().strip().endswith("gpu1: task x changed (2 changes)") and "\x1b" not in buf.getvalue()


def test_a_failure_keeps_its_message():
    board = HostBoard(["gpu2"])
    board.take("gpu2: NVMe-oF host identity failed: connect to 192.168.100.11 timed out")
    assert board.rows["gpu2"]["status"] == "failed"
    assert board.rows["gpu2"]["task"] == "NVMe-oF host identity: connect to 192.168.100.11 timed out"
