# -*- coding: utf-8 -*-
"""RDMA link: the desired state, the plan and the boot persistence (script, unit).

Part of ``rdma`` (module_utils/rdma.py re-exports every name; see its docstring).
Stdlib only.
"""

from __future__ import annotations

import os
import shlex

from . import persist, validators
from .change import change as _new_change
from .rdma_observe import (
    CONFIGFS_ROOT, LIB_DIR, ROCE_MODES, SCRIPT_NAME, UNIT_DIR, UNIT_NAME, _DEVNAME_RE, _IFNAME_RE,
    devices_on,
)


# --------------------------------------------------------------------------------------------
# desired state and plan
# --------------------------------------------------------------------------------------------


def normalize(opts):
    """Validate the rdma_link options; ValueError with a one-line message."""
    interface = (opts.get("interface") or "").strip()
    if not _IFNAME_RE.fullmatch(interface) or interface.startswith("-"):
        raise ValueError("interface: a network interface name (at most 15 characters), got %r" % interface)
    mtu = opts.get("mtu")
    if mtu is not None:
        mtu = int(mtu)
        problem = validators.mtu_problem(mtu)  # the spec's rule too: one range
        if problem:
            raise ValueError("mtu: %s" % problem)
    soft = bool(opts.get("soft_roce"))
    dev = (opts.get("rdma_device") or "").strip() or None
    if dev is not None and (not _DEVNAME_RE.fullmatch(dev) or dev.startswith("-")):
        raise ValueError("rdma_device: letters, digits, '_', '.', '-' only, got %r" % dev)
    mode = opts.get("roce_mode") or "RoCE v2"
    if mode not in ROCE_MODES:
        raise ValueError("roce_mode: one of %s, got %r" % (", ".join(ROCE_MODES), mode))
    tos = opts.get("roce_tos")
    if tos is not None:
        tos = int(tos)
        if not 0 <= tos <= 255:
            raise ValueError("roce_tos: 0..255 expected, got %d" % tos)
    return {"interface": interface, "mtu": mtu, "soft_roce": soft, "rdma_device": dev,
            "roce_mode": mode, "roce_tos": tos}


def choose_device(desired, links):
    """(device name, needs_create) for the interface, or raise ValueError explaining why not."""
    ifname = desired["interface"]
    want = desired["rdma_device"]
    bound = devices_on(links, ifname)
    by_name = {l["device"]: l for l in links}
    if want:
        if want in bound:
            return want, False
        if want in by_name:
            raise ValueError("RDMA device %s is bound to %s, not %s: pick another rdma_device "
                             "or remove it (rdma link delete %s)"
                             % (want, by_name[want].get("netdev") or "no netdev", ifname, want))
        if bound:
            raise ValueError("%s already has RDMA device %s, not %s: set rdma_device: %s (or remove "
                             "it: rdma link delete %s)" % (ifname, bound[0], want, bound[0], bound[0]))
        if not desired["soft_roce"]:
            raise ValueError("RDMA device %s not found (soft_roce is false, so nothing creates it)" % want)
        return want, True
    if bound:
        return bound[0], False
    if desired["soft_roce"]:
        return "rxe_%s" % ifname, True
    raise ValueError("no RDMA device is bound to %s (rdma link show): use a RoCE NIC's port or set "
                     "soft_roce: true" % ifname)


def _change(obj, action, detail, reason, disruptive=False, kind=None):
    return _new_change(obj, action, detail, reason, disruptive, kind=kind)


def plan(desired, observed):
    """Ordered changes. ``observed``: {"mtu", "links", "modules": {name: loaded}, "rdma_cm"}.

    Returns (changes, device). Raises ValueError when the interface or device is unusable.
    """
    ifname = desired["interface"]
    if observed.get("mtu") is None:
        raise ValueError("interface %s not found (/sys/class/net/%s)" % (ifname, ifname))
    changes = []
    if desired["mtu"] is not None and observed["mtu"] != desired["mtu"]:
        lower = desired["mtu"] < observed["mtu"]
        changes.append(_change(
            "netdev %s" % ifname, "update", "mtu: %d -> %d (ip link set dev %s mtu %d)"
            % (observed["mtu"], desired["mtu"], ifname, desired["mtu"]),
            "RDMA connections negotiated a larger path MTU break" if lower else "differs from spec",
            disruptive=lower, kind="mtu"))
    device, create = choose_device(desired, observed.get("links") or [])
    mods = []
    if create and not observed.get("modules", {}).get("rdma_rxe"):
        mods.append("rdma_rxe")
    if not observed.get("modules", {}).get("rdma_cm"):
        mods.append("rdma_cm")
    if mods:
        changes.append(_change("kernel modules", "create", "modprobe -a %s" % " ".join(mods),
                               "not loaded", kind="modules"))
    if create:
        changes.append(_change("rdma link %s" % device, "create",
                               "rdma link add %s type rxe netdev %s" % (device, ifname),
                               "no RDMA device bound to %s" % ifname, kind="rxe"))
    cm = observed.get("rdma_cm") or {}
    # rdma_cm not loaded yet: assume its configfs will appear once loaded (checked again then)
    exposed = cm.get("exposed") or "rdma_cm" in mods
    if exposed:
        notes = []
        have_mode = cm.get("default_roce_mode") if cm.get("exists") and not create else None
        have_tos = cm.get("default_roce_tos") if cm.get("exists") and not create else None
        if have_mode != desired["roce_mode"]:
            notes.append("default_roce_mode: %s -> %s" % (have_mode or "?", desired["roce_mode"]))
        if desired["roce_tos"] is not None and have_tos != desired["roce_tos"]:
            notes.append("default_roce_tos: %s -> %d" % ("?" if have_tos is None else have_tos,
                                                         desired["roce_tos"]))
        if notes:
            if not cm.get("exists") or create:
                notes.insert(0, "mkdir rdma_cm/%s" % device)
            changes.append(_change("rdma_cm %s port 1" % device, "update", "; ".join(notes),
                                   "differs from spec (applies to new connections only)",
                                   kind="rdma_cm"))
    return changes, device


def plan_from_dump(desired_opts, observed):
    """The planner's entry: (changes, device) exactly as ``rdma_link`` would compute them."""
    desired = normalize(desired_opts)
    device, _create = choose_device(desired, observed.get("links") or [])
    cm = observed.get("rdma_cm_devices", {}).get(device)
    obs = dict(observed)
    obs["rdma_cm"] = {"exposed": observed.get("cm_exposed", False), "exists": cm is not None,
                      "default_roce_mode": (cm or {}).get("default_roce_mode"),
                      "default_roce_tos": (cm or {}).get("default_roce_tos")}
    return plan(desired, obs)


# --------------------------------------------------------------------------------------------
# persistence
# --------------------------------------------------------------------------------------------


def systemd_escape(name):
    """``systemd-escape`` of a path component (``-`` becomes ``\\x2d``)."""
    out = []
    for i, ch in enumerate(name):
        if ch == "/":
            out.append("-")
        elif (ch.isascii() and ch.isalnum()) or ch in ":_" or (ch == "." and i > 0):
            out.append(ch)
        else:
            out.append("\\x%02x" % ord(ch))
    return "".join(out)


def render_script(desired, device, create_rxe, configfs_root=CONFIGFS_ROOT):
    """An idempotent /bin/sh script restoring MTU, the rxe link and rdma_cm defaults."""
    q = shlex.quote
    ifname = desired["interface"]
    lines = [
        "#!/bin/sh",
        "# Written by nvmeofctl (nvmeofctl.fabric.rdma_link). Do not edit: the next apply rewrites it.",
        "# Restores the RDMA fabric link at boot: MTU, Soft-RoCE device, rdma_cm defaults. Idempotent.",
        "set -u",
        "IF=%s" % q(ifname),
        "DEV=%s" % q(device),
        "rc=0",
        "log() { echo \"nvmeofctl-rdma: $*\" >&2; }",
        "i=0",
        "while [ ! -e \"/sys/class/net/$IF\" ] && [ $i -lt 60 ]; do sleep 1; i=$((i + 1)); done",
        "[ -e \"/sys/class/net/$IF\" ] || { log \"interface $IF not found\"; exit 1; }",
    ]
    if desired["mtu"] is not None:
        lines.append("[ \"$(cat \"/sys/class/net/$IF/mtu\")\" = %s ] || ip link set dev \"$IF\" mtu %s "
                     "|| { log \"cannot set MTU %s on $IF\"; rc=1; }"
                     % (q(str(desired["mtu"])), desired["mtu"], desired["mtu"]))
    mods = "rdma_rxe rdma_cm" if create_rxe else "rdma_cm"
    lines.append("modprobe -a %s || { log \"modprobe -a %s failed\"; rc=1; }" % (mods, mods))
    if create_rxe:
        lines.append("[ -e \"/sys/class/infiniband/$DEV\" ] || rdma link add \"$DEV\" type rxe netdev \"$IF\" "
                     "|| { log \"rdma link add $DEV failed\"; rc=1; }")
    else:
        lines += [
            "i=0",
            "while [ ! -e \"/sys/class/infiniband/$DEV\" ] && [ $i -lt 60 ]; do sleep 1; i=$((i + 1)); done",
            "[ -e \"/sys/class/infiniband/$DEV\" ] || { log \"RDMA device $DEV not found\"; exit 1; }",
        ]
    cm = "%s/rdma_cm" % configfs_root
    lines += [
        "CM=%s" % q(cm),
        "if [ -d \"$CM\" ]; then",
        "  [ -d \"$CM/$DEV\" ] || mkdir \"$CM/$DEV\" || rc=1",
        "  printf '%%s' %s > \"$CM/$DEV/ports/1/default_roce_mode\" || { log \"cannot set RoCE mode\"; rc=1; }"
        % q(desired["roce_mode"]),
    ]
    if desired["roce_tos"] is not None:
        lines.append("  printf '%%s' %s > \"$CM/$DEV/ports/1/default_roce_tos\" || { log \"cannot set TOS\"; rc=1; }"
                     % q(str(desired["roce_tos"])))
    lines += [
        "else",
        "  log \"rdma_cm configfs not exposed: RoCE mode/TOS left at kernel defaults\"",
        "fi",
        "exit $rc",
    ]
    return "\n".join(lines) + "\n"


def render_unit(interface, script_path):
    dev_unit = "sys-subsystem-net-devices-%s.device" % systemd_escape(interface)
    return persist.unit_text(
        ["Written by nvmeofctl (nvmeofctl.fabric.rdma_link). Do not edit: the next apply rewrites it."],
        "nvmeofctl: restore the RDMA fabric link on %s (MTU, Soft-RoCE, rdma_cm)" % interface,
        "/bin/sh %s" % script_path,
        after="network-online.target %s sys-kernel-config.mount" % dev_unit,
        wants="network-online.target %s" % dev_unit,
        before="nvmeofctl-nvmet.service nvmeofctl-connect.service", timeout=180)


def persistence_files(desired, device, lib_dir=LIB_DIR, unit_dir=UNIT_DIR, configfs_root=CONFIGFS_ROOT):
    """[(path, content, mode)]; with soft_roce the script re-creates the rxe device at boot."""
    script = os.path.join(lib_dir, SCRIPT_NAME)
    return [
        (script, render_script(desired, device, desired["soft_roce"], configfs_root), 0o755),
        (os.path.join(unit_dir, UNIT_NAME), render_unit(desired["interface"], script), 0o644),
    ]


def persist_changes(desired, device, lib_dir=LIB_DIR, unit_dir=UNIT_DIR, configfs_root=CONFIGFS_ROOT,
                    fs=persist.LOCAL):
    """The boot script and its unit (enabled): (changes, states). ``fs``: the view of the host's
    files (persist.py); the module and the planner both call this."""
    return persist.plan([(path, content, mode, None) for path, content, mode in persistence_files(
        desired, device, lib_dir, unit_dir, configfs_root)], unit_dir, UNIT_NAME, fs=fs)
