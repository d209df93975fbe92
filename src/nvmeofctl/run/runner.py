"""Run a packaged playbook with ansible-runner: per-host progress from events, stats for exit codes.

Secrets reach the hosts inside the inventory (no_log tasks). ansible-runner keeps the
inventory, env and events in its private data dir, so that dir is a private 0700 run dir
(run/rundir.py: per-user parent, removed on return, exception, SIGHUP/SIGTERM/SIGINT, and by
the next run after a SIGKILL).
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from nvmeofctl.errors import NvmeofctlError
from nvmeofctl.exitcodes import ExitCode, for_signal
from nvmeofctl.resources import collections_dir, playbooks_dir
from nvmeofctl.run.inventory import unsafe_yaml
from nvmeofctl.run.rundir import private_run_dir, remove_tree


@dataclass
class TaskResult:
    host: str
    task: str
    action: str
    status: str  # ok | changed | failed | unreachable | skipped
    changes: list[dict] = field(default_factory=list)
    msg: str = ""


@dataclass
class RunResult:
    rc: int
    stats: dict[str, dict[str, int]]  # host -> {ok, changed, failures, unreachable, skipped}
    tasks: list[TaskResult]

    def host_status(self, host: str) -> str:
        s = self.stats.get(host, {})
        if s.get("unreachable"):
            return "unreachable"
        if s.get("failures"):
            return "failed"
        if s.get("changed"):
            return "changed"
        return "ok" if s else "skipped"

    @property
    def exit_code(self) -> ExitCode:
        statuses = {self.host_status(h) for h in self.stats}
        if "unreachable" in statuses:
            return ExitCode.UNREACHABLE
        if "failed" in statuses or (self.rc != 0 and not self.stats):
            return ExitCode.TASK_FAILED
        return ExitCode.OK


Progress = Callable[[str], None]

_STATUS_BY_EVENT = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}


# A unix socket path holds at most 107 bytes (sun_path is 108 with the NUL). Ansible's ControlPath
# is `<dir>/%C` (a 40-hex hash), and ssh binds it first as `<path>.<16 random chars>`.
SUN_PATH_MAX = 107
CONTROL_NAME_LEN = len("/") + 40 + len(".") + 16


@contextmanager
def control_path_dir(run_dir: Path) -> Iterator[Path]:
    """A 0700 folder for ssh's ControlMaster sockets: `<run_dir>/cp` when the socket paths fit,
    else a short `nvcp-*` folder in the temp dir (sockets only, no keys), removed afterwards."""
    cp = run_dir / "cp"
    if len(os.fsencode(cp)) + CONTROL_NAME_LEN <= SUN_PATH_MAX:
        cp.mkdir(mode=0o700)
        yield cp
        return
    tmp = tempfile.gettempdir()
    if len(os.fsencode(tmp)) + len("/nvcp-12345678") + CONTROL_NAME_LEN > SUN_PATH_MAX:
        tmp = "/tmp"
    short = Path(tempfile.mkdtemp(prefix="nvcp-", dir=tmp))
    try:
        yield short
    finally:
        remove_tree(short)


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= 300 else text[:297] + "..."


_CANCEL_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _signals_cancel() -> Iterator[list[int]]:
    """While the block runs, SIGINT/SIGTERM/SIGHUP are recorded (first one first) instead of
    acting; the previous handlers come back afterwards. Outside the main thread nothing changes."""
    import threading

    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def record(signum, _frame):
        received.append(signum)

    previous = {}
    for sig in _CANCEL_SIGNALS:
        if signal.getsignal(sig) is signal.SIG_IGN:  # nohup: stays ignored
            continue
        previous[sig] = signal.signal(sig, record)
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_playbook(
    playbook: str,
    inventory: dict[str, Any],
    *,
    check: bool = False,
    limit: str | None = None,
    progress: Progress = lambda s: None,
    forks: int = 16,
) -> RunResult:
    import ansible_runner  # imported lazily: it is slow to import

    tasks: list[TaskResult] = []
    final_stats: dict[str, Any] = {}

    def on_event(event: dict) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {}) or {}
        if kind == "playbook_on_stats":
            final_stats.update(data)
        if kind in _STATUS_BY_EVENT and data.get("host"):
            res = data.get("res", {}) or {}
            status = _STATUS_BY_EVENT[kind]
            if kind == "runner_on_failed" and data.get("ignore_errors"):
                status = "ok"
            if status == "ok" and res.get("changed"):
                status = "changed"
            msg = ""
            if status in ("failed", "unreachable"):
                msg = _one_line(res.get("msg") or res.get("stderr") or res.get("module_stderr") or "")
            task = data.get("task", "")
            tasks.append(TaskResult(
                host=data["host"], task=task, action=data.get("task_action", ""), status=status,
                changes=list(res.get("changes") or []) if isinstance(res.get("changes"), list) else [],
                msg=msg,
            ))
            note = f": {msg}" if msg else ""
            n = len(res.get("changes") or []) if isinstance(res.get("changes"), list) else 0
            extra = f" ({n} change{'s' if n != 1 else ''})" if n else ""
            progress(f"{data['host']}: {task} {status}{extra}{note}")
        elif kind == "playbook_on_task_start":
            progress(f"task: {data.get('task', '')}")
        return False  # do not keep events on disk beyond what runner needs

    with private_run_dir("run") as tmp, control_path_dir(tmp) as cp_dir:
        (tmp / "inventory").mkdir(mode=0o700)
        # YAML with every string tagged !unsafe: spec strings are data, never Jinja2 templates
        inv = tmp / "inventory" / "hosts.yml"
        fd = os.open(inv, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(unsafe_yaml(inventory) + "\n")
        cmdline = []
        if check:
            cmdline += ["--check", "--diff"]
        if limit:
            cmdline += ["--limit", limit]
        bindir = os.path.dirname(sys.executable)  # ansible-playbook lives beside our interpreter
        env = {
            "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
            "ANSIBLE_COLLECTIONS_PATH": str(collections_dir()),
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_NOCOLOR": "True",
            "ANSIBLE_DEPRECATION_WARNINGS": "False",
            "ANSIBLE_LOCALHOST_WARNING": "False",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(cp_dir),
            "ANSIBLE_TIMEOUT": "30",
        }
        # A signal while the playbook runs (Ctrl-C, SIGTERM, SIGHUP from a dropped SSH session)
        # cancels it: ansible-runner stops the playbook's processes when cancel_callback says so
        # (passing one keeps runner from installing handlers of its own), then we leave with the
        # signal's exit status and private_run_dir removes the run dir on the way out.
        with _signals_cancel() as received:
            r = ansible_runner.run(
                private_data_dir=str(tmp),
                playbook=str(playbooks_dir() / playbook),
                inventory=str(inv),
                envvars=env,
                cmdline=" ".join(cmdline) if cmdline else None,
                forks=forks,
                quiet=True,
                event_handler=on_event,
                cancel_callback=lambda: bool(received),
                suppress_env_files=True,
                rotate_artifacts=1,
            )
        if received:
            if received[0] == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(for_signal(received[0]))
        raw = final_stats  # from the playbook_on_stats event (events are not kept on disk)
        stats: dict[str, dict[str, int]] = {}
        for key, name in (("ok", "ok"), ("changed", "changed"), ("failures", "failures"),
                          ("dark", "unreachable"), ("skipped", "skipped")):
            for host, n in (raw.get(key) or {}).items():
                stats.setdefault(host, {"ok": 0, "changed": 0, "failures": 0, "unreachable": 0, "skipped": 0})
                stats[host][name] = n
        for host in (raw.get("processed") or {}):
            stats.setdefault(host, {"ok": 0, "changed": 0, "failures": 0, "unreachable": 0, "skipped": 0})
        if r.rc != 0 and not stats:
            try:
                out = r.stdout.read()
            except Exception:  # noqa: BLE001 - best effort
                out = ""
            tail = " | ".join(line.strip() for line in out.strip().splitlines()[-3:] if line.strip())
            raise NvmeofctlError(f"ansible-playbook {playbook} did not run (rc {r.rc}): {tail or r.status}")
        return RunResult(rc=r.rc, stats=stats, tasks=tasks)
