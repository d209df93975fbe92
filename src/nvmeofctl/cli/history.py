"""`nvmeofctl history`: what each `apply` changed, and when (from the run records)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import typer

from nvmeofctl.cli.context import stderr_console, stdout_console
from nvmeofctl.cli.output import output_option
from nvmeofctl.report.output import OutputFormat, emit_json

if TYPE_CHECKING:
    from rich.console import Console

# the symbols `apply` prints in front of a change
_SYMBOL = {"create": "+", "connect": "+", "update": "~", "reconnect": "~", "delete": "-", "disconnect": "-"}

HELP = """List the recorded `apply` runs, newest first: when, dry run or not, exit code, hosts changed, changes, failed or skipped hosts.

Every `apply` (`--check` included) leaves a record in $NVMEOFCTL_STATE/runs, else $XDG_STATE_HOME/nvmeofctl/runs, else ~/.local/state/nvmeofctl/runs (folder 0700, files 0600; the newest 500 are kept). Records hold the plan, the per-host changes and failures, timings and the exit code, never a secret. --show ID prints one run in full.

\b
Example:
  nvmeofctl history
  nvmeofctl history --limit 5 --output json
  nvmeofctl history --show 20240301T120000Z-4242-a1b2
"""


def register(app: typer.Typer) -> None:
    app.command("history", help=HELP)(history_command)


def _mode(record: dict[str, Any]) -> str:
    return "apply --check" if record.get("check") else "apply"


def _problems_cell(summary: dict[str, Any]) -> str:
    status = summary["host_status"]
    parts = [f"{h} ({status.get(h)})" for h in summary["failed_hosts"] + summary["skipped_hosts"]]
    cell = ", ".join(parts)
    error = (summary.get("error") or "").strip()
    if error:
        first = error.splitlines()[0]
        first = first if len(first) <= 60 else first[:57] + "..."
        cell = f"{cell}; error: {first}" if cell else f"error: {first}"
    return cell


def _render_list(out: Console, summaries: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from nvmeofctl.run import records

    table = Table(title="apply runs (newest first)", title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("started", no_wrap=True)
    table.add_column("mode", no_wrap=True)
    table.add_column("exit", justify="right")
    table.add_column("hosts changed", justify="right")
    table.add_column("changes", justify="right")
    table.add_column("failed/skipped hosts", overflow="fold")
    table.add_column("spec", overflow="fold")
    for s in summaries:
        table.add_row(
            str(s["id"]), records.local_time(s["started"]), s["mode"], str(s["exit_code"]),
            f"{len(s['hosts_changed'])}/{s['hosts']}", str(s["changes"]), _problems_cell(s), str(s["spec"] or ""),
        )
    out.print(table)


def _change_line(host: str, change: dict[str, Any]) -> str:
    flag = "  DISRUPTIVE" if change.get("disruptive") else ""
    return f"  {host}: {_SYMBOL.get(change.get('action'), '*')} {change.get('object')}: {change.get('detail')}{flag}"


def _render_record(out: Console, record: dict[str, Any]) -> None:
    from rich.table import Table

    from nvmeofctl.run import records

    say = lambda line: out.print(line, markup=False)  # noqa: E731 - record strings are data, not markup
    say(f"run {record.get('id')}: {_mode(record)}, exit {record.get('exit_code')}")
    say(f"  started   {records.local_time(record.get('started'))} (local), took {record.get('seconds')}s, "
        f"by {record.get('user')}")
    sha = record.get("spec_sha256")
    say(f"  spec      {record.get('spec')}" + (f" (sha256 {sha})" if sha else " (not readable then)"))
    flags = [f for f, on in (("--check", record.get("check")), ("--allow-disruptive", record.get("allow_disruptive")),
                             ("--strict", record.get("strict"))) if on]
    if record.get("limit"):
        flags.append("--limit " + ",".join(str(n) for n in record["limit"]))
    say(f"  options   {' '.join(flags) or '(none)'}")
    phases = record.get("phases") or []
    if phases:
        say("  phases    " + ", ".join(f"{p.get('name')} {p.get('seconds')}s" for p in phases if isinstance(p, dict)))
    plan = record.get("plan")
    if isinstance(plan, dict):
        say(f"  plan      {plan.get('changes')} change(s), {plan.get('disruptive')} disruptive")
    else:
        say("  plan      (none: the run stopped before planning)")
    for i, line in enumerate((record.get("error") or "").splitlines()):
        say(("  error     " if i == 0 else "            ") + line)

    hosts = [h for h in record.get("hosts") or [] if isinstance(h, dict)]
    listed = {h.get("host") for h in hosts}
    skipped = [s for s in record.get("skipped") or [] if isinstance(s, dict) and s.get("host") not in listed]
    rows = hosts + skipped
    if rows:
        table = Table(title="hosts", title_justify="left")
        for col in ("host", "role", "status", "changed tasks", "changes", "failure"):
            table.add_column(col)
        for r in rows:
            table.add_row(str(r.get("host")), str(r.get("role") or ""), str(r.get("status") or ""),
                          str(r.get("changed_tasks", 0)), str(len(r.get("changes") or [])), str(r.get("failure") or ""))
        out.print(table)
    changes = [(str(r.get("host")), c) for r in hosts for c in r.get("changes") or [] if isinstance(c, dict)]
    if changes:
        say("changes" + (" (predicted: check mode)" if record.get("check") else "") + ":")
        for host, c in changes:
            say(_change_line(host, c))
    elif not hosts and isinstance(plan, dict):
        planned = [(str(h.get("host")), c) for h in plan.get("hosts") or [] if isinstance(h, dict)
                   for c in h.get("changes") or [] if isinstance(c, dict)]
        if planned:
            say("planned (not applied):")
            for host, c in planned:
                say(_change_line(host, c))


def history_command(
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="Show at most N runs (newest first)."),
    output: OutputFormat = output_option(),
    show: Optional[str] = typer.Option(None, "--show", metavar="ID", help="Print one run in full (id or a unique prefix)."),
) -> None:
    from nvmeofctl.run import records  # on use: `--help` stays cheap (issue #9)

    if show is not None:
        record = records.load_record(show)
        if output == OutputFormat.json:
            emit_json(record)
        else:
            _render_record(stdout_console(), record)
        return
    hist = records.read_history()
    err = stderr_console()
    for problem in hist.problems:
        err.print(f"warning: skipped {problem}", markup=False)
    summaries = [records.summarize(r) for r in hist.records]
    shown = summaries[:limit]
    if output == OutputFormat.json:
        emit_json({"state_dir": str(hist.folder.parent), "total": len(summaries), "runs": shown,
                   "problems": hist.problems})
        return
    if not summaries:
        stdout_console().print(f"no runs recorded yet in {hist.folder} (each `nvmeofctl apply` adds one)",
                               markup=False)
        return
    _render_list(stdout_console(), shown)
    if len(summaries) > len(shown):
        err.print(f"showing the newest {len(shown)} of {len(summaries)} runs (--limit N for more)", markup=False)
