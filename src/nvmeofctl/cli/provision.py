"""`nvmeofctl plan` and `nvmeofctl apply`: from one cluster spec to configured hosts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from nvmeofctl.cli.context import finish, progress_printer, stderr_console, stdout_console
from nvmeofctl.cli.lazy import bind, lazy_names
from nvmeofctl.cli.limit import LimitOpt, parse_limit
from nvmeofctl.cli.output import output_option
from nvmeofctl.cli.spec import InsecureSecretPermsOpt, InventoryOpt, apply_inventory
from nvmeofctl.errors import DisruptiveRefused, NvmeofctlError, PreflightError
from nvmeofctl.exitcodes import ExitCode
from nvmeofctl.report.output import OutputFormat, emit_json

if TYPE_CHECKING:
    from rich.table import Table

    from nvmeofctl.facts.hoststate import gather
    from nvmeofctl.plan.desired import host_vars
    from nvmeofctl.plan.ordering import order_for
    from nvmeofctl.plan.planner import Plan, make_plan
    from nvmeofctl.plan.preflight import evaluate
    from nvmeofctl.plan.selection import Selection, select_hosts, worst
    from nvmeofctl.run.inventory import build_inventory
    from nvmeofctl.run.records import record_apply
    from nvmeofctl.run.rundir import sweep_stale_run_dirs
    from nvmeofctl.run.runner import RunResult, run_playbook
    from nvmeofctl.spec import load_spec

# SSH (paramiko), the planner, ansible-runner and the spec's models load when `plan` or `apply`
# runs, not for `--help` (issue #9); tests patch them here as before (cli/lazy.py)
_LAZY = {
    "Table": "rich.table",
    "gather": "nvmeofctl.facts.hoststate",
    "host_vars": "nvmeofctl.plan.desired",
    "order_for": "nvmeofctl.plan.ordering",
    "Plan": "nvmeofctl.plan.planner",
    "make_plan": "nvmeofctl.plan.planner",
    "evaluate": "nvmeofctl.plan.preflight",
    "Selection": "nvmeofctl.plan.selection",
    "select_hosts": "nvmeofctl.plan.selection",
    "worst": "nvmeofctl.plan.selection",
    "build_inventory": "nvmeofctl.run.inventory",
    "record_apply": "nvmeofctl.run.records",
    "run_playbook": "nvmeofctl.run.runner",
    "RunResult": "nvmeofctl.run.runner",
    "sweep_stale_run_dirs": "nvmeofctl.run.rundir",
    "load_spec": "nvmeofctl.spec",
}
__getattr__ = lazy_names(globals(), _LAZY)
# what `plan` needs: everything but ansible-runner and the Ansible inventory
_PLAN_NAMES = tuple(n for n in _LAZY if n not in ("Table", "host_vars", "order_for", "build_inventory",
                                                  "record_apply", "run_playbook", "RunResult",
                                                  "sweep_stale_run_dirs"))

FileOpt = typer.Option(..., "--file", "-f", help="Cluster spec (YAML).", exists=False)
OutputOpt = output_option()

_SYMBOL = {"create": "+", "connect": "+", "update": "~", "reconnect": "~", "delete": "-", "disconnect": "-"}


StrictOpt = typer.Option(
    False, "--strict",
    help="All or nothing: stop before any change when a host is unreachable or fails preflight "
         "(default: leave that host, and the GPU nodes that connect to it if it is a target, "
         "untouched, and run the others).",
)


def _read_hosts(spec, names, say, strict: bool) -> tuple[dict[str, dict], Selection]:
    """Preflight + observed state of every selected host (one SSH round trip each).

    Hosts that are unreachable or fail preflight (a changed host key included: never retried,
    never accepted) are left out of the run, with the GPU nodes that connect to a target left
    out; with ``strict`` any such host stops the command before a change."""
    say(f"reading {len(names)} host(s): {', '.join(names)}")
    states = gather(spec, names)
    problems = evaluate(spec, states)
    selection = select_hosts(spec, names, problems)
    if problems and (strict or not selection.run):
        raise PreflightError("\n".join(f"preflight: {p}" for p in problems), exit_code=selection.exit_code)
    for s in selection.skipped:
        say(f"{s.host}: {s.status}: {s.reason}")
    if selection.skipped:
        say(f"going on with {len(selection.run)} of {len(names)} host(s): {', '.join(selection.run)} "
            "(--strict: all or nothing)")
    else:
        say("preflight ok: every host has the tools, kernel modules and features the spec needs")
    return {name: states[name].observed() for name in selection.run}, selection


def _render_plan(plan: Plan, title: str) -> None:
    out = stdout_console()
    for hp in plan.hosts:
        head = f"{hp.host} ({hp.role}): "
        if hp.error:
            out.print(head + f"cannot plan: {hp.error}", markup=False)
            continue
        n, d = len(hp.changes), len(hp.disruptive)
        out.print(head + (f"{n} change{'s' if n != 1 else ''}" + (f", {d} DISRUPTIVE" if d else "") if n else "no changes"),
                  markup=False)
        for c in hp.changes:
            flag = "  DISRUPTIVE" if c.disruptive else ""
            out.print(f"  {_SYMBOL.get(c.action, '*')} {c.object}: {c.detail}{flag}", markup=False)
            if c.disruptive and c.reason:
                out.print(f"      why: {c.reason}", markup=False)
    total, dis = len(plan.changes), len(plan.disruptive)
    out.print(f"{title}: {total} change{'s' if total != 1 else ''}, {dis} disruptive", markup=False)


def plan_cmd(
    file: Path = FileOpt,
    limit: Optional[str] = LimitOpt,
    output: OutputFormat = OutputOpt,
    insecure_secret_perms: bool = InsecureSecretPermsOpt,
    strict: bool = StrictOpt,
    inventory: Optional[Path] = InventoryOpt,
) -> None:
    """Show, per host, the ordered changes `apply` would make; disruptive ones are marked.

    Reads every host (read-only, one SSH session each) and diffs with the same code the
    modules run. Changes nothing.

    \b
    Exit codes (as `apply`; see README "Exit codes"):
      0    planned (disruptive changes are shown, `apply` refuses them with 7)
      3    invalid spec (missing file, bad YAML, invalid field)
      4    preflight failed (host key changed or unknown, SSH login, missing tool or feature)
      6    hosts unreachable

    Example: nvmeofctl plan -f cluster.yaml --output json
    """
    bind(globals(), _LAZY, *_PLAN_NAMES)
    spec = load_spec(file, insecure_secret_perms=insecure_secret_perms)
    apply_inventory(spec, inventory)
    names = parse_limit(limit, [h.name for h in spec.hosts])
    say = progress_printer()
    observed, selection = _read_hosts(spec, names, say, strict)
    plan = make_plan(spec, observed)
    if output == OutputFormat.json:
        emit_json({"spec": str(file), **plan.to_dict(), "skipped": [s.to_dict() for s in selection.skipped]})
    else:
        _render_plan(plan, "plan")
        for s in selection.skipped:
            stdout_console().print(f"{s.host} ({s.role}): not planned: {s.status}: {s.reason}", markup=False)
    finish(worst(selection.exit_code, ExitCode.PREFLIGHT if any(h.error for h in plan.hosts) else ExitCode.OK))


def apply_cmd(
    file: Path = FileOpt,
    check: bool = typer.Option(False, "--check", help="Dry run: predict and show the changes, change nothing."),
    limit: Optional[str] = LimitOpt,
    allow_disruptive: bool = typer.Option(
        False, "--allow-disruptive",
        help="Also make disruptive changes (port moves, namespace device changes, removals, disconnects).",
    ),
    output: OutputFormat = OutputOpt,
    insecure_secret_perms: bool = InsecureSecretPermsOpt,
    strict: bool = StrictOpt,
    forks: int = typer.Option(
        16, "--forks", min=1, max=1024,
        help="Hosts Ansible configures at once (its forks). Each fork is a process on this machine "
             "(~40-60 MiB): raise it for large fleets as far as memory allows (README: Scaling).",
    ),
    inventory: Optional[Path] = InventoryOpt,
) -> None:
    """Configure every host as the spec says: RoCE v2 link, nvmet targets, GPU-node connections.

    Idempotent: a second apply changes nothing. Disruptive changes (anything that can drop a
    GPU node's I/O) are refused unless --allow-disruptive is given. A host that is unreachable or
    fails preflight is left untouched (and so are the GPU nodes that connect to it, if it is a
    target) while the others are configured; --strict stops everything instead.

    \b
    Exit codes (the worst outcome):
      0    all done
      3    invalid spec (missing file, bad YAML, invalid field)
      4    preflight failed (host key changed or unknown, SSH login, missing tool or feature)
      5    tasks failed on some hosts
      6    hosts unreachable
      7    disruptive changes refused (no --allow-disruptive): nothing changed
      130  interrupted (Ctrl-C); other signals 128+n

    Example: nvmeofctl apply -f cluster.yaml --check
    """
    bind(globals(), _LAZY)
    rec: dict = {"plan": None, "selection": None, "rows": [], "code": ExitCode.INTERNAL, "phases": []}
    started = time.time()
    error = None
    try:
        rec["code"] = _apply(rec, file, check, limit, allow_disruptive, output, insecure_secret_perms, strict,
                             forks, inventory)
    except NvmeofctlError as exc:
        rec["code"], error = exc.exit_code, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise
    except KeyboardInterrupt:
        rec["code"], error = ExitCode.INTERRUPTED, "interrupted"
        raise
    except BaseException as exc:  # signals (SystemExit 128+n) and bugs: still leave a record
        code = getattr(exc, "code", None)
        rec["code"] = code if isinstance(code, int) and code else ExitCode.INTERNAL
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        sel = rec["selection"]
        record_apply(
            spec_path=file, check=check, allow_disruptive=allow_disruptive, limit=limit, strict=strict,
            plan=rec["plan"].to_dict() if rec["plan"] is not None else None,
            skipped=[s.to_dict() for s in sel.skipped] if sel is not None else [],
            hosts=rec["rows"], exit_code=int(rec["code"]), error=error,
            started=started, finished=time.time(), phases=rec["phases"],
            warn=lambda m: stderr_console().print(f"warning: {m}", markup=False),
        )
    finish(rec["code"])


def _apply(rec, file, check, limit, allow_disruptive, output, insecure_secret_perms, strict,
           forks: int, inventory: Path | None = None) -> ExitCode:
    """The body of `apply`; fills ``rec`` (plan, selection, rows, phase timings) as it goes, for
    the run record, and returns the run's exit code."""
    t0 = time.monotonic()

    def phase(name: str) -> None:
        nonlocal t0
        now = time.monotonic()
        rec["phases"].append({"name": name, "seconds": round(now - t0, 3)})
        t0 = now

    spec = load_spec(file, insecure_secret_perms=insecure_secret_perms)
    apply_inventory(spec, inventory)
    names = parse_limit(limit, [h.name for h in spec.hosts])
    say = progress_printer()
    for gone in sweep_stale_run_dirs():  # a killed run's inventory (keys): not left for later
        say(f"removed {gone.name}, left by a run that was killed")
    observed, selection = _read_hosts(spec, names, say, strict)
    rec["selection"] = selection
    plan = make_plan(spec, observed)
    rec["plan"] = plan
    phase("read and plan")
    errors = [h for h in plan.hosts if h.error]
    if errors:
        raise PreflightError("\n".join(f"{h.host}: {h.error}" for h in errors))
    say(f"plan: {len(plan.changes)} change(s), {len(plan.disruptive)} disruptive")
    if plan.disruptive and not allow_disruptive and not check:
        lines = [f"{c.host}: {c.object}: {c.detail} ({c.reason})" for c in plan.disruptive]
        raise DisruptiveRefused(
            f"{len(lines)} disruptive change(s) need --allow-disruptive (see `nvmeofctl plan`):\n" + "\n".join(lines)
        )
    hv = host_vars(spec, in_run=set(selection.run))
    for h in hv.values():
        for key in ("nvmeofctl_nvmet", "nvmeofctl_nvme_host"):
            if key in h:  # the modules re-check on the host, against what they see there
                h[key]["allow_disruptive"] = bool(allow_disruptive)
    order = order_for(plan, check=check)
    removed = [c for c in plan.changes if c.concern == "nvmet" and c.action == "delete"]
    for s in selection.skipped:
        if s.role == "gpu_node" and removed and not check:
            say(f"warning: {s.host} was not reached: if it still uses what {removed[0].host} removes "
                f"({removed[0].object}), its controller retries until ctrl_loss_tmo")
    # a host whose plan is empty (its boot persistence files read and planned too) needs no
    # module run: the plan and the modules share the diff, so this is exact (issue #9)
    converged = [h.host for h in plan.hosts if h.converged]
    to_run = [n for n in selection.run if n not in converged]
    if converged:
        say(f"no changes on {len(converged)} host(s), not running Ansible there: {', '.join(converged)}")
    if to_run:
        inventory = build_inventory(spec, hv, release=order.release)
        if order.ordered:
            say(f"ordered run ({order.why}): playbooks/{order.playbook}")
        else:
            say(f"running playbooks/{order.playbook} on {len(to_run)} host(s)" + (" in check mode" if check else ""))
        from nvmeofctl.cli.context import is_interactive
        from nvmeofctl.cli.liveprogress import host_progress

        # a live board per host on a terminal; plain lines in logs and with --output json
        with host_progress(stderr_console(), to_run, is_interactive() and output != OutputFormat.json) as progress:
            result = run_playbook(order.playbook, inventory, check=check, limit=",".join(to_run),
                                  progress=progress, forks=forks)
        phase(f"playbooks/{order.playbook}")
    else:
        result = RunResult(rc=0, stats={}, tasks=[])
        say("every host is converged: nothing to run")
    skipped = {s.host: s for s in selection.skipped}
    stopped_by = [h for h in order.release if result.host_status(h) in ("failed", "unreachable")]
    rows = []
    for host in spec.hosts:
        if host.name not in names:
            continue
        if host.name in skipped:
            rows.append({**skipped[host.name].to_dict(), "changed_tasks": 0, "changes": []})
            continue
        if host.name in converged:
            rows.append({"host": host.name, "role": host.role, "status": "ok", "changed_tasks": 0,
                         "changes": [], "failure": None})
            continue
        st = result.stats.get(host.name, {})
        tasks = [t for t in result.tasks if t.host == host.name]
        changes = [c for t in tasks for c in t.changes]
        failure = next((t.msg for t in tasks if t.status in ("failed", "unreachable")), "")
        if not tasks and stopped_by:
            failure = f"not run: {', '.join(stopped_by)} could not release paths first (nothing changed here)"
        rows.append({
            "host": host.name, "role": host.role, "status": result.host_status(host.name),
            "changed_tasks": st.get("changed", 0), "changes": changes, "failure": failure or None,
        })
    code = worst(selection.exit_code, result.exit_code)
    rec["rows"] = rows
    if output == OutputFormat.json:
        emit_json({"spec": str(file), "check": check, "exit_code": int(code),
                   "order": {"playbook": order.playbook, "release": order.release, "why": order.why or None},
                   "stats": result.stats, "hosts": rows})
    else:
        table = Table(title="apply (check mode: nothing changed)" if check else "apply", title_justify="left")
        for col in ("host", "role", "status", "changed tasks", "changes", "failure"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["host"], r["role"], r["status"], str(r["changed_tasks"]), str(len(r["changes"])),
                          r["failure"] or "")
        stdout_console().print(table)
        for r in rows:
            for c in r["changes"]:
                flag = "  DISRUPTIVE" if c.get("disruptive") else ""
                stdout_console().print(
                    f"  {r['host']}: {_SYMBOL.get(c.get('action'), '*')} {c.get('object')}: {c.get('detail')}{flag}",
                    markup=False,
                )
    return code


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_cmd)
    app.command("apply")(apply_cmd)
