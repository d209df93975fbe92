"""Preflight: does each host have what the spec needs? Pure: facts in, problems out."""

from __future__ import annotations

import re
from dataclasses import dataclass

from nvmeofctl.plan import kmods
from nvmeofctl.remote.ssh import REFUSED_KINDS


@dataclass(frozen=True)
class Problem:
    host: str
    message: str
    kind: str = "preflight"  # preflight | unreachable | hostkey

    def __str__(self) -> str:
        return f"{self.host}: {self.message}"


def _uses_dhchap(spec, host) -> bool:
    if host.role == "target":
        return any(s.dhchap for s in spec.subsystems_on(host.name))
    return any(e.dhchap_secret is not None for e in spec.exports_for(host.name))


# nvme-cli learned --dhchap-secret/--dhchap-ctrl-secret in 2.0 and `-o json` for connect in 2.0
MIN_NVME_CLI = (2, 0)


@dataclass(frozen=True)
class NvmeVersion:
    nvme: str
    libnvme: str | None = None

    @property
    def major_minor(self) -> tuple[int, int]:
        m = re.match(r"(\d+)\.(\d+)", self.nvme)
        return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def parse_version(text: str) -> NvmeVersion:
    """``nvme version`` (2.x prints a libnvme line; 3.x merged libnvme into nvme-cli)."""
    m = re.search(r"nvme version\s+v?([0-9][^\s(]*)", text or "")
    if not m:
        raise ValueError(f"unrecognised nvme version output: {(text or '').strip()[:80]!r}")
    lib = re.search(r"libnvme version\s+v?([0-9][^\s(]*)", text)
    return NvmeVersion(nvme=m.group(1), libnvme=lib.group(1) if lib else None)


def _nvme_cli_problems(version_line: str, dhchap: bool) -> list[str]:
    try:
        version = parse_version(version_line)
    except ValueError:
        return [f"cannot read the nvme-cli version ({version_line[:60]!r})"]
    if version.major_minor < MIN_NVME_CLI:
        what = "DH-HMAC-CHAP and JSON connect output" if dhchap else "JSON connect output"
        return [f"nvme-cli {version.nvme} is too old ({what} need >= {MIN_NVME_CLI[0]}.{MIN_NVME_CLI[1]}): upgrade nvme-cli"]
    return []


def evaluate(spec, states) -> list[Problem]:
    """``states``: name -> facts.hoststate.HostState."""
    problems: list[Problem] = []
    transport = spec.fabric.transport
    for name, st in states.items():
        host = spec.host(name)
        if not st.reachable:
            kind = "hostkey" if st.error_kind in REFUSED_KINDS else "unreachable"
            hint = {
                "hostkey": " (pin the host's key in the spec's known_hosts; never disable checking)",
                "auth": " (check ssh.user and ssh.key in the spec)",
            }.get(st.error_kind, "")
            problems.append(Problem(name, f"cannot connect: {st.error}{hint}", kind))
            continue
        if st.error:
            problems.append(Problem(name, st.error))
            continue
        p = st.preflight
        need = []
        if p.get("root") == "no":
            need.append(f"user {host.ssh.user} is neither root nor allowed passwordless sudo")
        if p.get("python3") != "yes":
            need.append("python3 is missing (the Ansible modules need it): install python3")
        if p.get("configfs") != "yes":
            need.append("configfs is not mounted (/sys/kernel/config)")
        if p.get("iface") != "yes":
            need.append(f"fabric interface {host.fabric.interface} does not exist")
        for r, fab in enumerate(host.rails, start=2):
            if p.get(f"rail_iface.{fab.interface}") != "yes":
                need.append(f"fabric interface {fab.interface} (rail {r}) does not exist")
        if host.role == "target":
            exports_devices = any(ns.backing.device for sub in spec.subsystems_on(name) for ns in sub.namespaces)
            if exports_devices and p.get("blkid") == "no":
                need.append("blkid (util-linux) is missing: the target checks a device for filesystem "
                            "signatures before it exports it")
        else:
            if not p.get("nvme_cli"):
                need.append("nvme-cli is missing: install the nvme-cli package")
            else:
                need += _nvme_cli_problems(p["nvme_cli"], _uses_dhchap(spec, host))
        soft_roce = transport == "rdma" and spec.fabric.soft_roce
        if soft_roce and p.get("rdma_tool") != "yes":
            need.append("the `rdma` tool (iproute2) is missing")
        missing = [m for m in kmods.needed(host.role, transport, soft_roce) if p.get(f"mod_{m}") != "yes"]
        if missing:
            need.append(f"kernel {p.get('kernel', '?')} has no module {', '.join(missing)}")
        if _uses_dhchap(spec, host):
            opt = "CONFIG_NVME_TARGET_AUTH" if host.role == "target" else "CONFIG_NVME_AUTH"
            val = p.get(opt, "unknown")
            if val not in ("y", "m", "unknown") or (val == "unknown" and p.get("mod_nvme_auth") != "yes"):
                need.append(
                    f"kernel {p.get('kernel', '?')} lacks DH-HMAC-CHAP ({opt} is not set) but the spec "
                    f"gives it DH-HMAC-CHAP keys: use a kernel >= 6.x built with {opt}"
                )
        problems += [Problem(name, msg) for msg in need]
    return problems
