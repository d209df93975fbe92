"""`nvmeofctl health`: read-only RoCE v2 / NVMe-oF health of every host in the spec."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nvmeofctl.cli.context import finish, stderr_console, stdout_console
from nvmeofctl.cli.limit import LimitOpt, parse_limit
from nvmeofctl.cli.output import output_option
from nvmeofctl.cli.spec import InsecureSecretPermsOpt, InventoryOpt, apply_inventory
from nvmeofctl.report.output import OutputFormat, emit_json

HELP = """Check the fabric and NVMe-oF state of every host in the spec (read-only).

One SSH round trip per host (all in parallel) runs a read-only probe; counters are sampled twice, WINDOW seconds apart, and judged as deltas. Checks: kernel modules, fabric interface and IP, RDMA device bound to the interface, port ACTIVE/LINK_UP, RoCE v2 GID for the fabric IP, MTU and active_mtu (fleet-wide), link speed, rdma_cm default mode/TOS, DSCP trust, PFC, ECN, global pause (na on soft-RoCE), drop/retransmit/congestion counters, NVMe controllers live with the spec's reconnect policy and iopolicy, host NQN/ID (unique across GPU nodes), nvmet ports/subsystems on targets, GPUs and GPU-NIC affinity (PIX/PXB ok, NODE/PHB warn, SYS fail).

\b
Exit codes:
  0   healthy (every finding ok or na)
  10  degraded (any warn)
  11  unhealthy (any fail)
  6   some host unreachable: the result is incomplete, so 6 wins over 11/10
  4   some host refused SSH (host key changed or unknown, login refused): incomplete too, wins over 11/10
  3   invalid spec (missing file, bad YAML, invalid field)
  130 interrupted (Ctrl-C)
\b
Prometheus (--output prometheus, node_exporter textfile format):
  nvmeofctl_health_check{host,check,device} = 0 ok, 1 warn, 2 fail, -1 na, 3 unreachable, 4 refused

\b
Example:
  nvmeofctl health -f cluster.yaml
  nvmeofctl health -f cluster.yaml --perf --output json
  nvmeofctl health -f cluster.yaml -o prometheus > /var/lib/node_exporter/nvmeofctl.prom
"""


def register(app: typer.Typer) -> None:
    app.command("health", help=HELP)(health_command)


def health_command(
    file: Path = typer.Option(..., "--file", "-f", help="Cluster spec (YAML)."),
    output: OutputFormat = output_option(
        OutputFormat.table, OutputFormat.json, OutputFormat.prometheus, help="table | json | prometheus"
    ),
    perf: bool = typer.Option(False, "--perf", help="Also run rping + ib_write_bw for every GPU node/target pair."),
    limit: Optional[str] = LimitOpt,
    window: float = typer.Option(3.0, "--window", min=0, max=300, help="Seconds between the two counter samples."),
    problems_only: bool = typer.Option(False, "--problems", help="Table: hide ok and na rows."),
    insecure_secret_perms: bool = InsecureSecretPermsOpt,
    inventory: Optional[Path] = InventoryOpt,
    textfile: Optional[Path] = typer.Option(
        None, "--textfile", help="With --output prometheus: write the exposition to this file atomically "
                                 "(node_exporter's textfile collector; what `monitor install` runs)."),
) -> None:
    # SSH (paramiko), the checks and the spec's models load when the command runs, not for `--help`
    from nvmeofctl.health import expect as expect_mod
    from nvmeofctl.health import runner
    from nvmeofctl.health.model import exit_code_for
    from nvmeofctl.remote import ssh
    from nvmeofctl.report import health as health_report
    from nvmeofctl.report import prometheus

    if textfile is not None and output != OutputFormat.prometheus:
        from nvmeofctl.errors import UsageError

        raise UsageError("--textfile writes the Prometheus exposition: use it with --output prometheus")
    spec = expect_mod.load_spec(str(file), insecure_secret_perms=insecure_secret_perms)
    apply_inventory(spec, inventory)
    exp = expect_mod.expectations_from_spec(spec)
    names = parse_limit(limit, exp.order)
    if limit is not None:  # checks only see the limited hosts; fleet checks compare those
        exp = expect_mod.Expectations(exp.fabric, {n: exp.hosts[n] for n in names})
    err = stderr_console()
    targets = runner.ssh_targets(spec, names)
    err.print(f"probing {len(names)} host(s), counter window {window:g}s ...", markup=False)
    rep = runner.health(exp, targets, window=window, do_perf=perf, run_many=ssh.run_many, run_on=ssh.run_on)
    if output == OutputFormat.json:
        emit_json(health_report.payload(rep.findings, rep.perf, exp.order, window))
    elif output == OutputFormat.prometheus:
        import time

        text = prometheus.render(rep.findings, rep.perf, exp.order, now=time.time())
        if textfile is None:
            typer.echo(text, nl=False)
        else:
            _write_textfile(textfile, text)
    else:
        health_report.render_table(stdout_console(), rep.findings, rep.perf, exp.order, show_ok=not problems_only)
    finish(exit_code_for(rep.findings))


def _write_textfile(path: Path, text: str) -> None:
    """Write atomically (node_exporter may read at any moment): a temporary file beside it, then
    rename. Mode 0644: the textfile holds no secret."""
    import os
    import tempfile

    from nvmeofctl.errors import UsageError

    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise UsageError(f"--textfile {path}: cannot write in {folder}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
