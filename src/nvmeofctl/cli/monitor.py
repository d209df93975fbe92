"""`nvmeofctl monitor install`: the health check on a schedule (a systemd timer on the control
machine) writing the Prometheus textfile node_exporter serves."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import typer

from nvmeofctl.cli.context import finish, progress_printer, stdout_console
from nvmeofctl.exitcodes import ExitCode

app = typer.Typer(help="Scheduled checks: run `nvmeofctl health` by a systemd timer for Prometheus.",
                  no_args_is_help=True)

SERVICE = "nvmeofctl-health.service"
TIMER = "nvmeofctl-health.timer"
DEFAULT_TEXTFILE = Path("/var/lib/prometheus/node-exporter/nvmeofctl.prom")  # Debian's node_exporter
_EVERY_RE = re.compile(r"(?P<n>[1-9][0-9]{0,4})(?P<unit>s|m|min|h)")
_SAFE_PATH_RE = re.compile(r"/[A-Za-z0-9_./@:+-]*")  # nothing systemd or a shell would read twice


def every_span(text: str) -> str:
    """``--every`` as a systemd time span: 30s, 5m (5min), 1h; at least 30 s."""
    from nvmeofctl.errors import UsageError

    m = _EVERY_RE.fullmatch(text.strip())
    if not m:
        raise UsageError(f"--every {text!r}: a number and s, m or h (30s, 5m, 1h)")
    n, unit = int(m["n"]), {"m": "min"}.get(m["unit"], m["unit"])
    if unit == "s" and n < 30:
        raise UsageError(f"--every {text!r}: at least 30s (each check reads every host)")
    return f"{n}{unit}"


def _safe(path: Path, what: str) -> str:
    from nvmeofctl.errors import UsageError

    text = str(path)
    if not _SAFE_PATH_RE.fullmatch(text):
        raise UsageError(f"{what} {text!r}: an absolute path of letters, digits and _ . / @ : + - only "
                         "(it goes into a systemd unit)")
    return text


def unit_texts(spec: Path, textfile: Path, every: str, program: list[str]) -> dict[str, str]:
    """{unit name: text}: the service and the timer, from templates/monitor/."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    from nvmeofctl.resources import templates_dir

    argv = [*program, "health", "-f", _safe(spec, "--file"), "--output", "prometheus",
            "--textfile", _safe(textfile, "--textfile")]
    env = Environment(loader=FileSystemLoader(str(templates_dir() / "monitor")), undefined=StrictUndefined,
                      keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    values = {"exec_start": " ".join(argv), "spec": str(spec), "every": every}
    return {SERVICE: env.get_template(SERVICE + ".j2").render(**values),
            TIMER: env.get_template(TIMER + ".j2").render(**values)}


@app.command("install")
def install_cmd(
    file: Path = typer.Option(..., "--file", "-f", help="Cluster spec (YAML) to check."),
    every: str = typer.Option("5m", "--every", help="How often: 30s, 5m, 1h (a systemd timer)."),
    textfile: Path = typer.Option(DEFAULT_TEXTFILE, "--textfile",
                                  help="Where node_exporter's textfile collector reads it."),
    print_only: bool = typer.Option(False, "--print", help="Print the two units, install nothing."),
    unit_dir: Path = typer.Option(Path("/etc/systemd/system"), "--unit-dir", help="Where to write the units."),
) -> None:
    """Run `nvmeofctl health` every --every by a systemd timer on this (the control) machine,
    writing the Prometheus textfile that node_exporter serves; the alert rules and the Grafana
    dashboard in monitoring/ read its metrics.

    Writes nvmeofctl-health.service and nvmeofctl-health.timer, then `systemctl daemon-reload`
    and `systemctl enable --now nvmeofctl-health.timer`. The spec is checked first (an invalid
    spec is not scheduled). With --print nothing is written.

    \\b
    Exit codes:
      0    installed (or printed)
      2    bad --every or a path systemd could misread
      3    invalid spec
      5    systemctl failed

    \\b
    Examples:
      nvmeofctl monitor install -f /etc/nvmeofctl/cluster.yaml --every 5m
      nvmeofctl monitor install -f cluster.yaml --print
    """
    import os
    import shutil
    import subprocess

    from nvmeofctl.errors import NvmeofctlError
    from nvmeofctl.spec import load_spec

    spec_path = file.resolve()
    load_spec(spec_path)  # refuse to schedule an invalid spec
    span = every_span(every)
    exe = shutil.which("nvmeofctl")
    program = [_safe(Path(exe).resolve(), "nvmeofctl")] if exe else [_safe(Path(sys.executable), "python"), "-m",
                                                                      "nvmeofctl"]
    texts = unit_texts(spec_path, textfile if textfile.is_absolute() else textfile.resolve(), span, program)
    out = stdout_console()
    if print_only:
        for name, text in texts.items():  # as written: no console wrapping
            typer.echo(f"# {unit_dir / name}\n{text}", nl=False)
        finish(ExitCode.OK)
        return
    say = progress_printer()
    unit_dir.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        tmp = unit_dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)
        os.replace(tmp, unit_dir / name)
        say(f"wrote {unit_dir / name}")
    for args in (["daemon-reload"], ["enable", "--now", TIMER]):
        proc = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise NvmeofctlError(f"systemctl {' '.join(args)} failed: {proc.stderr.strip() or proc.returncode}",
                                 exit_code=ExitCode.TASK_FAILED)
    out.print(f"scheduled: {' '.join(shlex.quote(a) for a in program)} health -f {spec_path} every {span}, "
              f"writing {textfile} (systemctl list-timers {TIMER})", markup=False)
    finish(ExitCode.OK)


