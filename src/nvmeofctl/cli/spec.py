"""`nvmeofctl spec validate|schema`: check a cluster spec, print its JSON Schema."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from nvmeofctl.cli.context import finish, stderr_console
from nvmeofctl.cli.lazy import bind, lazy_names
from nvmeofctl.cli.output import output_option
from nvmeofctl.report.output import OutputFormat, emit_json

if TYPE_CHECKING:
    from nvmeofctl.spec import ClusterSpec, SpecValidationError, load_spec

# the spec's models (pydantic) and YAML loader load when a command runs, not for `--help`
_LAZY = {"ClusterSpec": "nvmeofctl.spec", "SpecValidationError": "nvmeofctl.spec", "load_spec": "nvmeofctl.spec"}
__getattr__ = lazy_names(globals(), _LAZY)

INSECURE_SECRET_PERMS_HELP = (
    "accept DH-HMAC-CHAP secret files readable by group/other or owned by another user (not recommended)"
)
# shared by every command that loads a spec (spec validate, plan, apply, health)
InsecureSecretPermsOpt = typer.Option(False, "--insecure-secret-perms", help=INSECURE_SECRET_PERMS_HELP)
InventoryOpt = typer.Option(
    None, "--inventory", help="An Ansible inventory (INI or YAML): each spec host it has (same name) takes its "
                              "SSH settings from it (ansible_host, ansible_port, ansible_user, "
                              "ansible_ssh_private_key_file); the spec's known_hosts stays.")


def apply_inventory(spec, inventory: Path | None) -> None:
    """``--inventory``: the SSH settings of the spec's hosts from an Ansible inventory."""
    if inventory is not None:
        from nvmeofctl.spec.from_inventory import with_inventory

        with_inventory(spec, inventory)

app = typer.Typer(
    help="Validate a cluster spec or print its JSON Schema.\n\nExample: nvmeofctl spec validate cluster.yaml",
    no_args_is_help=True,
)


def _n(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else (plural or word + 's')}"


def summary_line(file: str, spec: ClusterSpec) -> str:
    namespaces = sum(len(s.namespaces) for s in spec.subsystems)
    return (
        f"{file}: valid ({_n(len(spec.hosts), 'host')}: {_n(len(spec.targets), 'target')}, "
        f"{_n(len(spec.gpu_nodes), 'GPU node')}; {_n(len(spec.subsystems), 'subsystem')}, "
        f"{_n(namespaces, 'namespace')})"
    )


def summary_json(file: str, spec: ClusterSpec) -> dict[str, Any]:
    """What the spec resolves to, derived IDs included; secrets only as 'configured' flags
    (``emit_json`` adds ``schema_version``)."""
    return {
        "file": file,
        "valid": True,
        "name": spec.name,
        "counts": {
            "hosts": len(spec.hosts),
            "targets": len(spec.targets),
            "gpu_nodes": len(spec.gpu_nodes),
            "subsystems": len(spec.subsystems),
            "namespaces": sum(len(s.namespaces) for s in spec.subsystems),
        },
        "fabric": spec.fabric.model_dump(mode="json"),
        "hosts": [
            {
                "name": h.name,
                "role": h.role,
                "ssh": f"{h.ssh.user}@{h.ssh.address}:{h.ssh.port}",
                "interface": h.fabric.interface,
                "ips": [str(ip) for ip in h.fabric.ips],
                "rdma_device": h.fabric.rdma_device,
                "rails": [{"interface": r.interface, "ips": [str(ip) for ip in r.ips], "rdma_device": r.rdma_device}
                          for r in h.rails],
                "host_nqn": h.host_nqn,
                "host_id": str(h.host_id) if h.host_id else None,
            }
            for h in spec.hosts
        ],
        "subsystems": [
            {
                "nqn": s.nqn,
                "target": s.target,
                "serial": s.serial,
                "allowed_gpu_nodes": list(s.allowed_gpu_nodes),
                "dhchap": {node: {"bidirectional": a.ctrl_secret is not None} for node, a in s.dhchap.items()},
                "namespaces": [
                    {
                        "nsid": ns.nsid,
                        "name": ns.name,
                        "uuid": str(ns.uuid),
                        "nguid": str(ns.nguid),
                        "backing": ns.backing.model_dump(mode="json", exclude_none=True),
                    }
                    for ns in s.namespaces
                ],
            }
            for s in spec.subsystems
        ],
    }


@app.command("validate")
def validate(
    file: Path = typer.Argument(..., metavar="FILE", help="Cluster spec (YAML)."),
    output: OutputFormat = output_option(help="table: one summary line; json: details."),
    insecure_secret_perms: bool = InsecureSecretPermsOpt,
) -> None:
    """Check a cluster spec: every problem is one `FILE:LINE PATH: message` line (exit 3).

    Example: nvmeofctl spec validate inventory/example.yaml --output json
    """
    bind(globals(), _LAZY)
    shown = str(file)
    try:
        spec = load_spec(file, insecure_secret_perms=insecure_secret_perms)
    except SpecValidationError as exc:
        if output is OutputFormat.json:
            emit_json({"file": shown, "valid": False, "errors": [d.as_dict() for d in exc.details]})
        else:
            console = stderr_console()
            for line in exc.issues:
                console.print(f"error: {line}", markup=False)
        finish(exc.exit_code)
        return
    if output is OutputFormat.json:
        emit_json(summary_json(shown, spec))
    else:
        typer.echo(summary_line(shown, spec))


@app.command("init")
def init(
    from_inventory: Path = typer.Option(..., "--from-inventory", help="An Ansible inventory (INI or YAML)."),
    targets: str = typer.Option("targets", "--targets", help="The inventory group of the storage targets."),
    gpu_nodes: str = typer.Option("gpu_nodes", "--gpu-nodes", help="The inventory group of the GPU nodes."),
    name: str = typer.Option("cluster", "--name", help="The cluster's name (seeds host NQNs and UUIDs)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write here (default: stdout)."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
) -> None:
    """Write a starting spec from an existing Ansible inventory: one host per member of the two
    groups, with the SSH settings Ansible would use (ansible_host, ansible_port, ansible_user,
    ansible_ssh_private_key_file; group and host vars, read by ansible-core's own loader).

    Everything an inventory cannot say (fabric interfaces and IPs, subsystems) is a TODO, and so is
    an inventory value that fails the spec's checks or is a Jinja2 template: `spec validate` then
    names each line still to fill in.

    \b
    Exit codes:
      0    written
      2    no such inventory or group, a host in both groups, --out exists (use --force)

    Example: nvmeofctl spec init --from-inventory hosts.ini --targets storage --gpu-nodes gpus --out cluster.yaml
    """
    from nvmeofctl.errors import UsageError
    from nvmeofctl.resources import load_module_utils
    from nvmeofctl.spec.from_inventory import read_inventory, render_spec

    problem = load_module_utils("validators").name_problem(name)
    if problem:
        raise UsageError(f"--name {name!r}: {problem}")
    if out is not None and out.exists() and not force:
        raise UsageError(f"--out {out} exists: --force overwrites it")
    hosts, others = read_inventory(from_inventory, targets, gpu_nodes)
    text = render_spec(name, hosts, from_inventory, others)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        todo = sum(1 for line in text.splitlines() if "TODO" in line)
        stderr_console().print(f"wrote {out}: {len(hosts)} host(s), {todo} line(s) with a TODO", markup=False)


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of the cluster spec (for editors and CI).

    Example: nvmeofctl spec schema > cluster.schema.json
    """
    import json

    bind(globals(), _LAZY, "ClusterSpec")
    doc = ClusterSpec.model_json_schema()
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    typer.echo(json.dumps(doc, indent=2))
