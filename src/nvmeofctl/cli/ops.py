"""Day-2 commands: `status` (the cluster as it is now against the spec), `connect` and
`disconnect` (one GPU node at a time, for maintenance and recovery)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from nvmeofctl.cli.context import finish, progress_printer, stdout_console
from nvmeofctl.cli.limit import LimitOpt
from nvmeofctl.cli.output import output_option
from nvmeofctl.cli.spec import InsecureSecretPermsOpt
from nvmeofctl.exitcodes import ExitCode
from nvmeofctl.report.output import OutputFormat, emit_json

FileOpt = typer.Option(..., "--file", "-f", help="Cluster spec (YAML).")


def read_cluster(spec, names=None):
    """(observed per host read, plan, errors per host not read or not planned): the one read of
    `plan` (one SSH session per host, in parallel) and the plan made from it."""
    from nvmeofctl.facts.hoststate import gather
    from nvmeofctl.plan.planner import make_plan

    states = gather(spec, names)
    observed = {n: s.observed() for n, s in states.items() if s.reachable and not s.error}
    errors = {n: s.error for n, s in states.items() if not s.reachable or s.error}
    plan = make_plan(spec, observed)
    errors.update({h.host: h.error for h in plan.hosts if h.error})
    kinds = {n: ("unreachable" if not s.reachable and s.error_kind == "unreachable" else "refused")
             for n, s in states.items() if not s.reachable or s.error}
    kinds.update({h.host: "refused" for h in plan.hosts if h.error})
    return observed, plan, errors, kinds


def incomplete_or(code: ExitCode, kinds: dict[str, str]) -> ExitCode:
    """An incomplete read wins over what was found (as in `health`): 6 when a host was
    unreachable, else 4 when one refused SSH or could not be read or planned."""
    if "unreachable" in kinds.values():
        return ExitCode.UNREACHABLE
    if kinds:
        return ExitCode.PREFLIGHT
    return code


def status_cmd(
    file: Path = FileOpt,
    output: OutputFormat = output_option(),
    insecure_secret_perms: bool = InsecureSecretPermsOpt,
) -> None:
    """Show the cluster as it is now: each namespace, its target and backing store, and on which
    GPU nodes it is connected, as which block device, over which path, with controller state.

    Drift from the spec is marked: an export missing or disabled on its target, a path missing or
    degraded on a node, settings that differ (`plan` lists the exact changes), a wrong multipath
    policy, and controllers the spec does not want on a node (unexpected). Read-only: the same
    one SSH round trip per host as `plan`, and drift is what `plan` would change.

    \b
    Exit codes:
      0    everything as the spec says
      10   drift (see the marks)
      6    some host unreachable (its part shows as unknown): wins over 10
      4    some host refused SSH (host key, login), failed its read or cannot be planned: wins over 10
      3    invalid spec (missing file, bad YAML, invalid field)

    Example: nvmeofctl status -f cluster.yaml --output json
    """
    from nvmeofctl.report.status import render_table
    from nvmeofctl.spec import load_spec
    from nvmeofctl.status.model import build_status

    spec = load_spec(file, insecure_secret_perms=insecure_secret_perms)
    say = progress_printer()
    say(f"reading {len(spec.hosts)} host(s): {', '.join(h.name for h in spec.hosts)}")
    observed, plan, errors, kinds = read_cluster(spec)
    st = build_status(spec, observed, plan, errors)
    code = incomplete_or(ExitCode.DEGRADED if st.drift else ExitCode.OK, kinds)
    if output == OutputFormat.json:
        emit_json({"spec": str(file), "exit_code": int(code), **st.to_dict()})
    else:
        render_table(stdout_console(), st)
    finish(code)


NodeOpt = typer.Option(..., "--node", help="The GPU node to act on (a host name of the spec).")
NamespaceOpt = typer.Option(
    None, "--namespace", help="Only the subsystem that holds this namespace (a namespace name of the spec); "
                              "default: every subsystem the spec exports to the node.")
CheckOpt = typer.Option(False, "--check", help="Show what would change on the node, change nothing.")


def _node_op(action: str, file: Path, node: str, namespace: str | None, check: bool, force: bool,
             output: OutputFormat, insecure_secret_perms: bool) -> None:
    from nvmeofctl.errors import DisruptiveRefused
    from nvmeofctl.facts import blockusers
    from nvmeofctl.facts.hoststate import gather
    from nvmeofctl.plan import node_ops
    from nvmeofctl.plan.selection import require_all
    from nvmeofctl.run.inventory import build_inventory
    from nvmeofctl.run.runner import run_playbook
    from nvmeofctl.spec import load_spec

    spec = load_spec(file, insecure_secret_perms=insecure_secret_perms)
    nqns = node_ops.subsystems_for(spec, node, namespace)
    say = progress_printer()
    say(f"reading {node}")
    extra = {node: [(blockusers.SECTION, blockusers.USERS_COMMAND)]} if action == "disconnect" else None
    states = gather(spec, [node], extra=extra)
    require_all(spec, [node], states)
    observed = states[node].observed()
    args = node_ops.node_args(spec, node, nqns, action)
    changes = node_ops.node_changes(node, args, observed)
    if action == "connect" and any(c.disruptive for c in changes):
        lines = [f"{c.object}: {c.detail} ({c.reason})" for c in changes if c.disruptive]
        raise DisruptiveRefused(f"connecting {node} would also make disruptive changes; review them with "
                                "`nvmeofctl plan` and use `apply --allow-disruptive`:\n" + "\n".join(lines))
    devices = node_ops.devices_of(observed, nqns)
    users = [u for u in blockusers.parse_users(states[node].sections.get(blockusers.SECTION, ""))
             if u.device in devices] if action == "disconnect" else []
    if users and not force and not check:
        raise DisruptiveRefused(f"{node}: refusing to disconnect, in use: "
                                + "; ".join(f"/dev/{u.device} {u}" for u in users)
                                + " (unmount or stop it first, or --force)")
    result = None
    if changes and not check:
        say(f"{action}: {len(changes)} change(s) on {node}")
        inventory = build_inventory(spec, {node: {"nvmeofctl_nvme_host": args}})
        result = run_playbook("site.yml", inventory, limit=node, progress=say)
    code = result.exit_code if result is not None else ExitCode.OK
    done = [c.to_dict() for c in changes]
    failure = None
    if result is not None:
        failure = next((t.msg for t in result.tasks if t.status in ("failed", "unreachable")), None)
        done = [c for t in result.tasks for c in t.changes] or done
    if output == OutputFormat.json:
        emit_json({"spec": str(file), "action": action, "node": node, "subsystems": nqns, "check": check,
                   "devices": ["/dev/" + d for d in devices], "in_use": [str(u) for u in users],
                   "changes": done, "failure": failure, "exit_code": int(code)})
    else:
        out = stdout_console()
        verb = "would change" if check else "changed"
        if not changes:
            out.print(f"{node}: nothing to {action} ({', '.join(nqns)} already as asked)", markup=False)
        for c in done:
            out.print(f"{node}: {verb}: {c.get('action')} {c.get('object')}: {c.get('detail')}", markup=False)
        for u in users:
            out.print(f"{node}: warning: /dev/{u.device} was {u} (--force)", markup=False)
        if failure:
            out.print(f"{node}: failed: {failure}", markup=False)
    finish(code)


def connect_cmd(
    file: Path = FileOpt,
    node: str = NodeOpt,
    namespace: Optional[str] = NamespaceOpt,
    check: bool = CheckOpt,
    output: OutputFormat = output_option(),
    insecure_secret_perms: bool = InsecureSecretPermsOpt,
) -> None:
    """Connect one GPU node's paths as the spec says (after `disconnect`, a manual `nvme
    disconnect`, or a lost path), leaving its other paths as they are.

    Acts only on the node and the subsystems asked for (the one holding --namespace, or all the
    spec exports to the node); refuses what the spec does not export to that node. The node's
    boot-time connections follow the spec again. Uses the plan's read and nvme_host's own diff;
    refuses (7) when that would also make a disruptive change (use `apply --allow-disruptive`).

    \b
    Exit codes:
      0    connected (or nothing to do)
      2    the node or namespace is not in the spec, or not exported there
      3    invalid spec
      4    preflight failed (host key, SSH login, missing tool or kernel module)
      5    the connect failed on the node
      6    node unreachable
      7    a disruptive change would be needed: nothing changed

    Example: nvmeofctl connect -f cluster.yaml --node gpu2 --namespace train
    """
    _node_op("connect", file, node, namespace, check, False, output, insecure_secret_perms)


def disconnect_cmd(
    file: Path = FileOpt,
    node: str = NodeOpt,
    namespace: Optional[str] = NamespaceOpt,
    check: bool = CheckOpt,
    force: bool = typer.Option(False, "--force", help="Disconnect even if a device is mounted, held or open."),
    output: OutputFormat = output_option(),
    insecure_secret_perms: bool = InsecureSecretPermsOpt,
) -> None:
    """Disconnect one GPU node's paths (maintenance): they stay down, across reboots too,
    until `connect` (or `apply`) brings them back.

    Refuses (7), naming the device and its mountpoint, holder or process, while a namespace is
    mounted, held (device-mapper, md) or open on the node, unless --force. Acts only on the node
    and the subsystems asked for (the one holding --namespace, or all the spec exports to the
    node). `status` shows the paths as missing meanwhile.

    \b
    Exit codes:
      0    disconnected (or nothing to do)
      2    the node or namespace is not in the spec, or not exported there
      3    invalid spec
      4    preflight failed (host key, SSH login, missing tool or kernel module)
      5    the disconnect failed on the node
      6    node unreachable
      7    in use (mounted, held or open): nothing changed

    Example: nvmeofctl disconnect -f cluster.yaml --node gpu2 --namespace train
    """
    _node_op("disconnect", file, node, namespace, check, force, output, insecure_secret_perms)


class TopologyFormat(str, Enum):
    text = "text"
    dot = "dot"
    svg = "svg"
    png = "png"


def topology_cmd(
    file: Path = FileOpt,
    fmt: TopologyFormat = typer.Option(TopologyFormat.text, "--format", help="text | dot (Graphviz) | svg | png"),
    out: Optional[Path] = typer.Option(None, "--out", help="Write to this file (default: stdout; png needs a file)."),
    from_spec: bool = typer.Option(False, "--from-spec", help="Draw the spec alone: no host is read (no states)."),
    insecure_secret_perms: bool = InsecureSecretPermsOpt,
) -> None:
    """Draw the cluster: targets -> subsystems -> namespaces -> GPU nodes, each path labelled with
    its block device and coloured by its state (green connected, orange degraded, red missing,
    grey unknown), the fabric's addresses on the boxes.

    Reads the hosts as `status` does (one SSH round trip each, read-only) unless --from-spec. SVG
    is drawn by nvmeofctl itself; PNG is rendered by Graphviz's `dot` (install graphviz).

    \b
    Exit codes:
      0    drawn
      2    png without --out, or without Graphviz
      3    invalid spec
    (an unreachable host is drawn as unknown, not an error: `status` says why)

    \b
    Examples:
      nvmeofctl topology -f cluster.yaml
      nvmeofctl topology -f cluster.yaml --format svg --out fabric.svg
    """
    import shutil
    import subprocess

    from nvmeofctl.errors import UsageError
    from nvmeofctl.plan.planner import Plan
    from nvmeofctl.report import topology
    from nvmeofctl.spec import load_spec
    from nvmeofctl.status.model import build_status

    if fmt == TopologyFormat.png and out is None:
        raise UsageError("--format png writes a binary image: give --out FILE")
    if fmt == TopologyFormat.png and shutil.which("dot") is None:
        raise UsageError("--format png needs Graphviz's `dot` (apt install graphviz); "
                         "--format svg needs nothing")
    spec = load_spec(file, insecure_secret_perms=insecure_secret_perms)
    if from_spec:
        st = build_status(spec, {}, Plan([]), {})
    else:
        progress_printer()(f"reading {len(spec.hosts)} host(s)")
        observed, plan, errors, _kinds = read_cluster(spec)
        st = build_status(spec, observed, plan, errors)
    live = not from_spec
    if fmt == TopologyFormat.png:
        data = subprocess.run(["dot", "-Tpng"], input=topology.dot(spec, st, live).encode(), capture_output=True,
                              check=True, timeout=60).stdout
        out.write_bytes(data)
    else:
        render = {TopologyFormat.text: topology.text, TopologyFormat.dot: topology.dot,
                  TopologyFormat.svg: topology.svg}[fmt]
        doc = render(spec, st, live)
        if out is None:
            typer.echo(doc, nl=False)
        else:
            out.write_text(doc, encoding="utf-8")
    if out is not None:
        progress_printer()(f"wrote {out}")
    finish(ExitCode.OK)


def teardown_cmd(
    file: Path = FileOpt,
    limit: Optional[str] = LimitOpt,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation (needed off a terminal)."),
    force: bool = typer.Option(False, "--force", help="Tear down even if a namespace is mounted, held or open on "
                                                      "a GPU node."),
    check: bool = CheckOpt,
    output: OutputFormat = output_option(),
    insecure_secret_perms: bool = InsecureSecretPermsOpt,
) -> None:
    """Remove what the spec created: GPU nodes first (nvmeofctl's connections, boot-time connect
    unit and files), then targets (the subsystems, namespaces, hosts and ports nvmeofctl
    recorded, the restore unit and files), and the RDMA link's boot unit and script.

    Kept: backing files (data: listed at the end), the live RDMA link (MTU, Soft-RoCE device),
    host identities (/etc/nvme/hostnqn, hostid), and everything nvmeofctl did not create.
    Refuses, changing nothing on any host, while a namespace is mounted, held or open on a GPU
    node (naming node, device and mountpoint, holder or process) unless --force. Asks for
    confirmation on a terminal unless --yes. Idempotent: a second teardown changes nothing.

    \b
    Exit codes:
      0    torn down (or nothing left to remove)
      2    not confirmed, or no --yes off a terminal
      3    invalid spec
      4    preflight failed (host key, SSH login, missing tool)
      5    a step failed on some host (targets are not touched when a GPU node failed)
      6    some host unreachable: nothing changed
      7    a namespace is in use: nothing changed

    \b
    Examples:
      nvmeofctl teardown -f cluster.yaml --check
      nvmeofctl teardown -f cluster.yaml --limit gpu2 --yes
    """
    import sys

    from nvmeofctl.cli.limit import parse_limit
    from nvmeofctl.errors import DisruptiveRefused, PreflightError, UsageError
    from nvmeofctl.facts import blockusers
    from nvmeofctl.facts.hoststate import gather
    from nvmeofctl.plan import node_ops, teardown
    from nvmeofctl.plan.planner import plan_host
    from nvmeofctl.plan.selection import require_all
    from nvmeofctl.run.inventory import build_inventory
    from nvmeofctl.run.runner import run_playbook
    from nvmeofctl.spec import load_spec

    spec = load_spec(file, insecure_secret_perms=insecure_secret_perms)
    names = parse_limit(limit, [h.name for h in spec.hosts])
    say = progress_printer()
    say(f"reading {len(names)} host(s): {', '.join(names)}")
    gpus = [n for n in names if spec.host(n).role == "gpu_node"]
    states = gather(spec, names, extra={n: [(blockusers.SECTION, blockusers.USERS_COMMAND)] for n in gpus})
    # all or nothing: a target torn down under an unreached GPU node leaves it retrying
    require_all(spec, names, states, suffix="\nnothing changed")
    observed = {n: states[n].observed() for n in names}
    ours = [s.nqn for s in spec.subsystems]
    in_use = []
    for n in gpus:
        devices = node_ops.devices_of(observed[n], ours)
        in_use += [(n, u) for u in blockusers.parse_users(states[n].sections.get(blockusers.SECTION, ""))
                   if u.device in devices]
    if in_use and not force and not check:
        raise DisruptiveRefused("refusing to tear down, in use: "
                                + "; ".join(f"{n}: /dev/{u.device} {u}" for n, u in in_use)
                                + " (unmount or stop it first, or --force); nothing changed")
    args = {n: teardown.teardown_args(spec, spec.host(n)) for n in names}
    plans = {n: plan_host(spec, spec.host(n), observed[n], args=args[n]) for n in names}
    errors = [f"{n}: {p.error}" for n, p in plans.items() if p.error]
    if errors:
        raise PreflightError("cannot plan the teardown:\n" + "\n".join(errors))
    todo = [n for n in names if plans[n].changes]
    kept = teardown.kept_backing_files(spec, [n for n in names if spec.host(n).role == "target"])
    rows = {n: {"host": n, "role": spec.host(n).role, "status": "ok" if n not in todo else "planned",
                "changes": [c.to_dict() for c in plans[n].changes], "failure": None} for n in names}
    code = ExitCode.OK
    if todo and not check:
        total = sum(len(plans[n].changes) for n in todo)
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError(f"teardown would make {total} change(s) on {', '.join(todo)}: pass --yes "
                                 "(no terminal to ask on); see them first with --check")
            for n in todo:
                for c in plans[n].changes:
                    stdout_console().print(f"  {n}: {c.action} {c.object}", markup=False)
            if not typer.confirm(f"Remove these {total} thing(s) from {', '.join(todo)}?", default=False):
                raise UsageError("not confirmed: nothing changed")
        hv = {n: teardown.host_vars(args[n]) for n in names}
        inventory = build_inventory(spec, hv)
        for phase in ([n for n in todo if spec.host(n).role == "gpu_node"],
                      [n for n in todo if spec.host(n).role == "target"]):
            if not phase:
                continue
            if code != ExitCode.OK:
                for n in phase:
                    rows[n].update(status="not run", failure="a GPU node's teardown failed first: nothing changed here")
                continue
            say(f"tearing down {', '.join(phase)}")
            result = run_playbook("site.yml", inventory, limit=",".join(phase), progress=say)
            for n in phase:
                tasks = [t for t in result.tasks if t.host == n]
                rows[n].update(status=result.host_status(n), changes=[c for t in tasks for c in t.changes],
                               failure=next((t.msg for t in tasks if t.status in ("failed", "unreachable")), None))
            code = result.exit_code
    if output == OutputFormat.json:
        emit_json({"spec": str(file), "check": check, "exit_code": int(code), "hosts": list(rows.values()),
                   "in_use": [{"host": n, "device": "/dev/" + u.device, "use": str(u)} for n, u in in_use],
                   "kept_backing_files": kept})
    else:
        out = stdout_console()
        verb = "would remove" if check else "removed"
        for r in rows.values():
            if not r["changes"]:
                out.print(f"{r['host']} ({r['role']}): nothing left to remove", markup=False)
            for c in r["changes"]:
                out.print(f"{r['host']}: {verb}: {c.get('action')} {c.get('object')}", markup=False)
            if r["failure"]:
                out.print(f"{r['host']}: failed: {r['failure']}", markup=False)
        for n, u in in_use:
            out.print(f"{n}: warning: /dev/{u.device} was {u} (--force)", markup=False)
        if kept:
            out.print("kept (data): " + ", ".join(kept), markup=False)
    finish(code)


def register(app: typer.Typer) -> None:
    app.command("status")(status_cmd)
    app.command("topology")(topology_cmd)
    app.command("connect")(connect_cmd)
    app.command("disconnect")(disconnect_cmd)
    app.command("teardown")(teardown_cmd)
