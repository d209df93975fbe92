"""`nvmeofctl export`: the spec as a self-contained Ansible project (ansible-playbook,
ansible-navigator, AWX)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nvmeofctl.cli.context import finish, stdout_console
from nvmeofctl.cli.output import output_option
from nvmeofctl.cli.spec import InsecureSecretPermsOpt
from nvmeofctl.exitcodes import ExitCode
from nvmeofctl.report.output import OutputFormat, emit_json


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)


def export_cmd(
    file: Path = typer.Option(..., "--file", "-f", help="Cluster spec (YAML)."),
    to: Path = typer.Option(..., "--to", help="The project folder to write (created; must be empty)."),
    vault_password_file: Optional[Path] = typer.Option(
        None, "--vault-password-file", help="Encrypt the DH-HMAC-CHAP keys with Ansible Vault under this password "
                                            "(group_vars/all/vault.yml). Without it the keys are left out: "
                                            "group_vars/all/secrets.yml.example names them."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --to folder."),
    output: OutputFormat = output_option(),
    insecure_secret_perms: bool = InsecureSecretPermsOpt,
) -> None:
    """Write the spec as a self-contained Ansible project: site.yml, inventory/hosts.yml (hosts,
    connection settings and the desired state `apply` passes), ansible.cfg, the nvmeofctl.fabric
    collection, and the keys as an Ansible Vault file (never in clear).

    `ansible-playbook site.yml` in that folder (or `ansible-navigator run site.yml`, or an AWX
    project pointing at it) configures the cluster as `nvmeofctl apply` does: afterwards
    `nvmeofctl plan` shows 0 changes. README: "Running from AWX / ansible-navigator".

    \\b
    Exit codes:
      0    written
      2    --to not empty (--force), or an unreadable --vault-password-file
      3    invalid spec

    Example: nvmeofctl export -f cluster.yaml --to fabric-project --vault-password-file ~/.vault-pass
    """
    from nvmeofctl.errors import UsageError
    from nvmeofctl.export.project import export_project
    from nvmeofctl.spec import load_spec

    spec = load_spec(file, insecure_secret_perms=insecure_secret_perms)
    password = None
    if vault_password_file is not None:
        try:
            password = vault_password_file.read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, IndexError, UnicodeDecodeError):
            raise UsageError(f"--vault-password-file {vault_password_file}: cannot read a password from it") from None
        if not password:
            raise UsageError(f"--vault-password-file {vault_password_file}: empty password")
    result = export_project(spec, to, password, force)
    if output == OutputFormat.json:
        emit_json({"spec": str(file), **result})
    else:
        out = stdout_console()
        out.print(f"wrote {to}: " + ", ".join(result["written"]), markup=False)
        if result["secrets"] and not result["vault"]:
            out.print(f"{len(result['secrets'])} key(s) left out: fill in group_vars/all/secrets.yml.example, save it "
                      "as vault.yml and `ansible-vault encrypt` it", markup=False)
        out.print(f"run: cd {to} && ansible-playbook site.yml" + (" --ask-vault-pass" if result["secrets"] else ""),
                  markup=False)
    finish(ExitCode.OK)
