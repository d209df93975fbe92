"""`nvmeofctl lab up|down|status|ssh|destroy`: the built-in QEMU lab of real Linux VMs."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, List, Optional

import typer

from nvmeofctl.cli.context import finish, progress_printer, stderr_console, stdout_console
from nvmeofctl.cli.lazy import bind, lazy_names
from nvmeofctl.cli.output import output_option
from nvmeofctl.errors import LabError, UsageError
from nvmeofctl.exitcodes import ExitCode
from nvmeofctl.report.output import OutputFormat, emit_json

if TYPE_CHECKING:
    from nvmeofctl.lab.manager import LabManager, VmStatus

# the lab's manager (images, QEMU, SSH keys) loads when a command runs, not for `--help`
_LAZY = {"LabManager": "nvmeofctl.lab.manager", "VmStatus": "nvmeofctl.lab.manager"}
__getattr__ = lazy_names(globals(), _LAZY)

app = typer.Typer(
    help=(
        "The built-in lab: QEMU VMs (1 storage target + 2 GPU nodes by default) running a real "
        "Debian kernel with Soft-RoCE, nvmet and nvme-cli, joined by a private fabric.\n\n"
        "Example: nvmeofctl lab up && nvmeofctl lab status"
    ),
    no_args_is_help=True,
)

NameOpt = typer.Option(
    os.environ.get("NVMEOFCTL_LAB", "lab"), "--name", "-n", help="Lab name (env NVMEOFCTL_LAB).", show_default=True
)


def _render(statuses: list[VmStatus], output: OutputFormat, lab_name: str, spec: str | None = None,
            shape: dict | None = None) -> None:
    shape = shape or {"rails": 1, "fabric": [], "shared_disk": None}
    if output == OutputFormat.json:
        emit_json({
            "lab": lab_name,
            "spec": spec,
            "ready": all(s.ssh_ready for s in statuses),
            "rails": shape["rails"],
            "fabric": shape["fabric"],
            "shared_disk": shape["shared_disk"],
            "vms": [s.to_dict() for s in statuses],
        })
        return
    from rich.table import Table

    table = Table(title=f"lab {lab_name}", title_justify="left")
    for col in ("VM", "role", "state", "ssh", "fabric IP" if shape["rails"] == 1 else "fabric IPs", "saved states"):
        table.add_column(col)
    for s in statuses:
        state = "ssh-ready" if s.ssh_ready else ("running" if s.running else "stopped")
        if s.running and not s.ssh_ready and s.detail:
            state += f" ({s.detail})"
        ips = ", ".join(s.fabric_ips) or s.fabric_ip
        table.add_row(s.name, s.role, state, s.ssh, ips, ", ".join(s.snapshots) or "-")
    stdout_console().print(table)
    if shape["rails"] > 1:
        rails = ", ".join(f"{r['interface']} {r['network']}" for r in shape["fabric"])
        stdout_console().print(f"fabric rails: {rails}", markup=False)
    disk = shape["shared_disk"]
    if disk:
        stdout_console().print(
            f"shared disk: {disk['path']} ({disk['size_mib']} MiB) = {disk['guest_device']} "
            f"(serial {disk['serial']}) on {', '.join(disk['vms'])}", markup=False,
        )
    if spec:
        stdout_console().print(f"cluster spec: {spec}", markup=False)


@app.command()
def up(
    name: str = NameOpt,
    targets: Optional[int] = typer.Option(None, "--targets", help="Storage targets (default 1).", min=1, max=9),
    gpu_nodes: Optional[int] = typer.Option(None, "--gpu-nodes", help="GPU nodes (default 2).", min=0, max=9),
    accel: str = typer.Option("auto", "--accel", help="auto | kvm | tcg. auto probes KVM and falls back to TCG."),
    fresh: bool = typer.Option(False, "--fresh", help="Return every VM to its pristine booted state."),
    rails: Optional[int] = typer.Option(
        None, "--rails", min=1, max=2,
        help="Fabric rails (default 1): 2 adds eth2 on a second switch, 192.168.101.0/24.",
    ),
    shared_disk: Optional[bool] = typer.Option(
        None, "--shared-disk/--no-shared-disk",
        help="One raw disk attached to every target VM (/dev/vdb, serial SHARED0), for dual-controller targets.",
    ),
    memory: int = typer.Option(768, "--memory", help="MiB of RAM per VM.", min=384),
    mirror: Optional[str] = typer.Option(None, "--mirror", help="Debian mirror (default: the one apt uses here)."),
    output: OutputFormat = output_option(),
) -> None:
    """Build the image if needed, then start the lab's VMs and wait until each answers SSH.

    Idempotent: on a running lab it changes nothing. A lab stopped with `lab down` resumes where
    it was left in seconds (saved VM state); the first boot under software emulation takes ~2 min.
    Without options an existing lab comes up as it was created; asking it for another shape
    (targets, GPU nodes, rails, shared disk) is an error: destroy it first.

    Example: nvmeofctl lab up --targets 1 --gpu-nodes 2

    Example: nvmeofctl lab up --name dual --targets 2 --gpu-nodes 1 --rails 2 --shared-disk
    """
    if accel not in ("auto", "kvm", "tcg"):
        raise UsageError(f"--accel must be auto, kvm or tcg, not {accel!r}")
    bind(globals(), _LAZY, "LabManager")
    mgr = LabManager(name, progress_printer())
    statuses = mgr.up(targets, gpu_nodes, accel, fresh, memory, mirror, rails, shared_disk)
    _render(statuses, output, name, str(mgr.lab.spec_file), mgr.describe())
    if not all(s.ssh_ready for s in statuses):
        raise LabError("some VMs are not SSH-ready (see the table)")


@app.command()
def down(
    name: str = NameOpt,
    no_save: bool = typer.Option(False, "--no-save", help="Power off without saving VM state."),
) -> None:
    """Stop the lab's VMs (saving their state so `lab up` resumes them in seconds).

    Example: nvmeofctl lab down
    """
    bind(globals(), _LAZY, "LabManager")
    mgr = LabManager(name, progress_printer())
    mgr.down(save=not no_save)
    stderr_console().print(f"lab {name!r} is down", markup=False)


@app.command()
def destroy(
    name: str = NameOpt,
    yes: bool = typer.Option(False, "--yes", "-y", help="Required: confirms deleting the VMs' disks."),
) -> None:
    """Stop the lab and delete its VM disks, keys and state (the cached image stays).

    Example: nvmeofctl lab destroy --yes
    """
    if not yes:
        raise UsageError("`lab destroy` deletes the lab's VM disks: add --yes to confirm")
    bind(globals(), _LAZY, "LabManager")
    LabManager(name, progress_printer()).destroy()


@app.command()
def status(
    name: str = NameOpt,
    output: OutputFormat = output_option(),
) -> None:
    """Show each VM: running, SSH-ready, endpoints, saved states; the lab's rails and shared disk.
    Exit 0 only when all are ready.

    Example: nvmeofctl lab status --output json
    """
    bind(globals(), _LAZY, "LabManager")
    mgr = LabManager(name)
    statuses = mgr.status()
    _render(statuses, output, name, str(mgr.lab.spec_file) if mgr.lab.spec_file.exists() else None, mgr.describe())
    finish(ExitCode.OK if all(s.ssh_ready for s in statuses) else ExitCode.UNREACHABLE)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ssh(
    vm: str = typer.Argument(..., help="VM name, e.g. tgt1 or gpu1."),
    command: Optional[List[str]] = typer.Argument(None, help="Command to run (after --); none: a shell."),
    name: str = NameOpt,
) -> None:
    """Open a shell on a lab VM, or run a command there (host key verified).

    Example: nvmeofctl lab ssh gpu1 -- nvme list
    """
    bind(globals(), _LAZY, "LabManager")
    mgr = LabManager(name)
    try:
        spec = mgr.lab.layout().vm(vm)
    except KeyError:
        names = ", ".join(v.name for v in mgr.lab.layout().vms)
        raise UsageError(f"no VM {vm!r} in lab {name!r} (VMs: {names})") from None
    argv = [
        "ssh", "-i", str(mgr.lab.client_key), "-p", str(spec.ssh_port),
        "-o", f"UserKnownHostsFile={mgr.lab.known_hosts}", "-o", "StrictHostKeyChecking=yes",
        "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "root@127.0.0.1",
    ]
    if command:
        argv += ["--", *command]
    if not sys.stdin.isatty():
        argv.insert(1, "-T")
    os.execvp("ssh", argv)
