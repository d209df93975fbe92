# -*- coding: utf-8 -*-
"""RDMA link: the desired state, the plan and the boot persistence (script, device file, unit;
the script and unit are templates rendered on the controller, see ``template_vars``).

Part of ``rdma`` (module_utils/rdma.py re-exports every name; see its docstring).
Stdlib only.
"""

from __future__ import annotations

import os
import shlex

from . import persist, validators
from .change import change as _new_change
from .rdma_observe import (
    CONFIGFS_ROOT, DEVICE_FILE, LIB_DIR, ROCE_MODES, SCRIPT_NAME, UNIT_DIR, UNIT_NAME, _DEVNAME_RE,
    _IFNAME_RE, devices_on,
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
    rail = _rail_of(opts.get("rail"), interface)
    return {"interface": interface, "mtu": mtu, "soft_roce": soft, "rdma_device": dev,
            "roce_mode": mode, "roce_tos": tos, "rail": rail}


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


def _rail_of(rail, interface):
    rail = 1 if rail is None else int(rail)
    if rail < 1:
        raise ValueError("rail: 1 or more expected, got %d" % rail)
    if rail > 1 and (not _IFNAME_RE.fullmatch(interface or "") or interface.startswith("-")):
        raise ValueError("rail %d: its boot files are named after its interface, a network interface "
                         "name (at most 15 characters), got %r" % (rail, interface))
    if rail > 1 and "@" in interface:  # systemd reads unit@x.service as an instance of unit@.service
        raise ValueError("rail %d: its boot unit is named after its interface, and systemd reads '@' in a "
                         "unit name as a template instance: rename %s (ip link set ... name ...)" % (rail, interface))
    return rail


def boot_names(rail, interface):
    """(script name, device file name, unit name) of the boot files of the host's rail ``rail``
    (its fabric interface ``interface``). Rail 1 keeps the names of a one-link host
    (``SCRIPT_NAME``, ``DEVICE_FILE``, ``UNIT_NAME``); rail 2 and up name theirs after the
    interface, so each rail is restored at boot by a unit of its own."""
    if _rail_of(rail, interface) == 1:
        return SCRIPT_NAME, DEVICE_FILE, UNIT_NAME
    return ("rdma-restore-%s.sh" % interface, "rdma-device-%s" % interface,
            "nvmeofctl-rdma-%s.service" % interface)


def host_files_keys(rail, interface):
    """(script key, unit key): the ``host_files`` keys of the rail's boot script and unit,
    ``rdma_script`` and ``rdma_unit`` for rail 1, ``rdma_script@<interface>`` and
    ``rdma_unit@<interface>`` for rail 2 and up (host_files.py renders ``base@suffix`` from the
    template of ``base``)."""
    if _rail_of(rail, interface) == 1:
        return "rdma_script", "rdma_unit"
    return "rdma_script@%s" % interface, "rdma_unit@%s" % interface


def _rail(desired):
    return desired.get("rail", 1)  # a desired state from before rails: rail 1


def template_vars(desired, lib_dir=LIB_DIR, configfs_root=CONFIGFS_ROOT):
    """The values of the boot script and unit templates (``host_files`` keys ``rdma_script`` and
    ``rdma_unit``, for rail 2 and up ``rdma_script@<interface>`` and ``rdma_unit@<interface>``;
    the collection's templates/, rendered on the controller). Desired state and paths only: the
    device the module picks on the host goes to the device file, which the script reads at boot."""
    script, device_file, _unit = boot_names(_rail(desired), desired["interface"])
    script_key, unit_key = host_files_keys(_rail(desired), desired["interface"])
    return {
        script_key: {
            "interface": desired["interface"], "mtu": desired["mtu"], "soft_roce": desired["soft_roce"],
            "roce_mode": desired["roce_mode"], "roce_tos": desired["roce_tos"],
            "configfs_root": configfs_root, "device_file": os.path.join(lib_dir, device_file),
        },
        unit_key: {"interface": desired["interface"], "script_path": os.path.join(lib_dir, script)},
    }


def persistence_files(desired, device, texts, lib_dir=LIB_DIR, unit_dir=UNIT_DIR):
    """[(path, content, mode)]: the rail's boot script and unit (``texts``: the rendered
    ``host_files``) and the device file the script reads (with soft_roce the script re-creates
    that device)."""
    script, device_file, unit = boot_names(_rail(desired), desired["interface"])
    script_key, unit_key = host_files_keys(_rail(desired), desired["interface"])
    persist.require_texts(texts, (script_key, unit_key), "rdma_link")
    return [
        (os.path.join(lib_dir, script), texts[script_key], 0o755),
        (os.path.join(lib_dir, device_file), device + "\n", 0o644),
        (os.path.join(unit_dir, unit), texts[unit_key], 0o644),
    ]


def persist_changes(desired, device, texts, lib_dir=LIB_DIR, unit_dir=UNIT_DIR, fs=persist.LOCAL):
    """The rail's boot script, its device file and its unit (enabled): (changes, states).
    ``fs``: the view of the host's files (persist.py); the module and the planner both call this."""
    unit = boot_names(_rail(desired), desired["interface"])[2]
    return persist.plan([(path, content, mode, None) for path, content, mode in persistence_files(
        desired, device, texts, lib_dir, unit_dir)], unit_dir, unit, fs=fs)


RAIL_UNIT_PREFIX, RAIL_UNIT_SUFFIX = "nvmeofctl-rdma-", ".service"


def rail_units_command(lib_dir=LIB_DIR, unit_dir=UNIT_DIR):
    """Read-only shell printing the path of every boot file of rails 2..N on the host (units, their
    wants links, scripts, device files), one a line: the planner's view of what
    ``stale_rail_removal`` would remove (``rail_files_view``)."""
    pattern = RAIL_UNIT_PREFIX + "*" + RAIL_UNIT_SUFFIX  # globs: the folders quoted, the patterns not
    globs = [shlex.quote(unit_dir) + "/" + pattern, shlex.quote(os.path.join(unit_dir, persist.WANTS)) + "/" + pattern,
             shlex.quote(lib_dir) + "/rdma-restore-*.sh", shlex.quote(lib_dir) + "/rdma-device-*"]
    return 'for f in %s; do if [ -e "$f" ] || [ -L "$f" ]; then echo "$f"; fi; done; true' % " ".join(globs)


def rail_files(interface, lib_dir=LIB_DIR, unit_dir=UNIT_DIR):
    """Every boot file of the rail (2..N) on ``interface``: script, device file, unit, wants link."""
    script, device_file, unit = boot_names(2, interface)
    return [os.path.join(lib_dir, script), os.path.join(lib_dir, device_file), os.path.join(unit_dir, unit),
            persist.wants_path(unit_dir, unit)]


def rail_files_view(listing, unit_dir=UNIT_DIR, lib_dir=LIB_DIR):
    """(interfaces with a rail unit, a ``persist.DumpedFiles`` answering which of their boot files
    exist) from ``rail_units_command``'s output."""
    listed = [line.strip() for line in listing.splitlines() if line.strip()]
    units = [os.path.basename(p) for p in listed if os.path.dirname(p) == unit_dir.rstrip("/")]
    interfaces = rail_unit_interfaces(units)
    paths = [f for i in interfaces for f in rail_files(i, lib_dir, unit_dir)]
    return interfaces, persist.DumpedFiles(paths, {}, {}, [p for p in listed if p in paths])


def rail_unit_interfaces(names):
    """The interfaces of the rail boot units ``names`` (file names in the unit folder); names that
    are not such a unit of a valid interface are left out."""
    out = []
    for name in names:
        name = name.strip()
        if name.startswith(RAIL_UNIT_PREFIX) and name.endswith(RAIL_UNIT_SUFFIX):
            interface = name[len(RAIL_UNIT_PREFIX):-len(RAIL_UNIT_SUFFIX)]
            if _IFNAME_RE.fullmatch(interface) and not interface.startswith("-") and "@" not in interface:
                out.append(interface)
    return sorted(set(out))


def stale_rail_removal(present, keep, lib_dir=LIB_DIR, unit_dir=UNIT_DIR, fs=persist.LOCAL):
    """The boot files of rails no longer wanted: ``present``, the interfaces whose rail unit the
    host has (``rail_unit_interfaces``); ``keep``, those of the rails 2..N the module is given.
    Disables each stale unit and removes its script, device file and unit (those present); the live
    link stays as it is."""
    changes = []
    for interface in sorted(set(present) - set(keep)):
        script, device_file, unit = boot_names(2, interface)
        changes += persist.plan_removal([os.path.join(lib_dir, script), os.path.join(lib_dir, device_file),
                                         os.path.join(unit_dir, unit)], unit_dir, unit,
                                        reason="rail %s is no longer in rdma_rails" % interface, fs=fs)
    return changes


def persist_removal(lib_dir=LIB_DIR, unit_dir=UNIT_DIR, fs=persist.LOCAL, rail=1, interface=None):
    """``persist: false``: disable the unit and remove the boot script, its device file and the
    unit (those present) of rail ``rail`` (2 and up: of its ``interface``, which names them). The
    live link (MTU, RDMA device) stays as it is."""
    script, device_file, unit = boot_names(rail, interface)
    return persist.plan_removal([os.path.join(lib_dir, script), os.path.join(lib_dir, device_file),
                                 os.path.join(unit_dir, unit)], unit_dir, unit, fs=fs)
