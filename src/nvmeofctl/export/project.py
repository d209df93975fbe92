"""`nvmeofctl export -f FILE --to DIR`: a self-contained Ansible project that `ansible-playbook`
(and ansible-navigator, AWX) run with the same result as `nvmeofctl apply`.

The project:

- `site.yml`: the playbook `apply` runs;
- `inventory/hosts.yml`: the hosts with their connection settings and desired state (the host_vars
  `apply` passes), every string tagged `!unsafe` (data, never templated), DH-HMAC-CHAP keys
  replaced by references to variables;
- `group_vars/all/vault.yml`: those variables, encrypted with Ansible Vault (`--vault-password-file`),
  or, without one, `group_vars/all/secrets.yml.example` naming them, with no value: fill it in and
  `ansible-vault encrypt` it;
- `collections/ansible_collections/nvmeofctl/fabric`: the collection, as this nvmeofctl ships it;
- `ansible.cfg`: inventory, collections path, host key checking on, pipelining.

Keys never appear in clear in the project.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from nvmeofctl.errors import UsageError

SECRET_FIELDS = ("dhchap_key", "dhchap_ctrl_key", "dhchap_secret", "dhchap_ctrl_secret")
_VAR_RE = re.compile(r"[^A-Za-z0-9_]")

ANSIBLE_CFG = """\
# Written by `nvmeofctl export`. Run: ansible-playbook site.yml{vault}
[defaults]
inventory = inventory/hosts.yml
collections_path = ./collections
host_key_checking = True
retry_files_enabled = False
interpreter_python = /usr/bin/python3

[ssh_connection]
pipelining = True
"""


def _var(*parts: str) -> str:
    return "nvmeofctl_" + "_".join(_VAR_RE.sub("_", p) for p in parts)


class Secrets:
    """Collects the secrets of the host_vars, each replaced by a reference to a variable."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.about: dict[str, str] = {}

    def ref(self, name: str, value: str, about: str) -> str:
        if self.values.get(name, value) != value:
            raise UsageError(f"two different secrets would share the variable {name}")
        self.values[name] = value
        self.about[name] = about
        return "{{ " + name + " }}"


def redact_host_vars(host: str, hv: dict[str, Any], secrets: Secrets, node_of: dict[str, str]) -> dict[str, Any]:
    """``hv`` with every DH-HMAC-CHAP key replaced by a variable reference (a template string:
    the one place the exported inventory is templated). ``node_of``: host NQN -> GPU node name."""
    out = {k: v for k, v in hv.items()}
    nvmet = out.get("nvmeofctl_nvmet")
    if nvmet:
        nvmet = dict(nvmet, hosts=[dict(h) for h in nvmet.get("hosts", [])])
        for h in nvmet["hosts"]:
            for f in ("dhchap_key", "dhchap_ctrl_key"):
                if h.get(f):
                    node = node_of.get(h["nqn"], h["nqn"].rsplit(":", 1)[-1])
                    h[f] = secrets.ref(_var(f, host, node), h[f], f"{f} of GPU node {node} on target {host}")
        out["nvmeofctl_nvmet"] = nvmet
    nh = out.get("nvmeofctl_nvme_host")
    if nh:
        nh = dict(nh, connections=[dict(c) for c in nh.get("connections", [])])
        for c in nh["connections"]:
            for f in ("dhchap_secret", "dhchap_ctrl_secret"):
                if c.get(f):
                    c[f] = secrets.ref(_var(f, host, c["subsysnqn"].rsplit(":", 1)[-1]), c[f],
                                       f"{f} of GPU node {host} for {c['subsysnqn']}")
        out["nvmeofctl_nvme_host"] = nh
    return out


def _yaml(data: Any, refs: set[str]) -> str:
    """YAML for Ansible: every string ``!unsafe`` except the secret references in ``refs``."""
    from nvmeofctl.run.inventory import unsafe_yaml

    text = unsafe_yaml(data)
    for ref in refs:  # a reference is our own variable name, never spec text
        text = text.replace("!unsafe " + json.dumps(ref), json.dumps(ref))
    return text + "\n"


def export_project(spec, to: Path, vault_password: str | None, force: bool) -> dict[str, Any]:
    """Write the project; returns what was written (paths relative to ``to``, secret names)."""
    from nvmeofctl.plan.desired import host_vars
    from nvmeofctl.resources import collections_dir, playbooks_dir
    from nvmeofctl.run.inventory import build_inventory

    if to.exists() and any(to.iterdir()):
        if not force:
            raise UsageError(f"--to {to} is not empty: --force replaces it")
        shutil.rmtree(to)
    to.mkdir(parents=True, exist_ok=True)
    os.chmod(to, 0o700)  # connection settings and, with a vault, encrypted keys
    secrets = Secrets()
    node_of = {h.host_nqn: h.name for h in spec.gpu_nodes}
    hv = {name: redact_host_vars(name, v, secrets, node_of) for name, v in host_vars(spec).items()}
    inventory = build_inventory(spec, hv)
    (to / "inventory").mkdir()
    refs = {"{{ " + n + " }}" for n in secrets.values}
    (to / "inventory" / "hosts.yml").write_text(_yaml(inventory, refs), encoding="utf-8")
    shutil.copy2(playbooks_dir() / "site.yml", to / "site.yml")
    shutil.copytree(collections_dir() / "ansible_collections" / "nvmeofctl" / "fabric",
                    to / "collections" / "ansible_collections" / "nvmeofctl" / "fabric",
                    ignore=shutil.ignore_patterns("__pycache__", "tests", "*.tar.gz", ".ansible"))
    gv = to / "group_vars" / "all"
    gv.mkdir(parents=True)
    written = ["site.yml", "inventory/hosts.yml", "ansible.cfg", "collections/ansible_collections/nvmeofctl/fabric"]
    if secrets.values:
        if vault_password is not None:
            from ansible.constants import DEFAULT_VAULT_ID_MATCH
            from ansible.parsing.vault import VaultLib, VaultSecret

            plain = "".join(f"{n}: {json.dumps(v)}\n" for n, v in sorted(secrets.values.items()))
            vault = VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(vault_password.encode()))])
            fd = os.open(gv / "vault.yml", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(vault.encrypt(plain))
            written.append("group_vars/all/vault.yml")
        else:
            lines = ["# The DH-HMAC-CHAP keys the inventory refers to. Fill in each (a DHHC-1:... key, as in the",
                     "# spec's secret files), save as vault.yml and encrypt it: ansible-vault encrypt vault.yml"]
            lines += [f"{n}: \"\"   # {secrets.about[n]}" for n in sorted(secrets.values)]
            (gv / "secrets.yml.example").write_text("\n".join(lines) + "\n", encoding="utf-8")
            written.append("group_vars/all/secrets.yml.example")
    vault_hint = " --ask-vault-pass (or --vault-password-file FILE)" if secrets.values else ""
    (to / "ansible.cfg").write_text(ANSIBLE_CFG.format(vault=vault_hint), encoding="utf-8")
    return {"to": str(to), "written": written, "secrets": sorted(secrets.values),
            "vault": vault_password is not None and bool(secrets.values)}
