"""`rollout`: redeploy or reboot the targets one batch at a time while the GPU nodes keep their
I/O on the other paths (dual-controller subsystems, ANA)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nvmeofctl.cli.context import finish, progress_printer, stdout_console
from nvmeofctl.cli.output import output_option
from nvmeofctl.cli.spec import InsecureSecretPermsOpt
from nvmeofctl.exitcodes import ExitCode
from nvmeofctl.report.output import OutputFormat, emit_json


def rollout_cmd(
    file: Path = typer.Option(..., "--file", "-f", help="Cluster spec (YAML)."),
    targets: Optional[str] = typer.Option(
        None, "--targets", help="Comma-separated targets, in the order to roll them (default: every target, "
                                "in spec order)."),
    max_unavailable: int = typer.Option(1, "--max-unavailable", min=1,
                                        help="Targets taken out of service at once (default 1)."),
    reboot: bool = typer.Option(False, "--reboot", help="Reboot each target instead of applying the spec to it."),
    output: OutputFormat = output_option(),
    insecure_secret_perms: bool = InsecureSecretPermsOpt,
) -> None:
    """Roll the spec out to the targets (or reboot them) one batch at a time, without stopping I/O.

    For each batch of at most --max-unavailable targets: move its ANA groups away (inaccessible
    on its ports, optimized on the partner targets), wait until no GPU node uses a path through it,
    apply the spec to it (or reboot it with --reboot), put the spec's ANA states back, and wait
    until every path is live and optimized/non-optimized as the spec says; then the next batch.

    It refuses to start, changing nothing, when any namespace would lose its last live path (a
    single-target subsystem, or a partner target already down), naming the GPU node and
    namespace. Progress goes to stderr; a record of every step to stdout at the end (JSON with
    --output json). Interrupted, a rerun with the same spec and options continues where it
    stopped (journal in nvmeofctl's state directory).

    \b
    Exit codes:
      0    every batch done
      7    refused: a namespace would lose its last live path (nothing changed)
      5    an Ansible step failed or a wait timed out (rerun to continue)
      4/6  a host refused SSH / is unreachable
      2    bad options (unknown target)
      3    invalid spec

    Example: nvmeofctl rollout -f cluster.yaml --reboot --targets stor1,stor2
    """
    from nvmeofctl.rollout.runner import run
    from nvmeofctl.spec import load_spec

    spec = load_spec(file, insecure_secret_perms=insecure_secret_perms)
    names = [t.strip() for t in targets.split(",") if t.strip()] if targets else None
    say = progress_printer()
    record = run(spec, Path(file).read_bytes(), targets=names, max_unavailable=max_unavailable, reboot=reboot,
                 say=say)
    if output == OutputFormat.json:
        emit_json({"spec": str(file), "exit_code": 0, **record})
    else:
        out = stdout_console()
        out.print(f"rollout of {', '.join(record['targets'])} done"
                  + (" (resumed)" if record["resumed"] else ""), markup=False)
        for s in record["steps"]:
            extra = ", ".join(f"{k} {v}" for k, v in s.items() if k not in ("batch", "step", "seconds", "at"))
            out.print(f"  {','.join(s['batch'])}: {s['step']} {s['seconds']} s" + (f" ({extra})" if extra else ""),
                      markup=False)
    finish(ExitCode.OK)


def register(app: typer.Typer) -> None:
    app.command("rollout")(rollout_cmd)
