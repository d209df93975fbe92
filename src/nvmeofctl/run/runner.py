"""Run a packaged playbook with ansible-runner: per-host progress from events, stats for exit codes.

Secrets reach the hosts inside the inventory (no_log tasks). ansible-runner keeps the
inventory, env and events in its private data dir, so that dir is a fresh 0700 temp dir that
is removed after the run.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from nvmeofctl.errors import NvmeofctlError
from nvmeofctl.exitcodes import ExitCode
from nvmeofctl.resources import collections_dir, playbooks_dir


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


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= 300 else text[:297] + "..."


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

    tmp = Path(tempfile.mkdtemp(prefix="nvmeofctl-run-"))
    os.chmod(tmp, 0o700)
    try:
        (tmp / "inventory").mkdir(mode=0o700)
        inv = tmp / "inventory" / "hosts.json"
        fd = os.open(inv, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(inventory, fh)
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
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp / "cp"),
            "ANSIBLE_TIMEOUT": "30",
        }
        r = ansible_runner.run(
            private_data_dir=str(tmp),
            playbook=str(playbooks_dir() / playbook),
            inventory=str(inv),
            envvars=env,
            cmdline=" ".join(cmdline) if cmdline else None,
            forks=forks,
            quiet=True,
            event_handler=on_event,
            suppress_env_files=True,
            rotate_artifacts=1,
        )
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
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
