"""RDMA device, port, GID, MTU, rdma_cm and kernel module checks (one host each)."""

from __future__ import annotations

from nvmeofctl.facts.probe import HostFacts
from nvmeofctl.facts.rdma import gid_is_v2
from nvmeofctl.health.common import TCP_NA, finding, rdma_used, resolve_device
from nvmeofctl.health.expect import Expectations
from nvmeofctl.health.model import Finding, Status
from nvmeofctl.plan import kmods

OK, WARN, FAIL, NA = Status.ok, Status.warn, Status.fail, Status.na


def check_interface(facts: HostFacts, exp: Expectations) -> list[Finding]:
    h = exp.hosts[facts.host]
    if not h.interface:
        return [finding(facts, "fabric_interface", FAIL, "none in spec", "hosts[].fabric.interface",
                        "set hosts[].fabric.interface in the spec")]
    n = facts.netif
    if n is None or not n.exists:
        return [finding(facts, "fabric_interface", FAIL, "absent", f"{h.interface} present",
                        f"check the interface name with `ip link` and fix hosts[{facts.host}].fabric.interface",
                        h.interface)]
    out = []
    up = (n.operstate or "").lower() == "up"
    out.append(finding(facts, "fabric_interface", OK if up else FAIL, f"operstate {n.operstate}", "up",
                       f"ip link set {h.interface} up; check cable/switch port", h.interface))
    ips = facts.links.get(h.interface).ipv4 if h.interface in facts.links else []
    if facts.links:
        missing = [ip for ip in h.ips if ip not in ips]
        out.append(finding(facts, "fabric_ip", FAIL if missing else OK, ", ".join(ips) or "none",
                           ", ".join(h.ips), f"ip addr add {missing[0]}/24 dev {h.interface} (or `nvmeofctl apply`)"
                           if missing else "", h.interface))
    return out


def check_rdma_device(facts: HostFacts, exp: Expectations) -> list[Finding]:
    h = exp.hosts[facts.host]
    if not rdma_used(exp):
        return [finding(facts, "rdma_device", NA, TCP_NA)]
    r = resolve_device(facts, h)
    bound = facts.rdma_devs_on(h.interface) if h.interface else []
    if r.device is None:
        have = ", ".join(sorted(facts.ib_devices)) or "no RDMA devices"
        if h.soft_roce:
            fix = f"modprobe rdma_rxe && rdma link add {h.rdma_device} type rxe netdev {h.interface}"
        else:
            fix = "load the NIC's RDMA driver (e.g. mlx5_ib) or fix hosts[].fabric.rdma_device"
        return [finding(facts, "rdma_device", FAIL, f"absent ({have}; on {h.interface}: {', '.join(bound) or 'none'})",
                        f"{h.rdma_device} on {h.interface}", fix, h.rdma_device)]
    netdevs = sorted({link.netdev for link in facts.rdma_link_for(r.name) if link.netdev})
    if not netdevs and r.port:
        netdevs = sorted({g["ndev"] for g in r.port.gids if g["ndev"]})
    note = "" if r.name == h.rdma_device else f" (spec default name {h.rdma_device})"
    if h.interface in netdevs:
        return [finding(facts, "rdma_device", OK, f"{r.name} on {h.interface}{note}", f"{h.rdma_device} on {h.interface}",
                        device=r.name)]
    return [finding(facts, "rdma_device", FAIL, f"{r.name} on {', '.join(netdevs) or 'no netdev'}",
                    f"{h.rdma_device} on {h.interface}",
                    f"bind the RDMA device to {h.interface} (soft-RoCE: rdma link delete/add) or fix the spec",
                    r.name)]


def _rdma_port(facts: HostFacts, exp: Expectations, check: str):
    """(resolved device, []) when the host has an RDMA port to check, else (None, [the na finding])."""
    if not rdma_used(exp):
        return None, [finding(facts, check, NA, TCP_NA)]
    r = resolve_device(facts, exp.hosts[facts.host])
    if r.port is None:
        return None, [finding(facts, check, NA, "no RDMA device/port (see rdma_device)", device=r.name)]
    return r, []


def check_port(facts: HostFacts, exp: Expectations) -> list[Finding]:
    h = exp.hosts[facts.host]
    r, na = _rdma_port(facts, exp, "rdma_port")
    if na:
        return na
    p = r.port
    # rdma link show is the first source; sysfs state is the same value
    link = next((x for x in facts.rdma_link_for(r.name) if x.port == p.port), None)
    state = (link.state if link and link.state else p.state) or "?"
    phys = (link.physical_state if link and link.physical_state else p.phys_state) or "?"
    layer = p.link_layer or "?"
    dev = f"{r.name}/{p.port}"
    good = state == "ACTIVE" and phys == "LINK_UP" and (layer == "Ethernet" or layer == "?")
    remedy = (f"bring {h.interface} up and check the cable/switch port (phys_state {phys})" if state != "ACTIVE"
              else "the port is InfiniBand: RoCE needs link_layer Ethernet (mlxconfig LINK_TYPE_P1=2)")
    return [finding(facts, "rdma_port", OK if good else FAIL, f"{state}/{phys}, {layer}",
                    "ACTIVE/LINK_UP, Ethernet", remedy, dev)]


def check_gid(facts: HostFacts, exp: Expectations) -> list[Finding]:
    h = exp.hosts[facts.host]
    r, na = _rdma_port(facts, exp, "roce_v2_gid")
    if na:
        return na
    dev = f"{r.name}/{r.port.port}"
    want = set(h.ips)
    # GID entries as module_utils/rdma.py parse_gid_table gives them (plan's rdma_link reads the same)
    v2 = [g for g in r.port.gids if gid_is_v2(g) and g["ipv4"] in want]
    if v2:
        g = v2[0]
        return [finding(facts, "roce_v2_gid", OK, f"index {g['index']} = {g['ipv4']} (RoCE v2, {g['ndev'] or '-'})",
                        f"RoCE v2 GID for {', '.join(h.ips)}", device=dev)]
    v1 = [g for g in r.port.gids if g["ipv4"] in want]
    have = ", ".join(f"{g['index']}:{g['ipv4'] or g['gid']}({g['type']})" for g in r.port.gids) or "empty table"
    if v1:
        return [finding(facts, "roce_v2_gid", FAIL, f"only {v1[0]['type']} GID for {v1[0]['ipv4']}", "RoCE v2",
                        "the NIC/driver lacks RoCE v2 GIDs: enable RoCE v2 (mlx5: default on; check firmware)", dev)]
    return [finding(facts, "roce_v2_gid", FAIL, have, f"RoCE v2 GID for {', '.join(h.ips) or '(no fabric IP in spec)'}",
                    f"assign the fabric IP to {h.interface}: GIDs follow the netdev's addresses", dev)]


def check_mtu(facts: HostFacts, exp: Expectations) -> list[Finding]:
    h = exp.hosts[facts.host]
    out = []
    n = facts.netif
    if n is None or not n.exists or n.mtu is None:
        out.append(finding(facts, "mtu", NA, "interface MTU unknown (see fabric_interface)", device=h.interface))
    elif h.mtu is None:  # rdma_link sets the MTU; a TCP fabric runs no rdma_link
        out.append(finding(facts, "mtu", OK, str(n.mtu), "any (nvmeofctl sets the MTU on RDMA fabrics only)",
                           device=h.interface))
    else:
        out.append(finding(facts, "mtu", OK if n.mtu == h.mtu else FAIL, str(n.mtu), str(h.mtu),
                           f"ip link set {h.interface} mtu {h.mtu} (switch ports too)", h.interface))
    if rdma_used(exp):
        r = resolve_device(facts, h)
        if r.port is None or r.port.active_mtu is None:
            out.append(finding(facts, "active_mtu", NA, "unknown (no ibv_devinfo or no RDMA port)", device=r.name))
        else:
            l2 = n.mtu if n and n.mtu else None
            want = 4096 if l2 and l2 >= 4200 else None
            dev = f"{r.name}/{r.port.port}"
            if want and r.port.active_mtu < want:
                out.append(finding(facts, "active_mtu", WARN, f"{r.port.active_mtu} at L2 MTU {l2}", f"{want}",
                                   "RoCE active_mtu follows the netdev MTU: recreate the device after raising it", dev))
            else:
                out.append(finding(facts, "active_mtu", OK, f"{r.port.active_mtu} at L2 MTU {l2}",
                                   "4096 when L2 MTU >= 4200", device=dev))
    return out


def check_rdma_cm(facts: HostFacts, exp: Expectations) -> list[Finding]:
    r, na = _rdma_port(facts, exp, "rdma_cm_mode")
    if na:
        return na
    cm = facts.rdma_cm.get((r.name, r.port.port))
    dev = f"{r.name}/{r.port.port}"
    if not cm:
        why = "configfs not mounted" if facts.configfs is False else f"rdma_cm configfs entry for {r.name} not created"
        return [finding(facts, "rdma_cm_mode", NA, f"not exposed ({why}; upstream kernels default to RoCE v2)",
                        "RoCE v2", device=dev)]
    out = []
    mode = cm.get("default_roce_mode", "?")
    out.append(finding(facts, "rdma_cm_mode", OK if mode == "RoCE v2" else FAIL, mode, "RoCE v2",
                       f"echo 'RoCE v2' > /sys/kernel/config/rdma_cm/{r.name}/ports/{r.port.port}/default_roce_mode",
                       dev))
    tos, want_tos = cm.get("default_roce_tos"), exp.hosts[facts.host].roce_tos
    if want_tos is not None and tos is not None and not r.soft:
        ok = tos.strip() == str(want_tos)
        out.append(finding(facts, "rdma_cm_tos", OK if ok else WARN, tos, str(want_tos),
                           f"echo {want_tos} > /sys/kernel/config/rdma_cm/{r.name}/ports/{r.port.port}/default_roce_tos",
                           dev))
    return out


def check_modules(facts: HostFacts, exp: Expectations) -> list[Finding]:
    h = exp.hosts[facts.host]
    if not facts.modules and not facts.sys_modules:
        return [finding(facts, "kernel_modules", NA, "module list unreadable")]
    need = kmods.needed(h.role, exp.fabric.transport, h.soft_roce)
    missing = [m for m in need if not facts.module_loaded(m)]
    want = ", ".join(need)
    if missing:
        return [finding(facts, "kernel_modules", FAIL, "missing " + ", ".join(missing), want,
                        kmods.modprobe_command(missing) + " (and persist in /etc/modules-load.d)")]
    return [finding(facts, "kernel_modules", OK, "loaded", want)]
