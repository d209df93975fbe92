"""Ansible inventory for a cluster spec: groups by role, SSH with pinned host keys."""

from __future__ import annotations

import json
import shlex
from typing import Any

from nvmeofctl.plan.persistence import HOST_PYTHON


def ssh_host_vars(host) -> dict[str, Any]:
    """Connection variables of one spec host (host key checking stays ON)."""
    ssh = host.ssh
    args = ["-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
            "-o", "ControlMaster=auto", "-o", "ControlPersist=120s"]
    if ssh.known_hosts:
        # ssh splits this option's value on whitespace (several files) unless it is quoted; the
        # spec refuses '"', '\\', '%' and control characters in SSH paths
        args += ["-o", f'UserKnownHostsFile="{ssh.known_hosts}"']
    hv: dict[str, Any] = {
        "ansible_host": str(ssh.address),
        "ansible_port": int(ssh.port),
        "ansible_user": ssh.user,
        "ansible_python_interpreter": HOST_PYTHON,
        "ansible_ssh_common_args": " ".join(shlex.quote(a) for a in args),
    }
    if ssh.key:
        hv["ansible_ssh_private_key_file"] = str(ssh.key)
    if ssh.user != "root":
        hv["ansible_become"] = True
    return hv


def build_inventory(spec, host_vars: dict[str, dict[str, Any]],
                    release: list[str] | None = None) -> dict[str, Any]:
    """``host_vars`` adds per-host variables (the desired state) to the connection variables;
    ``release`` names the GPU nodes of the ordered playbook's first play (group ``release``)."""
    groups: dict[str, dict[str, Any]] = {"targets": {"hosts": {}}, "gpu_nodes": {"hosts": {}},
                                         "release": {"hosts": {}}}
    for host in spec.hosts:
        group = "targets" if host.role == "target" else "gpu_nodes"
        groups[group]["hosts"][host.name] = {**ssh_host_vars(host), **host_vars.get(host.name, {})}
    for name in release or []:
        groups["release"]["hosts"][name] = {}  # variables come from gpu_nodes
    return {"all": {"children": groups}}


def unsafe_yaml(data: Any) -> str:
    """`data` as YAML for Ansible with EVERY string tagged ``!unsafe``.

    Spec strings are data, never templates: Ansible evaluates Jinja2 in inventory strings
    (``{{ lookup('pipe', ...) }}`` would run on the control machine, even in check mode and for
    unreachable hosts), but not in strings tagged ``!unsafe``, and that mark survives templating
    of the dicts that hold them (``{{ nvmeofctl_nvmet.subsystems }}`` in the play). Strings are
    written as JSON double-quoted scalars, which YAML reads back unchanged; mapping keys are
    host and variable names (validated), written the same way but untagged.
    """
    if isinstance(data, dict):
        items = ", ".join(f"{_key(k)}: {unsafe_yaml(v)}" for k, v in data.items())
        return "{" + items + "}"
    if isinstance(data, (list, tuple)):
        return "[" + ", ".join(unsafe_yaml(v) for v in data) + "]"
    if isinstance(data, str):
        return "!unsafe " + json.dumps(data)
    if data is None or isinstance(data, (bool, int, float)):
        return json.dumps(data)
    raise TypeError(f"cannot write {type(data).__name__} to the inventory")


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"inventory keys must be strings, not {type(key).__name__}")
    return json.dumps(key)
