# -*- coding: utf-8 -*-
"""RDMA link: constants, parsers (real captures in tests) and sysfs/configfs readers.

Part of ``rdma`` (module_utils/rdma.py re-exports every name; see its docstring).
Stdlib only.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex

from . import persist
from .fileio import list_dir, read_text

SYSFS_ROOT = "/sys"
CONFIGFS_ROOT = "/sys/kernel/config"
LIB_DIR = "/usr/local/lib/nvmeofctl"
UNIT_DIR = persist.UNIT_DIR
UNIT_NAME = "nvmeofctl-rdma.service"
SCRIPT_NAME = "rdma-restore.sh"
DEVICE_FILE = "rdma-device"  # the RDMA device the script restores (the one the module chose)
ROCE_MODES = ("RoCE v2", "IB/RoCE v1")
ZERO_GID = "0000:0000:0000:0000:0000:0000:0000:0000"
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,15}")  # fullmatch; as validators.ifname_problem, ASCII only
_DEVNAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,63}")  # fullmatch


# --------------------------------------------------------------------------------------------
# parsers (fed real captures in tests)
# --------------------------------------------------------------------------------------------


def parse_link_show(text):
    """``rdma -j link show`` -> [{"device", "port", "state", "physical_state", "netdev"}]."""
    text = (text or "").strip()
    if not text:
        return []
    data = json.loads(text)
    out = []
    for item in data if isinstance(data, list) else []:
        if not isinstance(item, dict):
            continue
        out.append({
            "device": item.get("ifname"),
            "port": int(item.get("port", 1)),
            "state": item.get("state"),
            "physical_state": item.get("physical_state"),
            "netdev": item.get("netdev") or None,
        })
    return out


def gid_ipv4(gid):
    """The IPv4 address of an IPv4-mapped GID (``::ffff:a.b.c.d``), else None."""
    try:
        addr = ipaddress.IPv6Address(gid)
    except ValueError:
        return None
    return str(addr.ipv4_mapped) if addr.ipv4_mapped else None


def parse_gid_table(text):
    """Lines ``<index> <gid> type="<type>" ndev=<netdev>`` (the sysfs-gid-table capture)."""
    out = []
    rx = re.compile(r'^\s*(\d+)\s+([0-9a-fA-F:]+)\s+type="([^"]*)"\s+ndev=(\S*)\s*$')
    for line in (text or "").splitlines():
        m = rx.match(line)
        if not m:
            continue
        gid = m.group(2).lower()
        if gid == ZERO_GID:
            continue
        out.append({"index": int(m.group(1)), "gid": gid, "type": m.group(3) or None,
                    "ndev": m.group(4) or None, "ipv4": gid_ipv4(gid)})
    return out


# --------------------------------------------------------------------------------------------
# sysfs / configfs readers
# --------------------------------------------------------------------------------------------


_read = read_text  # sysfs attribute, stripped; None when unreadable
_ls = list_dir


# iproute2 rdma's names for the numeric sysfs values ("4: ACTIVE", "5: LinkUp")
_PORT_STATES = {"0": "NOP", "1": "DOWN", "2": "INIT", "3": "ARMED", "4": "ACTIVE", "5": "ACTIVE_DEFER"}
_PHYS_STATES = {"1": "SLEEP", "2": "POLLING", "3": "DISABLED", "4": "PORT_CONFIGURATION_TRAINING",
                "5": "LINK_UP", "6": "LINK_ERROR_RECOVERY", "7": "PHY_TEST"}


def _state_name(value, names):
    if value is None:
        return None
    num, _sep, text = value.partition(":")
    return names.get(num.strip(), text.strip() or value)


def read_gid_table(dev, port=1, sysfs_root=SYSFS_ROOT):
    base = os.path.join(sysfs_root, "class", "infiniband", dev, "ports", str(port))
    out = []
    for name in sorted(_ls(os.path.join(base, "gids")), key=lambda n: int(n) if n.isdigit() else -1):
        gid = _read(os.path.join(base, "gids", name))
        if not gid or gid.lower() == ZERO_GID:
            continue
        gtype = _read(os.path.join(base, "gid_attrs", "types", name))  # EINVAL on empty: None
        ndev = _read(os.path.join(base, "gid_attrs", "ndevs", name))
        out.append({"index": int(name), "gid": gid.lower(), "type": gtype or None,
                    "ndev": ndev or None, "ipv4": gid_ipv4(gid)})
    return out


def read_links_sysfs(sysfs_root=SYSFS_ROOT):
    """The ``parse_link_show`` shape from sysfs alone (netdev = the one its GIDs name)."""
    ib = os.path.join(sysfs_root, "class", "infiniband")
    out = []
    for dev in _ls(ib):
        for port in _ls(os.path.join(ib, dev, "ports")):
            if not port.isdigit():
                continue
            base = os.path.join(ib, dev, "ports", port)
            ndevs = []
            for n in _ls(os.path.join(base, "gid_attrs", "ndevs")):
                v = _read(os.path.join(base, "gid_attrs", "ndevs", n))
                if v and v not in ndevs:
                    ndevs.append(v)
            parent = _read(os.path.join(ib, dev, "parent"))  # rxe exposes its netdev here
            netdev = ndevs[0] if ndevs else (parent or None)
            out.append({"device": dev, "port": int(port),
                        "state": _state_name(_read(os.path.join(base, "state")), _PORT_STATES),
                        "physical_state": _state_name(_read(os.path.join(base, "phys_state")), _PHYS_STATES),
                        "netdev": netdev})
    return out


def devices_on(links, interface):
    return sorted({l["device"] for l in links if l.get("netdev") == interface and l.get("device")})


def read_mtu(interface, sysfs_root=SYSFS_ROOT):
    v = _read(os.path.join(sysfs_root, "class", "net", interface, "mtu"))
    return int(v) if v and v.isdigit() else None


def module_loaded(name, sysfs_root=SYSFS_ROOT):
    return os.path.isdir(os.path.join(sysfs_root, "module", name))


def read_rdma_cm(dev, port=1, configfs_root=CONFIGFS_ROOT):
    """{"exposed", "exists", "default_roce_mode", "default_roce_tos"} for one device port."""
    base = os.path.join(configfs_root, "rdma_cm")
    out = {"exposed": os.path.isdir(base), "exists": False, "default_roce_mode": None,
           "default_roce_tos": None}
    d = os.path.join(base, dev)
    if out["exposed"] and dev and os.path.isdir(d):
        out["exists"] = True
        pdir = os.path.join(d, "ports", str(port))
        out["default_roce_mode"] = _read(os.path.join(pdir, "default_roce_mode"))
        tos = _read(os.path.join(pdir, "default_roce_tos"))
        out["default_roce_tos"] = int(tos) if tos and tos.isdigit() else None
    return out


def dump_command(interface, sysfs_root=SYSFS_ROOT, configfs_root=CONFIGFS_ROOT):
    """Read-only shell for the planner: what ``rdma_link`` observes, in one SSH round trip."""
    q = shlex.quote
    net = q(os.path.join(sysfs_root, "class", "net", interface, "mtu"))
    mod = q(os.path.join(sysfs_root, "module"))
    cm = q(os.path.join(configfs_root, "rdma_cm"))
    return "; ".join([
        "echo \"mtu=$(cat %s 2>/dev/null)\"" % net,
        "echo \"links=$(rdma -j link show 2>/dev/null | tr -d '\\n')\"",
        "for m in rdma_rxe rdma_cm; do [ -d %s/$m ] && echo mod_$m=1 || echo mod_$m=0; done" % mod,
        "[ -d %s ] && echo cm_exposed=1 || echo cm_exposed=0" % cm,
        "for d in %s/*/; do [ -d \"$d\" ] || continue; n=$(basename \"$d\"); "
        "echo \"cm_mode.$n=$(cat \"$d\"ports/1/default_roce_mode 2>/dev/null)\"; "
        "echo \"cm_tos.$n=$(cat \"$d\"ports/1/default_roce_tos 2>/dev/null)\"; done" % cm,
    ])


def parse_dump(text, interface):
    """``observed`` for :func:`plan` from :func:`dump_command` output (rdma_cm for the device
    the module would use)."""
    kv = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            kv[k.strip()] = v.strip()
    mtu = kv.get("mtu", "")
    try:
        links = parse_link_show(kv.get("links") or "[]")
    except ValueError:
        links = []
    obs = {
        "interface": interface,
        "mtu": int(mtu) if mtu.isdigit() else None,
        "links": [l for l in links if l.get("netdev") == interface],
        "modules": {"rdma_rxe": kv.get("mod_rdma_rxe") == "1",
                    "rdma_cm": kv.get("mod_rdma_cm") == "1" or kv.get("cm_exposed") == "1"},
        "rdma_cm_devices": {},
    }
    for k, v in kv.items():
        if k.startswith("cm_mode."):
            dev = k[len("cm_mode."):]
            tos = kv.get("cm_tos." + dev, "")
            obs["rdma_cm_devices"][dev] = {"default_roce_mode": v or None,
                                           "default_roce_tos": int(tos) if tos.isdigit() else None}
    obs["cm_exposed"] = kv.get("cm_exposed") == "1"
    return obs
