"""`nvmeofctl spec init --from-inventory`: a starting cluster spec from an existing Ansible
inventory (INI or YAML), read with ansible-core's own inventory loader, so what Ansible would use
to reach a host (``ansible_host``, ``ansible_port``, ``ansible_user``,
``ansible_ssh_private_key_file``, group and host vars) is what the spec gets.

Inventory values are data: each is checked with the spec's own validators, and a value that does
not pass (or is a Jinja2 template Ansible would evaluate) is not copied; it is left as a TODO
comment naming the host and the variable. What no inventory says (fabric interfaces and IPs, the
subsystems) is left as "TODO: ..." values no field accepts, so `spec validate` points at every
line still to fill in.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from nvmeofctl.errors import UsageError
from nvmeofctl.resources import load_module_utils


@dataclass
class InventoryHost:
    name: str
    role: str  # target | gpu_node
    address: str | None = None
    port: int | None = None
    user: str | None = None
    key: str | None = None
    todo: list[str] = field(default_factory=list)  # what could not be copied, and why


def _problem_of_path(text: str) -> str | None:
    if any(c in '"\\%' or ord(c) < 0x20 or c == "\x7f" for c in text):
        return "holds '\"', '\\', '%' or a control character"
    return None


def _from_vars(name: str, role: str, hv: dict) -> InventoryHost:
    V = load_module_utils("validators")
    host = InventoryHost(name, role)

    def take(var: str, check) -> str | None:
        value = hv.get(var)
        if value is None:
            return None
        text = str(value)
        problem = "a Jinja2 template (evaluated by Ansible, not copied)" if "{{" in text or "{%" in text else check(text)
        if problem:
            host.todo.append(f"{var}: {problem}")
            return None
        return text

    if hv.get("ansible_host") is None:  # Ansible then connects to the inventory name
        host.address = None if V.ssh_address_problem(name) else name
    else:
        host.address = take("ansible_host", V.ssh_address_problem)
    port = take("ansible_port", lambda t: None if t.isdigit() and 0 < int(t) < 65536 else "not a port number")
    host.port = int(port) if port else None
    host.user = take("ansible_user", V.user_problem)
    key = take("ansible_ssh_private_key_file", _problem_of_path)
    host.key = os.path.expanduser(key) if key else None  # as Ansible expands it
    if host.address is None:
        host.todo.append("ssh.address: the inventory gives no usable ansible_host")
    return host


def _load(source: Path, flag: str):
    """(InventoryManager, VariableManager) of ``source``, by ansible-core's own loader."""
    os.environ.setdefault("ANSIBLE_LOCALHOST_WARNING", "False")
    os.environ.setdefault("ANSIBLE_INVENTORY_UNPARSED_WARNING", "False")
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    if not source.exists():
        raise UsageError(f"{flag} {source}: no such file")
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(source)])
    return inventory, VariableManager(loader=loader, inventory=inventory)


def read_inventory(source: Path, targets: str, gpu_nodes: str) -> tuple[list[InventoryHost], list[str]]:
    """(hosts of the two groups, names of the inventory's other hosts)."""
    inventory, variables = _load(source, "--from-inventory")
    groups = inventory.get_groups_dict()
    for group, flag in ((targets, "--targets"), (gpu_nodes, "--gpu-nodes")):
        if group not in groups:
            raise UsageError(f"{flag} {group}: no such group in {source} "
                             f"(groups: {', '.join(sorted(g for g in groups if g not in ('all', 'ungrouped')))})")
    in_targets, in_gpus = set(groups[targets]), set(groups[gpu_nodes])
    both = sorted(in_targets & in_gpus)
    if both:
        raise UsageError(f"{', '.join(both)}: in both {targets} and {gpu_nodes}: a host is a target or a GPU node")
    V = load_module_utils("validators")
    hosts = []
    for name in groups[targets] + groups[gpu_nodes]:
        problem = V.hostname_problem(name)
        if problem:
            raise UsageError(f"inventory host {name!r}: {problem} (rename it in the inventory, or leave it out)")
        hv = variables.get_vars(host=inventory.get_host(name))
        hosts.append(_from_vars(name, "target" if name in in_targets else "gpu_node", hv))
    others = sorted(set(groups.get("all", [])) - in_targets - in_gpus)
    return hosts, others


def _q(text: str) -> str:
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def render_spec(name: str, hosts: list[InventoryHost], source: Path, others: list[str]) -> str:
    lines = [
        "# yaml-language-server: $schema=cluster.schema.json",
        f"# Written by `nvmeofctl spec init --from-inventory {source}`: the SSH settings come from that",
        "# inventory; every TODO is what an inventory cannot say. `nvmeofctl spec validate` names each",
        "# line still to fill in.",
    ]
    if others:
        lines.append(f"# Not in the two groups, left out: {', '.join(others)}")
    lines += [
        f"name: {_q(name)}",
        "fabric:",
        "  transport: rdma            # TODO: rdma (RoCE v2) or tcp",
        "  mtu: 1500                  # TODO: the fabric's MTU (9000 on a jumbo-frame RoCE fabric)",
        "  soft_roce: false           # true only where the NICs have no RDMA offload (labs)",
        "hosts:",
    ]
    for h in hosts:
        lines.append(f"  - name: {_q(h.name)}")
        lines.append(f"    role: {h.role}")
        for item in h.todo:
            lines.append(f"    # TODO {item}")
        ssh = [f"address: {_q(h.address) if h.address else _q('TODO: address')}"]
        if h.port is not None:
            ssh.append(f"port: {h.port}")
        if h.user is not None:
            ssh.append(f"user: {_q(h.user)}")
        if h.key is not None:
            ssh.append(f"key: {_q(h.key)}")
        lines.append("    ssh: {" + ", ".join(ssh) + "}")
        lines.append('    fabric: {interface: "TODO: NIC", ips: ["TODO: IPv4"]}   # TODO: the fabric NIC and its address(es)')
    lines += [
        "subsystems:                  # TODO: what each target exports, and to which GPU nodes",
        '  - nqn: "TODO: nqn"',
        f"    target: {_q(next((h.name for h in hosts if h.role == 'target'), 'TODO: target'))}",
        f"    allowed_gpu_nodes: [{', '.join(_q(h.name) for h in hosts if h.role == 'gpu_node')}]",
        "    namespaces:",
        '      - {nsid: 1, name: "TODO: name", backing: {device: "TODO: /dev/disk/by-id/..."}}',
    ]
    return "\n".join(lines) + "\n"


def with_inventory(spec, source: Path) -> list[str]:
    """Take each spec host's SSH settings from the Ansible inventory ``source`` (a host of the
    same name, in any group), in place; the spec's ``known_hosts`` stays. Returns the names of
    the hosts whose settings came from the inventory. UsageError when a value cannot be used."""
    from nvmeofctl.spec.models import SshSpec

    inventory, variables = _load(source, "--inventory")
    taken = []
    for host in spec.hosts:
        ih = inventory.get_host(host.name)
        if ih is None:
            continue
        got = _from_vars(host.name, host.role, variables.get_vars(host=ih))
        if got.todo:
            raise UsageError(f"--inventory {source}: host {host.name}: " + "; ".join(got.todo))
        values = {"address": got.address, "port": got.port or host.ssh.port, "user": got.user or host.ssh.user,
                  "key": got.key if got.key else host.ssh.key, "known_hosts": host.ssh.known_hosts}
        host.ssh = SshSpec.model_validate(values, context={"base_dir": source.resolve().parent})
        taken.append(host.name)
    return taken
