"""What plan and apply need to know about each host, read in ONE SSH round trip per host.

The read-only script prints sections: ``preflight`` (kernel, tools, modules, kernel config),
then the collection's own dump commands (nvmet configfs tree on targets, NVMe host state on GPU
nodes, RDMA links everywhere), so the planner diffs with exactly the logic the modules apply.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from nvmeofctl.plan.kmods import PROBED
from nvmeofctl.plan.persistence import observed_files, read_sections
from nvmeofctl.remote.ssh import CommandResult, SshTarget, Unreachable, run_many
from nvmeofctl.resources import load_module_utils

MODULES = PROBED  # plan/kmods.py: the one list of kernel modules
MARK = "### nvmeofctl-section "


def _section(name: str) -> str:
    return f"echo '{MARK}{name}'"


def preflight_script(interface: str, rails: list[str] = ()) -> str:
    """Read-only checks in (almost) only shell builtins: every process costs in a slow VM.
    ``rails``: the interfaces of rails 2..N (``rail_iface.<name>=yes|no`` each)."""
    iface = shlex.quote(interface)
    mods = " ".join(MODULES)
    return "\n".join([
        _section("preflight"),
        'k=$(uname -r); echo "kernel=$k"',
        'command -v python3 >/dev/null 2>&1 && echo python3=yes || echo python3=no',
        'command -v nvme >/dev/null 2>&1 && echo "nvme_cli=$(nvme version 2>/dev/null | head -n1)" || echo nvme_cli=',
        'command -v rdma >/dev/null 2>&1 && echo rdma_tool=yes || echo rdma_tool=no',
        'command -v blkid >/dev/null 2>&1 && echo blkid=yes || echo blkid=no',
        # available = loaded, or built for this kernel (modules.dep names every .ko once)
        'avail=" $(sed -e "s#:.*##; s#.*/##; s#\\.ko.*##; s#-#_#g" /lib/modules/$k/modules.dep 2>/dev/null '
        '| tr "\\n" " ") "',
        f'for m in {mods}; do if [ -d /sys/module/$m ]; then echo "mod_$m=yes"; '
        'else case "$avail" in *" $m "*) echo "mod_$m=yes";; *) echo "mod_$m=no";; esac; fi; done',
        # one grep for both options (a shell read loop over 10k lines is far slower in a VM)
        'auth=$(grep -E "^CONFIG_NVME_(TARGET_)?AUTH=" /boot/config-$k 2>/dev/null)',
        'for o in CONFIG_NVME_AUTH CONFIG_NVME_TARGET_AUTH; do v=unknown; '
        'for l in $auth; do [ "${l%%=*}" = "$o" ] && v=${l#*=}; done; echo "$o=$v"; done',
        f'[ -d /sys/class/net/{iface} ] && echo "iface=yes" || echo "iface=no"',
        f'm=; [ -r /sys/class/net/{iface}/mtu ] && read -r m < /sys/class/net/{iface}/mtu; echo "iface_mtu=$m"',
        *[f'[ -d /sys/class/net/{shlex.quote(r)} ] && echo {shlex.quote("rail_iface." + r + "=yes")} '
          f'|| echo {shlex.quote("rail_iface." + r + "=no")}' for r in rails],
        '[ -d /sys/kernel/config ] && echo configfs=yes || echo configfs=no',
        '[ "${EUID:-$(id -u)}" = 0 ] && echo root=yes || { sudo -n true 2>/dev/null && echo root=sudo || echo root=no; }',
    ])


def _isolated(command: str) -> str:
    """A dump in a subshell: its `cd`/`exit` stay inside, and it cannot read the script on stdin."""
    return f"( {command}\n) </dev/null"


def host_script(role: str, interface: str, extra: list[tuple[str, str]] = (), rails: list[str] = ()) -> str:
    """The whole read-only script for one host; ``extra``: more (section, command) pairs (the
    planner's persistence reads, plan/persistence.py); ``rails``: the interfaces of rails 2..N
    (a ``rdma@<interface>`` section each)."""
    parts = [preflight_script(interface, rails)]
    if role == "target":
        nvmet = load_module_utils("nvmet")
        parts += [_section("nvmet-managed"), "cat /etc/nvmeofctl/nvmet-managed.json 2>/dev/null || true",
                  _section("nvmet"), _isolated(nvmet.DUMP_COMMAND)]
    else:
        host = load_module_utils("nvme_host")
        parts += [_section("nvme_host"), _isolated(host.dump_command(state_dir="/etc/nvmeofctl"))]
    parts += [_section("rdma"), _isolated(load_module_utils("rdma").dump_command(interface))]
    for rail in rails:
        parts += [_section(f"rdma@{rail}"), _isolated(load_module_utils("rdma").dump_command(rail))]
    for name, command in extra:
        parts += [_section(name), _isolated(command)]
    return "\n".join(parts) + "\n"


def split_sections(text: str) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith(MARK):
            current = line[len(MARK):].strip()
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return {k: "\n".join(v) + ("\n" if v else "") for k, v in out.items()}


def parse_kv(text: str) -> dict[str, str]:
    kv = {}
    for line in text.splitlines():
        if "=" in line:
            k, _, v = line.partition("=")
            kv[k.strip()] = v.strip()
    return kv


@dataclass
class HostState:
    name: str
    role: str
    interface: str
    reachable: bool
    error: str = ""
    error_kind: str = ""
    preflight: dict[str, str] = field(default_factory=dict)
    sections: dict[str, str] = field(default_factory=dict)
    persist_paths: list[str] = field(default_factory=list)  # the persistence files read (digests)

    def observed(self) -> dict[str, Any]:
        """Observed state per concern, parsed with the modules' own parsers."""
        obs: dict[str, Any] = {}
        if "nvmet" in self.sections:
            nvmet = load_module_utils("nvmet")
            obs["nvmet"] = nvmet.parse_dump(self.sections["nvmet"])
            try:
                obs["nvmet_managed"] = json.loads(self.sections.get("nvmet-managed", "").strip() or "{}")
            except ValueError:
                obs["nvmet_managed"] = {}
        if "nvme_host" in self.sections:
            host = load_module_utils("nvme_host")
            obs["nvme_host"] = host.parse_dump(self.sections["nvme_host"], state_dir="/etc/nvmeofctl")
        if "rdma" in self.sections:
            obs["rdma"] = load_module_utils("rdma").parse_dump(self.sections["rdma"], self.interface)
        rails = {name[len("rdma@"):]: text for name, text in self.sections.items() if name.startswith("rdma@")}
        if rails:  # rails 2..N, by interface
            obs["rdma_rails"] = {iface: load_module_utils("rdma").parse_dump(text, iface) for iface, text in rails.items()}
        obs.update(observed_files(self.sections, self.persist_paths))
        return obs


def gather(spec, names: list[str] | None = None, timeout: float = 120.0,
           extra: dict[str, list[tuple[str, str]]] | None = None) -> dict[str, HostState]:
    """Read every (selected) host in parallel: one SSH session each. ``extra``: more (section,
    read-only command) pairs per host name (for instance facts/blockusers.py)."""
    hosts = [h for h in spec.hosts if names is None or h.name in names]
    by_name = {h.name: h for h in hosts}
    targets = [SshTarget.from_host_spec(h) for h in hosts]

    def command(t: SshTarget) -> str:
        return "sudo -n bash -s" if by_name[t.name].ssh.user != "root" else "bash -s"

    reads = {h.name: read_sections(spec, h) for h in hosts}  # persistence files (plan/persistence.py)
    results = run_many(
        targets, command,
        stdin=lambda t: host_script(by_name[t.name].role, by_name[t.name].fabric.interface,
                                    reads[t.name][1] + list((extra or {}).get(t.name, [])),
                                    [f.interface for f in by_name[t.name].rails]),
        timeout=timeout,
    )
    states: dict[str, HostState] = {}
    for name, res in results.items():
        role, iface = by_name[name].role, by_name[name].fabric.interface
        if isinstance(res, Unreachable):
            states[name] = HostState(name, role, iface, False, res.reason, res.kind)
            continue
        assert isinstance(res, CommandResult)
        sections = split_sections(res.stdout)
        st = HostState(name, role, iface, True, preflight=parse_kv(sections.get("preflight", "")), sections=sections,
                       persist_paths=reads[name][0])
        if "preflight" not in sections:
            st.error = f"the read-only probe failed (rc {res.rc}): {res.stderr.strip()[-200:]}"
            st.error_kind = "probe"
        states[name] = st
    return states
