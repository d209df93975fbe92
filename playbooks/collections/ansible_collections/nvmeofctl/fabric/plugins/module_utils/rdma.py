"""RDMA fabric link (RoCE v2): parsers, observed state, plan and persistence for ``rdma_link``.

Stdlib only, no Ansible; the shared change shape and persistence come from sibling module_utils
(relative imports: the nvmeofctl package imports this as part of the module_utils package for
its facts and health checks).

Sources of truth, in order of preference (FACTS.md):
  * ``rdma -j link show``: which RDMA device is bound to which netdev;
  * ``/sys/class/infiniband/<dev>/ports/<p>/gid_attrs/ndevs/*``: the same without iproute2's rdma;
  * ``/sys/class/infiniband/<dev>/ports/<p>/gids/<i>`` + ``gid_attrs/types/<i>``: the GID table
    (reading an empty entry's type fails with EINVAL: skipped);
  * configfs ``rdma_cm/<dev>/ports/<p>/default_roce_mode`` / ``default_roce_tos`` (mkdir
    ``<dev>`` first; absent when rdma_cm's configfs support is not built or loaded).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex

from . import persist
from .change import change as _new_change, public as public_change

SYSFS_ROOT = "/sys"
CONFIGFS_ROOT = "/sys/kernel/config"
LIB_DIR = "/usr/local/lib/nvmeofctl"
UNIT_DIR = persist.UNIT_DIR
UNIT_NAME = "nvmeofctl-rdma.service"
SCRIPT_NAME = "rdma-restore.sh"
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


def _read(path):
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def _ls(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


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
        if not 576 <= mtu <= 9216:
            raise ValueError("mtu: 576..9216 expected, got %d" % mtu)
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


# --------------------------------------------------------------------------------------------
# the module run (shared by rdma_link, and by nvmet_target / nvme_host through their `rdma` option)
# --------------------------------------------------------------------------------------------

ARGUMENT_SPEC = dict(
    interface=dict(type="str", required=True),
    mtu=dict(type="int"),
    soft_roce=dict(type="bool", default=False),
    rdma_device=dict(type="str"),
    roce_mode=dict(type="str", default="RoCE v2", choices=["RoCE v2", "IB/RoCE v1"]),
    roce_tos=dict(type="int"),
    persist=dict(type="bool", default=True),
    sysfs_root=dict(type="path", default=SYSFS_ROOT),
    configfs_root=dict(type="path", default=CONFIGFS_ROOT),
    lib_dir=dict(type="path", default=LIB_DIR),
    unit_dir=dict(type="path", default=UNIT_DIR),
)


def read_links(module, sysfs_root):
    """RDMA links from ``rdma -j link show``, or sysfs when iproute2's rdma is missing."""
    rdma = module.get_bin_path("rdma")
    if rdma:
        rc, out, _err = module.run_command([rdma, "-j", "link", "show"])
        if rc == 0:
            try:
                return parse_link_show(out)
            except ValueError:
                pass
    return read_links_sysfs(sysfs_root)


def observe(module, desired, p):
    links = read_links(module, p["sysfs_root"])
    obs = {
        "interface": desired["interface"],
        "mtu": read_mtu(desired["interface"], p["sysfs_root"]),
        "links": [l for l in links if l.get("netdev") == desired["interface"]],
        "modules": {"rdma_rxe": module_loaded("rdma_rxe", p["sysfs_root"]),
                    "rdma_cm": module_loaded("rdma_cm", p["sysfs_root"])
                    or os.path.isdir(os.path.join(p["configfs_root"], "rdma_cm"))},
    }
    return obs, links


def _cm_text(cm):
    if not cm.get("exposed"):
        return "not exposed"
    if not cm.get("exists"):
        return "not configured"
    return "default_roce_mode=%s default_roce_tos=%s" % (cm.get("default_roce_mode"), cm.get("default_roce_tos"))


def _state_text(ifname, mtu, device, bound, cm, files):
    lines = ["netdev %s: mtu %s" % (ifname, mtu),
             "rdma device: %s" % ("%s (bound to %s)" % (device, ifname) if bound else "none"),
             "rdma_cm %s port 1: %s" % (device, _cm_text(cm))]
    lines += ["persist %s: %s" % f for f in files]
    return "\n".join(lines) + "\n"


def reconcile(module, p, check):
    """The whole rdma_link run; returns the module result (fails through ``module.fail_json``).

    ``module`` is the calling AnsibleModule (duck-typed: run_command, get_bin_path, warn,
    fail_json), so nvmet_target and nvme_host run the RDMA link in their own module run.
    """
    try:
        desired = normalize(p)
    except ValueError as e:
        module.fail_json(msg="rdma_link: %s" % e)
    ifname = desired["interface"]

    obs, links = observe(module, desired, p)
    try:
        device, create = choose_device(desired, links)
        obs["rdma_cm"] = read_rdma_cm(device, 1, p["configfs_root"])
        changes, device = plan(desired, obs)
    except ValueError as e:
        module.fail_json(msg="rdma_link: %s" % e)

    cm_before = obs["rdma_cm"]
    cm_after = dict(cm_before)
    cm_change = next((c for c in changes if c["kind"] == "rdma_cm"), None)
    if cm_change:
        cm_after.update(exposed=True, exists=True, default_roce_mode=desired["roce_mode"])
        if desired["roce_tos"] is not None:
            cm_after["default_roce_tos"] = desired["roce_tos"]

    if not check:
        for c in list(changes):
            kind = c["kind"]
            if kind == "mtu":
                _run(module, [module.get_bin_path("ip", required=True), "link", "set", "dev", ifname,
                              "mtu", str(desired["mtu"])], changes)
            elif kind == "modules":
                mods = c["detail"].split()[2:]
                _run(module, [module.get_bin_path("modprobe", required=True), "-a"] + mods, changes)
            elif kind == "rxe":
                _run(module, [module.get_bin_path("rdma", required=True), "link", "add", device,
                              "type", "rxe", "netdev", ifname], changes)
                links = read_links(module, p["sysfs_root"])
                if device not in devices_on(links, ifname):
                    module.fail_json(msg="rdma_link: rdma link add %s succeeded but the device is not "
                                         "bound to %s (rdma link show)" % (device, ifname), changed=True,
                                     changes=changes)
            elif kind == "rdma_cm":
                base = os.path.join(p["configfs_root"], "rdma_cm")
                if not os.path.isdir(base):
                    changes.remove(c)  # predicted before rdma_cm was loaded; its configfs is absent
                    cm_after = read_rdma_cm(device, 1, p["configfs_root"])
                    module.warn("rdma_cm configfs not exposed (%s): RoCE mode/TOS left at kernel "
                                "defaults" % base)
                    continue
                try:
                    d = os.path.join(base, device)
                    if not os.path.isdir(d):
                        os.mkdir(d)
                    pdir = os.path.join(d, "ports", "1")
                    if not os.path.isdir(pdir):  # real configfs creates it with <dev>; plain dirs in tests
                        os.makedirs(pdir)
                    _write(os.path.join(pdir, "default_roce_mode"), desired["roce_mode"])
                    if desired["roce_tos"] is not None:
                        _write(os.path.join(pdir, "default_roce_tos"), str(desired["roce_tos"]))
                except OSError as e:
                    module.fail_json(msg="rdma_link: rdma_cm %s: %s" % (device, e.strerror or e),
                                     changed=True, changes=changes)
                cm_after = read_rdma_cm(device, 1, p["configfs_root"])

    files_before, files_after = [], []
    if p["persist"]:
        pchanges, files_before = persist.plan(
            [(path, content, mode, None) for path, content, mode in persistence_files(
                desired, device, p["lib_dir"], p["unit_dir"], p["configfs_root"])],
            p["unit_dir"], UNIT_NAME)
        files_after = [(path, "current") for path, _st in files_before]
        if not check and pchanges:
            _done, failures = persist.apply(pchanges, persist.systemctl_for(module, p["unit_dir"]))
            if failures:
                module.fail_json(msg="rdma_link: %s" % "; ".join(failures), changed=True,
                                 changes=changes + [public_change(c) for c in pchanges])
        changes += [public_change(c) for c in pchanges]

    if check:
        bound_links, mtu_now, cm_final = obs["links"], obs["mtu"], cm_before
        mtu_after = desired["mtu"] if desired["mtu"] is not None else obs["mtu"]
    elif not any(c["kind"] in ("mtu", "modules", "rxe", "rdma_cm") for c in changes):
        bound_links, mtu_now, cm_final = obs["links"], obs["mtu"], cm_after  # nothing changed: no re-read
        mtu_after = mtu_now
    else:
        obs_after, _links = observe(module, desired, p)
        bound_links, mtu_now, cm_final = obs_after["links"], obs_after["mtu"], cm_after
        mtu_after = mtu_now
    result_obs = {
        "interface": ifname,
        "mtu": mtu_now,
        "links": bound_links,
        "gids": [] if (check and create) else read_gid_table(device, 1, p["sysfs_root"]),
        "rdma_cm": ({k: cm_final[k] for k in ("default_roce_mode", "default_roce_tos")}
                    if cm_final.get("exists") else _cm_text(cm_final)),
    }
    return dict(
        changed=bool(changes),
        changes=changes,
        disruptive=any(c["disruptive"] for c in changes),
        rdma_device=device,
        observed=result_obs,
        diff=dict(
            before=_state_text(ifname, obs["mtu"], device, not create, cm_before, files_before),
            after=_state_text(ifname, mtu_after, device, True, cm_after, files_after),
        ),
    )


def _write(path, value):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _run(module, cmd, changes):
    rc, _out, err = module.run_command(cmd)
    if rc != 0:
        module.fail_json(msg="rdma_link: %s failed (rc=%d): %s" % (" ".join(cmd[1:]), rc, (err or "").strip()),
                         changed=bool(changes), changes=changes)


def with_defaults(opts):
    """rdma_link parameters from a partial dict (the role modules' ``rdma`` option)."""
    p = {k: v.get("default") for k, v in ARGUMENT_SPEC.items()}
    p.update({k: v for k, v in (opts or {}).items() if v is not None})
    return p


def merge_into(module, rdma_result):
    """Make ``module``'s own exit_json/fail_json carry the RDMA link result too: one module run
    per host does both concerns, and the caller still sees every change."""
    orig_exit, orig_fail = module.exit_json, module.fail_json

    def merged(kw):
        kw["changes"] = list(rdma_result["changes"]) + list(kw.get("changes") or [])
        kw["changed"] = bool(kw.get("changed")) or rdma_result["changed"]
        kw["rdma"] = {"rdma_device": rdma_result["rdma_device"], "observed": rdma_result["observed"],
                      "changed": rdma_result["changed"]}
        if getattr(module, "_diff", False):  # the diff only in diff mode (--diff)
            d = kw.get("diff") or {}
            kw["diff"] = {"before": rdma_result["diff"]["before"] + (d.get("before") or ""),
                          "after": rdma_result["diff"]["after"] + (d.get("after") or "")}
        return kw

    module.exit_json = lambda **kw: orig_exit(**merged(kw))
    module.fail_json = lambda **kw: orig_fail(**merged(kw))
