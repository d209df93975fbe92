"""A live per-host progress display for long runs (`apply`) on a terminal: one row per host
(its last task, status, changes so far, time), redrawn in place by rich; every other line is
printed above it. Off a terminal, or with `--output json`, the same messages are plain
timestamped lines (cli.context.progress_printer), so logs stay readable."""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from typing import Callable, Iterator

_STYLE = {"ok": "green", "changed": "yellow", "failed": "red", "unreachable": "magenta", "skipped": "dim"}
# run/runner.py: f"{host}: {task} {status}" + " (n change(s))" + ": {msg}" (failures)
_MSG_RE = re.compile(r"(?P<task>.*) (?P<status>ok|changed|failed|unreachable|skipped)"
                     r"(?: \((?P<n>[0-9]+) changes?\))?(?:: (?P<msg>.*))?")


class HostBoard:
    """The rows; ``say`` takes the runner's progress messages (``"host: task status (n changes)"``)."""

    def __init__(self, hosts: list[str]) -> None:
        self.start = time.monotonic()
        self.rows = {h: {"task": "waiting", "status": "", "changes": 0, "since": None} for h in hosts}

    def take(self, msg: str) -> bool:
        """Update the row a host message is about; False for any other message."""
        host, sep, rest = msg.partition(": ")
        if not sep or host not in self.rows:
            return False
        row = self.rows[host]
        if row["since"] is None:
            row["since"] = time.monotonic()
        m = _MSG_RE.match(rest)
        if m is None:
            row["task"] = rest
            return True
        task, status = m["task"], m["status"]
        row["changes"] += int(m["n"] or 0)
        if m["msg"]:
            task = f"{task}: {m['msg']}"
        row.update(task=task, status=status or row["status"])
        return True

    def table(self):
        from rich.table import Table
        from rich.text import Text

        t = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        for col in ("host", "task", "status", "changes", "time"):
            t.add_column(col)
        now = time.monotonic()
        for host, r in self.rows.items():
            took = f"{now - r['since']:.0f}s" if r["since"] is not None else ""
            t.add_row(host, r["task"], Text(r["status"], style=_STYLE.get(r["status"], "")), str(r["changes"]), took)
        return t


@contextmanager
def host_progress(console, hosts: list[str], live: bool) -> Iterator[Callable[[str], None]]:
    """``say`` for a run over ``hosts``: a live board when ``live`` (a terminal, human output),
    else plain timestamped lines."""
    start = time.monotonic()
    if not live:
        def plain(msg: str) -> None:
            console.print(f"[{time.monotonic() - start:6.1f}s] {msg}", markup=False, highlight=False)

        yield plain
        return
    from rich.live import Live

    board = HostBoard(hosts)
    with Live(board.table(), console=console, refresh_per_second=4, transient=False) as view:
        def say(msg: str) -> None:
            if not board.take(msg):
                view.console.print(f"[{time.monotonic() - start:6.1f}s] {msg}", markup=False, highlight=False)
            view.update(board.table())

        yield say
