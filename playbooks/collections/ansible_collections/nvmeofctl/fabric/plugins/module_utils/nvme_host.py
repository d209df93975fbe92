# -*- coding: utf-8 -*-
# Copyright: nvmeofctl contributors
# Apache-2.0
"""NVMe-oF initiator (GPU node) state: read, diff, connect, persist.

Stdlib only, no Ansible; shared pieces (fileio, change, persist) come from sibling module_utils by
relative import. The ``nvmeofctl`` package imports it (module_utils package) for its pure
planner, the ``nvme_host`` module imports it, and the boot-time program built from it runs
``connect-all CONFIG`` (see ``main``).

State comes from sysfs, never from nvme-cli JSON (its shape changed in 2.11 and again in 3.x).
DH-HMAC-CHAP secrets are read from sysfs only to be turned into booleans or compared in place;
they never enter a returned structure, a message or a log line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

from .change import change as _new_change, public as public_change
from .persist import BOOT_NAME, unit_text as _unit_text

FABRICS_TRANSPORTS = ("rdma", "tcp", "fc", "loop")
DISCOVERY_NQN = "nqn.2014-08.org.nvmexpress.discovery"
GONE_STATES = ("deleting", "deleting (no IO)", "dead")
IOPOLICIES = ("numa", "round-robin", "queue-depth")
UNIT_NAME = "nvmeofctl-connect.service"
MANAGED_FILE = "initiator-managed.json"
CONNECTIONS_FILE = "connections.json"
TRANSPORT_MODULES = {"rdma": "nvme-rdma", "tcp": "nvme-tcp"}

CTRL_ATTRS = (
    "transport", "address", "state", "subsysnqn", "hostnqn", "hostid", "cntlid",
    "ctrl_loss_tmo", "reconnect_delay", "kato", "fast_io_fail_tmo", "queue_count", "sqsize",
    "numa_node",
)
SECRET_ATTRS = ("dhchap_secret", "dhchap_ctrl_secret")
NS_ATTRS = ("nsid", "uuid", "nguid", "wwid", "ana_state")
BLOCK_ATTRS = ("nsid", "uuid", "nguid", "wwid", "size")

_CTRL_RE = re.compile(r"^nvme(\d+)$")
_NS_RE = re.compile(r"^nvme(\d+)(?:c(\d+))?n(\d+)$")
_SUBSYS_RE = re.compile(r"^nvme-subsys\d+$")
_INT_ATTRS = ("cntlid", "ctrl_loss_tmo", "reconnect_delay", "kato", "fast_io_fail_tmo",
              "queue_count", "sqsize", "numa_node")


# --------------------------------------------------------------------------- paths
def paths_for(sysfs="/sys/class/nvme", etc="/etc/nvme", state_dir=None):
    """All locations derived from the sysfs class dir and the nvme config dir."""
    sysfs = sysfs.rstrip("/") or "/"
    sys_root = os.path.dirname(os.path.dirname(sysfs))  # /sys/class/nvme -> /sys
    etc = etc.rstrip("/")
    if state_dir is None:
        state_dir = os.path.join(os.path.dirname(etc), "nvmeofctl")
    return {
        "ctrl": sysfs,
        "subsys": os.path.join(sys_root, "class", "nvme-subsystem"),
        "block": os.path.join(sys_root, "block"),
        "module": os.path.join(sys_root, "module"),
        "etc": etc,
        "state_dir": state_dir.rstrip("/"),
    }


# --------------------------------------------------------------------------- parsing helpers
def parse_address(text):
    """Parse a sysfs/nvme-cli controller address.

    ``traddr=192.168.100.1,trsvcid=4420,src_addr=192.168.100.2`` -> dict; nvme-cli 1.x prints
    the fields separated by spaces; a PCIe address (``0000:4f:00.0``) becomes ``{"traddr": ..}``.
    """
    text = (text or "").strip()
    if not text:
        return {}
    if "=" not in text:
        return {"traddr": text}
    out = {}
    for part in re.split(r"[,\s]+", text):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _to_int(value):
    if value is None:
        return None
    v = value.strip()
    if v == "off":
        return -1
    try:
        return int(v, 0) if v.startswith("0x") else int(v)
    except ValueError:
        return None


def _hex(s):
    return re.sub(r"[^0-9a-f]", "", (s or "").lower())


def _secret_flag(value):
    """sysfs dhchap_secret content -> True/False; None when unreadable (not root)."""
    if value is None:
        return None
    v = value.strip()
    if v == "?":
        return None
    return v not in ("", "none")


def secret_digest(value):
    """The sha256 hex digest in a secret attribute's state value (``sha256:<hex>``, as the tree
    views and ``dump_command`` give it), or None when unset, unreadable or unknown."""
    if value is None:
        return None
    v = value.strip()
    if v in ("", "none", "?", "set"):
        return None
    if v.startswith("sha256:"):
        return v[len("sha256:"):]
    return None


def expected_ctrl_loss_tmo(ctrl_loss_tmo, reconnect_delay):
    """What sysfs shows for a requested ctrl_loss_tmo: the kernel stores
    max_reconnects = ceil(tmo / delay) and shows max_reconnects * delay, or -1 ("off")."""
    if ctrl_loss_tmo is None or reconnect_delay is None:
        return ctrl_loss_tmo
    if ctrl_loss_tmo < 0:
        return -1
    if reconnect_delay <= 0:
        return ctrl_loss_tmo
    return -(-ctrl_loss_tmo // reconnect_delay) * reconnect_delay


# --------------------------------------------------------------------------- tree views
class _FsTree:
    """Real files. Secret attributes are turned into ``sha256:<hex>``/none at read time (as
    ``dump_command`` prints them): the value itself never enters the state."""

    def read(self, path):
        try:
            with open(path, "r", errors="replace") as f:
                value = f.read()
        except OSError:
            return None
        if os.path.basename(path) in SECRET_ATTRS:
            v = value.split("\n", 1)[0]  # what the dump's `read -r` sees: the first line
            return "none" if v.strip() in ("", "none") else "sha256:" + hashlib.sha256(v.encode()).hexdigest()
        return value.replace("\n", " ").replace("\t", " ").strip()

    def listdir(self, path):
        try:
            return sorted(os.listdir(path))
        except OSError:
            return []

    def isdir(self, path):
        return os.path.isdir(path)


class _DumpTree:
    """The output of DUMP_COMMAND seen as a file tree."""

    def __init__(self, text):
        self.files = {}
        self.dirs = set()
        for line in (text or "").splitlines():
            parts = line.split("\t", 2)
            if parts[0] == "D" and len(parts) >= 2:
                self.dirs.add(parts[1].rstrip("/"))
            elif parts[0] == "F" and len(parts) == 3:
                self.files[parts[1]] = parts[2].strip()
        self._children = {}
        for p in list(self.dirs) + list(self.files):
            self._children.setdefault(os.path.dirname(p), set()).add(os.path.basename(p))

    def read(self, path):
        return self.files.get(path)

    def listdir(self, path):
        return sorted(self._children.get(path.rstrip("/"), ()))

    def isdir(self, path):
        return path.rstrip("/") in self.dirs


def _build_state(tree, p):
    j = os.path.join
    state = {
        "hostnqn": tree.read(j(p["etc"], "hostnqn")) or None,
        "hostid": tree.read(j(p["etc"], "hostid")) or None,
        "controllers": {},
        "subsystems": {},
        "managed": [],
        "modules": {m: tree.isdir(j(p["module"], m)) for m in ("nvme_rdma", "nvme_tcp", "nvme_core")},
    }
    raw = tree.read(j(p["state_dir"], MANAGED_FILE))
    if raw:
        try:
            doc = json.loads(raw)
            state["managed"] = [list(k) for k in doc.get("connections", []) if len(k) == 4]
        except (ValueError, AttributeError, TypeError):
            state["managed"] = []

    for name in tree.listdir(p["ctrl"]):
        cdir = j(p["ctrl"], name)
        if not _CTRL_RE.match(name) or not tree.isdir(cdir):
            continue
        c = {"name": name}
        for a in CTRL_ATTRS:
            v = tree.read(j(cdir, a))
            c[a] = _to_int(v) if a in _INT_ATTRS else v
        c["address_raw"] = c.pop("address") or ""
        c["address"] = parse_address(c["address_raw"])
        c["traddr"] = c["address"].get("traddr")
        c["trsvcid"] = c["address"].get("trsvcid")
        c["host_traddr"] = c["address"].get("host_traddr") or c["address"].get("src_addr")
        for attr in SECRET_ATTRS:  # only whether set and a digest: the value never leaves
            raw = tree.read(j(cdir, attr))
            c[attr + "_set"] = _secret_flag(raw)
            c[attr + "_sha256"] = secret_digest(raw)
        c["fabrics"] = c["transport"] in FABRICS_TRANSPORTS
        c["namespaces"] = []
        for ns in tree.listdir(cdir):
            m = _NS_RE.match(ns)
            ndir = j(cdir, ns)
            if not m or not tree.isdir(ndir):
                continue
            block = "nvme%sn%s" % (m.group(1), m.group(3))
            rec = {"name": ns, "block": block}
            for a in NS_ATTRS:
                v = tree.read(j(ndir, a))
                if v is None and a != "ana_state":
                    v = tree.read(j(p["block"], block, a))
                rec[a] = v or None
            rec["nsid"] = _to_int(rec["nsid"])
            # Without a UUID the kernel shows the NGUID formatted as a UUID: not a real UUID.
            if rec["uuid"] and rec["nguid"] and _hex(rec["uuid"]) == _hex(rec["nguid"]):
                rec["uuid"] = None
            if rec["uuid"] and not _hex(rec["uuid"]).strip("0"):
                rec["uuid"] = None
            if rec["nguid"] and not _hex(rec["nguid"]).strip("0"):
                rec["nguid"] = None
            c["namespaces"].append(rec)
        c["namespaces"].sort(key=lambda r: (r["nsid"] or 0, r["name"]))
        state["controllers"][name] = c

    for sname in tree.listdir(p["subsys"]):
        sdir = j(p["subsys"], sname)
        if not _SUBSYS_RE.match(sname) or not tree.isdir(sdir):
            continue
        nqn = tree.read(j(sdir, "subsysnqn"))
        if not nqn or nqn in state["subsystems"]:
            continue
        state["subsystems"][nqn] = {
            "name": sname,
            "iopolicy": tree.read(j(sdir, "iopolicy")),
            "controllers": sorted(n for n, c in state["controllers"].items() if c["subsysnqn"] == nqn),
        }
    return state


def read_state(sysfs="/sys/class/nvme", etc="/etc/nvme", state_dir=None):
    """Observed initiator state from sysfs and /etc (see module docstring)."""
    return _build_state(_FsTree(), paths_for(sysfs, etc, state_dir))


def dump_command(sysfs="/sys/class/nvme", etc="/etc/nvme", state_dir=None):
    """A read-only POSIX sh command whose output ``parse_dump`` turns into ``read_state``'s dict.
    Secret attributes are printed only as ``sha256:<hex>``/``none`` (``?`` when unreadable):
    hashed on the host, so a rotated key is seen without the value crossing the wire."""
    p = paths_for(sysfs, etc, state_dir)
    q = _shq
    return (
        # shell builtins only (read, printf): no fork per attribute, a slow VM pays for each
        "f(){ [ -f \"$1\" ] && [ -r \"$1\" ] || return 0; v=; "
        "while IFS= read -r l || [ -n \"$l\" ]; do v=\"${v:+$v }$l\"; l=; done < \"$1\" 2>/dev/null; "
        "printf 'F\\t%s\\t%s\\n' \"$1\" \"$v\"; }; "
        "g(){ [ -f \"$1\" ] || return 0; if [ -r \"$1\" ]; then v=; IFS= read -r v < \"$1\" 2>/dev/null; "
        "else v='?'; fi; "
        "case \"$v\" in ''|none) v=none;; '?') ;; "
        "*) v=sha256:$(printf %s \"$v\" | sha256sum | cut -d' ' -f1);; esac; "
        "printf 'F\\t%s\\t%s\\n' \"$1\" \"$v\"; }; "
        "d(){ printf 'D\\t%s\\n' \"$1\"; }; "
        "f " + q(p["etc"] + "/hostnqn") + "; f " + q(p["etc"] + "/hostid") + "; "
        "f " + q(p["state_dir"] + "/" + MANAGED_FILE) + "; "
        "for c in " + q(p["ctrl"]) + "/nvme*; do [ -d \"$c\" ] || continue; d \"$c\"; "
        "for a in " + " ".join(CTRL_ATTRS) + "; do f \"$c/$a\"; done; "
        "for a in " + " ".join(SECRET_ATTRS) + "; do g \"$c/$a\"; done; "
        "for n in \"$c\"/nvme*; do [ -d \"$n\" ] || continue; d \"$n\"; "
        "for a in " + " ".join(NS_ATTRS) + "; do f \"$n/$a\"; done; done; done; "
        "for s in " + q(p["subsys"]) + "/nvme-subsys*; do [ -d \"$s\" ] || continue; d \"$s\"; "
        "f \"$s/subsysnqn\"; f \"$s/iopolicy\"; done; "
        "for b in " + q(p["block"]) + "/nvme*; do [ -d \"$b\" ] || continue; d \"$b\"; "
        "for a in " + " ".join(BLOCK_ATTRS) + "; do f \"$b/$a\"; done; done; "
        "for m in nvme_rdma nvme_tcp nvme_core; do [ -d " + q(p["module"]) + "/$m ] && d "
        + q(p["module"]) + "/$m; done; true"
    )


def _shq(s):
    return "'" + s.replace("'", "'\"'\"'") + "'"


DUMP_COMMAND = dump_command()


def parse_dump(text, sysfs="/sys/class/nvme", etc="/etc/nvme", state_dir=None):
    """``read_state``'s dict from the output of ``DUMP_COMMAND`` (one SSH round trip)."""
    return _build_state(_DumpTree(text), paths_for(sysfs, etc, state_dir))


# --------------------------------------------------------------------------- desired state
def conn_key(c):
    """A connection's identity: (subsysnqn, transport, traddr, trsvcid)."""
    return (c.get("subsysnqn"), c.get("transport"), c.get("traddr"), str(c.get("trsvcid") or ""))


def ctrl_key(c):
    return (c.get("subsysnqn"), c.get("transport"), c.get("traddr"), str(c.get("trsvcid") or ""))


def key_label(k):
    nqn, tr, addr, svc = k
    if addr and ":" in addr:
        addr = "[%s]" % addr
    return "%s://%s:%s/%s" % (tr, addr, svc, nqn)


def normalize_desired(d):
    """Fill defaults so the planner and the module compare the same thing."""
    out = {
        "hostnqn": d.get("hostnqn"),
        "hostid": d.get("hostid"),
        "ctrl_loss_tmo": d.get("ctrl_loss_tmo", -1),
        "reconnect_delay": d.get("reconnect_delay", 10),
        "keep_alive_tmo": d.get("keep_alive_tmo", 5),
        "nr_io_queues": d.get("nr_io_queues"),
        "queue_size": d.get("queue_size"),
        "iopolicy": d.get("iopolicy"),
        "connect_timeout": d.get("connect_timeout", 30),
        "connections": [],
    }
    for c in d.get("connections") or []:
        out["connections"].append({
            "subsysnqn": c["subsysnqn"],
            "transport": c.get("transport") or "rdma",
            "traddr": c["traddr"],
            "trsvcid": str(c.get("trsvcid") or "4420"),
            "host_traddr": c.get("host_traddr") or None,
            "dhchap_secret": c.get("dhchap_secret") or None,
            "dhchap_ctrl_secret": c.get("dhchap_ctrl_secret") or None,
        })
    return out


def _change(obj, action, detail, disruptive, reason, op=None):
    """A change (change.py's shape) carrying what to execute in its private ``op``."""
    return _new_change(obj, action, detail, reason, disruptive, op=op)


def _mismatches(ctrl, conn, d):
    """Differences between a live controller and a desired connection (no secret values)."""
    out = []
    if ctrl.get("hostnqn") and ctrl["hostnqn"] != d["hostnqn"]:
        out.append("hostnqn %s -> %s" % (ctrl["hostnqn"], d["hostnqn"]))
    if ctrl.get("hostid") and d.get("hostid") and ctrl["hostid"] != d["hostid"]:
        out.append("hostid %s -> %s" % (ctrl["hostid"], d["hostid"]))
    want_tmo = expected_ctrl_loss_tmo(d["ctrl_loss_tmo"], d["reconnect_delay"])
    if ctrl.get("ctrl_loss_tmo") is not None and want_tmo is not None and ctrl["ctrl_loss_tmo"] != want_tmo:
        out.append("ctrl_loss_tmo %s -> %s" % (_tmo(ctrl["ctrl_loss_tmo"]), _tmo(want_tmo)))
    if ctrl.get("reconnect_delay") is not None and d["reconnect_delay"] is not None \
            and ctrl["reconnect_delay"] != d["reconnect_delay"]:
        out.append("reconnect_delay %s -> %s" % (ctrl["reconnect_delay"], d["reconnect_delay"]))
    if ctrl.get("kato") is not None and d["keep_alive_tmo"] is not None and ctrl["kato"] != d["keep_alive_tmo"]:
        out.append("keep_alive_tmo %s -> %s" % (ctrl["kato"], d["keep_alive_tmo"]))
    want_src = conn.get("host_traddr")
    if want_src:
        have = ctrl.get("host_traddr")
        if have != want_src and not (have is None and conn["transport"] == "tcp"):
            out.append("host_traddr %s -> %s" % (have or "(any)", want_src))
    for attr, opt in (("dhchap_secret_set", "dhchap_secret"), ("dhchap_ctrl_secret_set", "dhchap_ctrl_secret")):
        have = ctrl.get(attr)
        want = bool(conn.get(opt))
        if have is not None and have != want:
            out.append("%s %s -> %s" % (opt, "set" if have else "none", "set" if want else "none"))
    for opt in SECRET_ATTRS:
        have = ctrl.get(opt + "_sha256")
        if have and conn.get(opt) and have != hashlib.sha256(conn[opt].encode()).hexdigest():
            out.append("%s changed" % opt)
    return out


def _tmo(v):
    return "off" if v == -1 else str(v)


# a new value for a secret that stays set: the kernel re-authenticates a live controller in place
_REKEY_DIFFS = ("dhchap_secret changed", "dhchap_ctrl_secret changed")
REKEY_STATES = ("live", "connecting", "resetting")


def plan(desired, observed, etc="/etc/nvme"):
    """Changes, each carrying what to execute in its private ``op`` (``public`` drops it:
    it may hold secrets)."""
    d = normalize_desired(desired)
    changes = []

    def add(ch, op):
        ch["op"] = op
        changes.append(ch)

    ctrls = observed.get("controllers", {})
    fabrics = {n: c for n, c in ctrls.items() if c.get("fabrics")}
    present = {n: c for n, c in fabrics.items() if c.get("state") not in GONE_STATES}
    managed = {tuple(k) for k in observed.get("managed", [])}
    want = {}
    for c in d["connections"]:
        want.setdefault(conn_key(c), c)

    # 1. host identity files
    for attr in ("hostnqn", "hostid"):
        if d.get(attr) and observed.get(attr) != d[attr]:
            busy = sorted(present)
            add(_change(
                "file:%s/%s" % (etc, attr), "update",
                "%s -> %s" % (observed.get(attr) or "(absent)", d[attr]), bool(busy),
                ("fabrics controllers %s are connected; the kernel pins hostnqn to hostid while "
                 "any controller uses them" % ", ".join(busy)) if busy else
                "nvme-cli and boot-time connects read the host identity from this file"),
                {"op": "identity", "attr": attr, "value": d[attr]})

    # 2. controllers to remove or reconnect; connections to make
    remove, reconnect, connect, rekey = [], [], [], []
    for name in sorted(present, key=_ctrl_sort):
        c = present[name]
        k = ctrl_key(c)
        if k in want:
            continue
        if k in managed:
            remove.append((name, k))
    seen = set()
    for k, conn in want.items():
        matches = sorted((n for n, c in present.items() if ctrl_key(c) == k), key=_ctrl_sort)
        if not matches:
            connect.append((k, conn, None))
            continue
        live = [n for n in matches if present[n].get("state") == "live"] or matches
        keep = live[0]
        seen.add(keep)
        for extra in matches:
            if extra != keep:
                remove.append((extra, k, "duplicate"))
        diffs = _mismatches(present[keep], conn, d)
        secret_only = [x for x in diffs if x in _REKEY_DIFFS]
        # a live controller re-authenticates at once; one that lost its target meanwhile (for
        # instance because the target got the new key first) uses the new secret on its next
        # reconnect: either way no disconnect
        if diffs and len(secret_only) == len(diffs) and present[keep].get("state") in REKEY_STATES:
            rekey.append((keep, k, conn, diffs))
        elif diffs:
            reconnect.append((keep, k, conn, diffs))

    for item in remove:
        name, k = item[0], item[1]
        if len(item) == 3:
            add(_change("controller:%s" % name, "disconnect",
                        "duplicate controller for %s" % key_label(k), False,
                        "repeated connects created a second controller for the same path"),
                {"op": "disconnect", "name": name, "key": k})
        else:
            add(_change("controller:%s" % name, "disconnect", key_label(k), True,
                        "the spec no longer exports %s to this host; I/O on its namespaces stops"
                        % k[0]),
                {"op": "disconnect", "name": name, "key": k})
    for name, k, conn, diffs in reconnect:
        add(_change("connection:%s" % key_label(k), "reconnect",
                    "%s: %s" % (name, "; ".join(diffs)), True,
                    "these settings are fixed at connect time; the path drops while it reconnects"),
            {"op": "reconnect", "name": name, "key": k, "conn": conn})
    for name, k, conn, diffs in rekey:
        add(_change("connection:%s" % key_label(k), "rekey",
                    "%s: %s: re-authenticate in place" % (name, "; ".join(diffs)), False,
                    "the kernel re-authenticates the live controller with the new secret (sysfs "
                    "dhchap_secret); the path and its I/O stay up"),
            {"op": "rekey", "name": name, "key": k, "conn": conn,
             "attrs": [a for a, flag in (("dhchap_secret", "dhchap_secret changed"),
                                         ("dhchap_ctrl_secret", "dhchap_ctrl_secret changed"))
                       if flag in diffs]})
    for k, conn, _unused in connect:
        add(_change("connection:%s" % key_label(k), "connect",
                    "new %s path" % conn["transport"], False, "exported to this host by the spec"),
            {"op": "connect", "key": k, "conn": conn})

    # 3. host identity conflicts with controllers we keep (kernel: nvmf_host_add -> EINVAL)
    dropped = {c["op"]["name"] for c in changes if c["op"].get("op") in ("disconnect", "reconnect")}
    if d.get("hostnqn") and d.get("hostid") and (connect or reconnect):
        for name in sorted(present, key=_ctrl_sort):
            c = present[name]
            if name in dropped or not c.get("hostnqn") or not c.get("hostid"):
                continue
            same_nqn = c["hostnqn"] == d["hostnqn"]
            same_id = c["hostid"] == d["hostid"]
            if same_nqn != same_id:
                add(_change("controller:%s" % name, "conflict",
                            "uses hostnqn %s with hostid %s" % (c["hostnqn"], c["hostid"]), False,
                            "the kernel pins a hostnqn to one hostid while a controller uses it: "
                            "connects as %s/%s fail with EINVAL until %s (not managed by "
                            "nvmeofctl) is disconnected" % (d["hostnqn"], d["hostid"], name)),
                    {"op": "conflict", "name": name})

    # 4. multipath I/O policy of the subsystems we manage
    if d.get("iopolicy"):
        for nqn in sorted({k[0] for k in want}):
            s = observed.get("subsystems", {}).get(nqn)
            if s and s.get("iopolicy") and s["iopolicy"] != d["iopolicy"]:
                add(_change("subsystem:%s" % nqn, "set-iopolicy",
                            "%s -> %s" % (s["iopolicy"], d["iopolicy"]), False,
                            "multipath I/O policy from the spec (takes effect for new I/O)"),
                    {"op": "iopolicy", "nqn": nqn, "subsys": s["name"], "value": d["iopolicy"]})
    return changes


def _ctrl_sort(name):
    m = _CTRL_RE.match(name)
    return int(m.group(1)) if m else 1 << 30


def diff(desired, observed, etc="/etc/nvme"):
    """Changes needed to go from ``observed`` (read_state) to ``desired`` (module options).

    Each: ``{"object","action","detail","disruptive","reason"}``. PCIe controllers and fabrics
    controllers neither desired nor recorded as managed are never touched.
    """
    return [public_change(c) for c in plan(desired, observed, etc)]


# --------------------------------------------------------------------------- secrets
_SECRET_ARG_RE = re.compile(r"(--dhchap(?:-ctrl)?-secret[= ]|-[SC] )\S+")
_DHHC_RE = re.compile(r"DHHC-1:[0-9a-fA-F]{2}:[A-Za-z0-9+/=]+:?")


def redact(text, secrets=()):
    """Remove secret values (given ones, DHHC-1 keys, --dhchap-*secret args) from text."""
    if text is None:
        return text
    text = str(text)
    for s in secrets:
        if s:
            text = text.replace(s, "********")
    text = _SECRET_ARG_RE.sub(lambda m: m.group(1) + "********", text)
    return _DHHC_RE.sub("DHHC-1:********", text)


def _secrets_of(d):
    out = []
    for c in d.get("connections") or []:
        for k in ("dhchap_secret", "dhchap_ctrl_secret"):
            if c.get(k):
                out.append(c[k])
    return out


# --------------------------------------------------------------------------- commands
def run(argv, timeout, stdin_data=None):
    """Run argv with a hard timeout. Returns (rc, stdout, stderr, timed_out).

    On timeout the process group gets SIGKILL and is NOT waited for: an ``nvme connect``
    blocked in the kernel (wrong secret over RDMA: ~370 s in nvme_auth_wait) is in D state and
    cannot die before its write returns. rc 127 when the program is missing.
    """
    env = dict(os.environ, LC_ALL="C", LANG="C")
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    except OSError as exc:
        return 127, "", "%s: %s" % (argv[0], exc.strerror or exc), False
    try:
        out, err = proc.communicate(
            input=stdin_data.encode() if stdin_data is not None else None, timeout=timeout)
        return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), False
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            out, err = proc.communicate(timeout=1)
        except subprocess.TimeoutExpired:
            out, err = b"", b""
            for pipe in (proc.stdout, proc.stderr, proc.stdin):
                try:
                    if pipe:
                        pipe.close()
                except OSError:
                    pass
            proc.returncode = -signal.SIGKILL  # abandoned: init reaps it when the kernel lets go
        return None, (out or b"").decode("utf-8", "replace"), (err or b"").decode("utf-8", "replace"), True


_CLASSES = (
    # (category, regex over stdout+stderr, hint)
    ("no_modules", r"Failed to scan topology|/dev/nvme-fabrics: No such file or directory|"
                   r"Failed to open /dev/nvme-fabrics",
     "load the fabrics driver first (modprobe nvme-rdma / nvme-tcp)"),
    ("missing_secret", r"Required key not available",
     "the target requires DH-HMAC-CHAP: set the host's dhchap secret in the spec"),
    ("auth_failed", r"Key was rejected by service|authentication failed",
     "the DH-HMAC-CHAP secret does not match the target's key for this host"),
    ("already_connected", r"already connected|Operation already in progress",
     "a controller for this path exists already"),
    ("no_listener", r"Connection reset by peer|Connection refused",
     "nothing listens on that address/port/transport: check the target's nvmet port"),
    ("unreachable", r"No route to host|Network is unreachable|Connection timed out|Host is down|"
                    r"Cannot assign requested address|No such device",
     "the fabric address is unreachable from this node (link, IP, host_traddr, rdma link)"),
    ("refused", r"Input/output error",
     "the target refused the connect: host NQN not in the subsystem's allowed hosts, wrong "
     "subsystem NQN, or (over RDMA) a wrong DH-HMAC-CHAP secret; dmesg on the node says which"),
    ("invalid", r"Invalid argument|invalid option|unrecognized option|Unknown option",
     "invalid option, or host identity conflict (this hostnqn/hostid pair is pinned differently "
     "by another controller), or a kernel without the feature (DH-HMAC-CHAP: CONFIG_NVME_AUTH)"),
    ("not_installed", r"command not found|No such file or directory: .?nvme",
     "install nvme-cli on the GPU node"),
)


def classify(rc, stdout="", stderr="", timed_out=False, secrets=()):
    """Classify an nvme-cli result across versions.

    Returns ``{"category","ok","message","hint"}``; ``ok`` is True for success and for
    "already connected" (exit 70, 114, or 1 with text on stdout or stderr): the caller must
    still confirm a live controller in sysfs.
    """
    text = "%s\n%s" % (stdout or "", stderr or "")
    first = ""
    for line in (stderr or "").splitlines() + (stdout or "").splitlines():
        line = line.strip()
        if line and not line.startswith("{") and not line.startswith('"') and line not in ("}",):
            first = line
            break
    msg = redact(first, secrets)
    if timed_out:
        return {"category": "timeout", "ok": False, "message": "no answer within the timeout",
                "hint": "nvme connect blocked (over RDMA a wrong DH-HMAC-CHAP secret blocks "
                        "~370 s; the kernel serializes connects, so later ones wait too)"}
    if rc == 127:
        return {"category": "not_installed", "ok": False, "message": msg or "nvme not found",
                "hint": "install nvme-cli on the GPU node"}
    for cat, rx, hint in _CLASSES:
        if re.search(rx, text, re.I):
            if cat == "already_connected":
                return {"category": cat, "ok": True, "message": msg, "hint": hint}
            if rc == 0 and cat not in ("no_modules",):
                continue
            return {"category": cat, "ok": False, "message": msg, "hint": hint}
    if rc in (70, 114):
        return {"category": "already_connected", "ok": True, "message": msg or "exit %d" % rc,
                "hint": "a controller for this path exists already"}
    if rc == 0:
        return {"category": "ok", "ok": True, "message": "", "hint": ""}
    return {"category": "unknown", "ok": False, "message": msg or "exit status %s" % rc,
            "hint": "see dmesg on the GPU node"}


def connect_argv(conn, opts, nvme="nvme"):
    """The ``nvme connect`` argv of a connection WITHOUT DH-HMAC-CHAP secrets.

    A secret never goes on a command line (any user can read every process's argv in
    /proc/PID/cmdline): connections with secrets use ``fabrics_connect`` instead.
    """
    if conn.get("dhchap_secret") or conn.get("dhchap_ctrl_secret"):
        raise ValueError("connect_argv: a connection with a DH-HMAC-CHAP secret connects through "
                         "/dev/nvme-fabrics (fabrics_options), never with the secret in argv")
    d = opts
    argv = [nvme, "connect", "-t", conn["transport"], "-a", conn["traddr"],
            "-s", str(conn["trsvcid"]), "-n", conn["subsysnqn"]]
    if d.get("hostnqn"):
        argv.append("--hostnqn=%s" % d["hostnqn"])
    if d.get("hostid"):
        argv.append("--hostid=%s" % d["hostid"])
    if conn.get("host_traddr"):
        argv.append("--host-traddr=%s" % conn["host_traddr"])
    for opt, key in (("--ctrl-loss-tmo", "ctrl_loss_tmo"), ("--reconnect-delay", "reconnect_delay"),
                     ("--keep-alive-tmo", "keep_alive_tmo"), ("--nr-io-queues", "nr_io_queues"),
                     ("--queue-size", "queue_size")):
        if d.get(key) is not None:
            argv.append("%s=%s" % (opt, d[key]))
    argv += ["-o", "json"]
    return argv


# The kernel's own connect interface, the one nvme-cli writes to: one line of
# "key=value,..." options; reading back gives "instance=N,cntlid=M". Used for connections with
# DH-HMAC-CHAP secrets (nvme-cli 2.3 reads a host key from its JSON config, but takes the
# controller key only from its command line): the options reach this child process on stdin,
# so the secrets are in no argv and in no file. Its messages are the kernel's strerror texts,
# which ``classify`` reads like nvme-cli's (e.g. "Operation already in progress").
FABRICS_DEV = "/dev/nvme-fabrics"
_FABRICS_WRITER = r"""
import json, os, sys
opts = sys.stdin.read().strip()
try:
    fd = os.open(sys.argv[1], os.O_RDWR)
except OSError as e:
    print("Failed to open %s: %s" % (sys.argv[1], e.strerror), file=sys.stderr)
    sys.exit(1)
try:
    os.write(fd, opts.encode())
    reply = os.read(fd, 4096).decode("ascii", "replace")
except OSError as e:
    print("could not add new controller: %s" % e.strerror, file=sys.stderr)
    sys.exit(1)
fields = dict(f.split("=", 1) for f in reply.strip().split(",") if "=" in f)
if "instance" not in fields:
    print("unexpected reply from %s: %r" % (sys.argv[1], reply[:80]), file=sys.stderr)
    sys.exit(1)
print(json.dumps({"device": "nvme%s" % fields["instance"], "cntlid": fields.get("cntlid")}))
"""
_OPT_VALUE_RE = re.compile(r"[A-Za-z0-9._:+@=/-]+")


def fabrics_options(conn, opts):
    """The /dev/nvme-fabrics option line for one connection (holds secrets: stdin only)."""
    d = opts
    fields = [("nqn", conn["subsysnqn"]), ("transport", conn["transport"]), ("traddr", conn["traddr"]),
              ("trsvcid", str(conn["trsvcid"]))]
    if conn.get("host_traddr"):
        fields.append(("host_traddr", conn["host_traddr"]))
    for key in ("hostnqn", "hostid"):
        if d.get(key):
            fields.append((key, d[key]))
    for key in ("ctrl_loss_tmo", "reconnect_delay", "keep_alive_tmo", "nr_io_queues", "queue_size"):
        if d.get(key) is not None:
            fields.append((key, str(int(d[key]))))
    for key in ("dhchap_secret", "dhchap_ctrl_secret"):
        if conn.get(key):
            fields.append((key, conn[key]))
    for key, value in fields:
        # ',' separates options and a newline ends the line: neither may hide in a value
        if not _OPT_VALUE_RE.fullmatch(str(value).lstrip("-")):
            raise ValueError("connection option %s has characters the kernel's option parser "
                             "cannot take" % key)
    return ",".join("%s=%s" % kv for kv in fields)


def fabrics_argv(python=None, dev=FABRICS_DEV):
    return [python or sys.executable or "/usr/bin/python3", "-c", _FABRICS_WRITER, dev]


def ensure_modules(transports, module_dir="/sys/module", runner=run):
    """modprobe the transport drivers that are not loaded. Returns (loaded, error)."""
    need = []
    for t in sorted(set(transports)):
        mod = TRANSPORT_MODULES.get(t)
        if mod and not os.path.isdir(os.path.join(module_dir, mod.replace("-", "_"))):
            need.append(mod)
    if not need:
        return [], None
    rc, out, err, to = runner(["modprobe", "-a"] + need, 60)
    if rc != 0:
        return [], "modprobe -a %s failed: %s" % (" ".join(need), (err or out or "timeout").strip())
    return need, None


def find_controllers(state, key, live_only=False):
    out = []
    for name, c in state["controllers"].items():
        if c.get("fabrics") and ctrl_key(c) == key and c.get("state") not in GONE_STATES:
            if not live_only or c.get("state") == "live":
                out.append(name)
    return sorted(out, key=_ctrl_sort)


_KMSG_RE = re.compile(r"^\[\s*(\d+\.\d+)\]\s*(.*)$")
_AUTH_FAILED_RE = re.compile(r"authentication failed|authentication setup failed|failed to receive success1")
_AUTH_TIMEOUT_RE = re.compile(r"\(Fabrics Cmd\) QID 0 timeout")


def uptime(path="/proc/uptime"):
    try:
        with open(path) as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def auth_evidence(dmesg_text, since):
    """``(kind, line)`` from the kernel log lines stamped after ``since`` (seconds of uptime):
    ``("failed", line)`` when DH-HMAC-CHAP was refused, ``("no_answer", line)`` when the
    target did not answer the negotiation, ``(None, "")`` otherwise. Pure (fed with ``dmesg``)."""
    found = (None, "")
    for raw in (dmesg_text or "").splitlines():
        m = _KMSG_RE.match(raw.strip())
        if not m or since is None or float(m.group(1)) < since:
            continue
        text = m.group(2)
        if _AUTH_FAILED_RE.search(text):
            return "failed", text
        if _AUTH_TIMEOUT_RE.search(text) and found[0] is None:
            found = ("no_answer", text)
    return found


def _explain_auth(res, runner, since):
    """A failed connect with DH-HMAC-CHAP secrets: let the kernel log say whether it was the
    authentication (the connect's own error is a bare EIO, or a timeout over RDMA)."""
    if since is None:
        return res
    if res["category"] == "timeout":  # seen in the lab: a wrong secret over RDMA hangs the kernel
        res["message"] = ("DH-HMAC-CHAP authentication did not complete within the connect timeout "
                          "(over RDMA the kernel waits ~370 s on a secret the target rejects)")
    rc, out, _err, _t = runner(["dmesg"], 10)
    if rc != 0:
        return res
    kind, line = auth_evidence(out, since - 1.0)
    if kind == "failed":
        res.update(category="auth_failed", message="DH-HMAC-CHAP authentication failed (kernel: %s)" % line,
                   hint="the DH-HMAC-CHAP secret does not match the target's key for this host")
    elif kind == "no_answer":
        res.update(message="%s; the target did not answer the DH-HMAC-CHAP authentication (kernel: %s)"
                   % (res["message"], line))
    return res


REKEY_WAIT = 30


def rekey(ctrl_dir, conn, attrs, runner=run, clock=uptime, wait=None, sleep=time.sleep):
    """Give a controller its new DH-HMAC-CHAP secret(s) through sysfs: a live one is
    re-authenticated in place by the kernel, one that is reconnecting uses them on its next
    attempt (no disconnect either way). Confirmed from the kernel log of this attempt ("qid 0:
    authenticated", which both log), bounded by ``wait`` seconds. Returns None or a one-line
    error (never a secret)."""
    since = clock()
    for attr in attrs:
        try:
            with open(os.path.join(ctrl_dir, attr), "w") as f:
                f.write(conn[attr])
        except OSError as exc:
            return "%s: cannot set %s: %s" % (os.path.basename(ctrl_dir), attr, exc.strerror or exc)
    if since is None:
        return None
    name = os.path.basename(ctrl_dir)
    wait = REKEY_WAIT if wait is None else wait
    deadline = time.monotonic() + wait
    refused = ""
    while True:
        rc, out, _err, _t = runner(["dmesg"], 10)
        if rc != 0:
            return None  # no kernel log to confirm from: the write itself succeeded
        for raw in out.splitlines():
            m = _KMSG_RE.match(raw.strip())
            if not m or float(m.group(1)) < since or (name + ":") not in m.group(2):
                continue
            if "qid 0: authenticated" in m.group(2):
                return None
            if _AUTH_FAILED_RE.search(m.group(2)):
                refused = m.group(2)  # may be an attempt that began before the write: keep waiting
        if time.monotonic() >= deadline:
            if refused:
                return "%s: re-authentication with the new secret failed (kernel: %s)" % (name, refused)
            return ("%s: no re-authentication seen in the kernel log within %ds after setting the "
                    "new secret; controller state: %s" % (name, wait, controller_state(ctrl_dir)))
        sleep(1)


def connect(conn, opts, paths, timeout=30, nvme="nvme", runner=run, clock=uptime):
    """Connect one path and confirm it in sysfs.

    Returns ``{"ok","category","controller","message","hint"}`` (no secrets). ``runner`` is
    ``run``-compatible (tests inject fakes); ``clock`` gives the kernel's uptime, to read the
    kernel log of this attempt when an authenticated connect fails.
    """
    secrets = [conn.get("dhchap_secret"), conn.get("dhchap_ctrl_secret")]
    key = conn_key(conn)
    before = set(find_controllers(_state_at(paths), key))
    authenticated = bool(conn.get("dhchap_secret") or conn.get("dhchap_ctrl_secret"))
    since = clock() if authenticated else None
    if authenticated:
        rc, out, err, timed_out = runner(fabrics_argv(), timeout, stdin_data=fabrics_options(conn, opts))
    else:
        rc, out, err, timed_out = runner(connect_argv(conn, opts, nvme), timeout)
    cls = classify(rc, out, err, timed_out, secrets)
    res = {"ok": False, "category": cls["category"], "controller": None,
           "message": cls["message"], "hint": cls["hint"], "label": key_label(key)}
    if not cls["ok"]:
        return _explain_auth(res, runner, since) if authenticated else res
    hinted = None
    try:
        doc = json.loads(out) if out and out.strip().startswith("{") else None
        if isinstance(doc, dict):
            hinted = doc.get("device") or doc.get("Device")
    except ValueError:
        pass
    now = _state_at(paths)
    found = find_controllers(now, key)
    if not found:
        res["category"] = "not_found"
        res["message"] = ("nvme connect reported %s but no controller for this path is in sysfs"
                          % cls["category"])
        res["hint"] = "check dmesg; the controller may have been removed right away"
        return res
    new = [n for n in found if n not in before]
    pick = hinted if hinted in found else (new[0] if new else found[0])
    res.update(ok=True, controller=pick, state=now["controllers"][pick].get("state"))
    return res


DISCONNECT_TIMEOUT = 30


def controller_state(ctrl_dir):
    """The controller's sysfs ``state`` (``gone`` when it no longer exists), never blocking
    on a missing attribute."""
    try:
        with open(os.path.join(ctrl_dir, "state")) as f:
            return f.read().strip() or "unknown"
    except OSError:
        return "gone"


def disconnect(name, nvme="nvme", runner=run, timeout=DISCONNECT_TIMEOUT, ctrl_root="/sys/class/nvme"):
    """Disconnect ONE controller by name (never by NQN: that drops every path).

    Bounded by ``timeout``: ``nvme disconnect`` writes ``delete_controller``, which waits for
    the controller's reconnect work and outstanding I/O. When it does not return in time the
    process is abandoned (it may sit in D state) and the error names the controller's state:
    ``deleting`` means the kernel has taken it and finishes it on its own (plans and health
    ignore controllers being deleted, and a path the spec still wants gets a new controller);
    ``connecting``/``resetting`` means it is still retrying a target that went away.
    """
    rc, out, err, timed_out = runner([nvme, "disconnect", "-d", name], timeout)
    state = controller_state(os.path.join(ctrl_root, name))
    if rc == 0 or (not timed_out and state == "gone"):
        return None
    if timed_out:
        if state == "gone":
            return None  # it went away just as the bound hit
        return ("nvme disconnect -d %s did not finish within %ds; controller state: %s (%s)" % (
            name, timeout, state,
            "the kernel is deleting it and will finish when its outstanding I/O ends"
            if state.startswith("deleting") else
            "it is still reconnecting to a target that no longer answers for it"))
    return "nvme disconnect -d %s failed: %s (controller state: %s)" % (
        name, (err or out or "exit %s" % rc).strip().splitlines()[0], state)


def _state_at(paths):
    return _build_state(_FsTree(), paths)


# --------------------------------------------------------------------------- files
def managed_record(desired):
    d = normalize_desired(desired)
    keys = sorted({conn_key(c) for c in d["connections"]})
    return json.dumps({"version": 1, "connections": [list(k) for k in keys]}, sort_keys=True) + "\n"


def connections_config(desired):
    """The boot-time config (holds secrets: write it 0600)."""
    return json.dumps(dict(normalize_desired(desired), version=1), sort_keys=True, indent=1) + "\n"


def unit_text(lib_dir, state_dir, python="/usr/bin/python3", retry_for=600):
    return _unit_text(
        ["Managed by nvmeofctl: connects this node's NVMe-oF paths at boot and retries",
         "until they are up (nvme-cli's nvmf-autoconnect is one-shot, nvme-cli #2800)."],
        "nvmeofctl: connect NVMe-oF subsystems (with retry)",
        "%s %s/%s nvme-host connect-all %s/%s --retry-for %d" % (python, lib_dir, BOOT_NAME, state_dir,
                                                                 CONNECTIONS_FILE, retry_for),
        after="network-online.target nvmeofctl-rdma.service", wants="network-online.target",
        timeout=retry_for + 300)


# --------------------------------------------------------------------------- sanitised output
def public_controllers(state, managed_keys=()):
    """Controllers for results and reports: no secrets, no internal fields."""
    keys = {tuple(k) for k in managed_keys}
    out = []
    for name in sorted(state.get("controllers", {}), key=_ctrl_sort):
        c = state["controllers"][name]
        if not c.get("fabrics"):
            continue
        out.append({
            "name": name,
            "subsysnqn": c.get("subsysnqn"),
            "transport": c.get("transport"),
            "address": dict(c.get("address") or {}),
            "state": c.get("state"),
            "managed": ctrl_key(c) in keys,
            "dhchap": bool(c.get("dhchap_secret_set")),
            "namespaces": [{k: ns.get(k) for k in ("name", "block", "nsid", "uuid", "nguid", "ana_state")}
                           for ns in c.get("namespaces", [])],
        })
    return out


def render(state_lines):
    return "\n".join(state_lines) + "\n"


def describe_observed(observed, desired, paths_etc="/etc/nvme"):
    """Text for diff['before'] (no secrets)."""
    d = normalize_desired(desired)
    lines = ["hostnqn: %s" % (observed.get("hostnqn") or "(absent)"),
             "hostid: %s" % (observed.get("hostid") or "(absent)"), "connections:"]
    managed = {tuple(k) for k in observed.get("managed", [])} | {conn_key(c) for c in d["connections"]}
    for c in sorted(observed.get("controllers", {}).values(), key=lambda c: _ctrl_sort(c["name"])):
        if not c.get("fabrics") or ctrl_key(c) not in managed:
            continue
        lines.append("  - %s %s state=%s %s" % (key_label(ctrl_key(c)), c["name"], c.get("state"), _policy_text(
            c.get("ctrl_loss_tmo"), c.get("reconnect_delay"), c.get("kato"), c.get("dhchap_secret_set"),
            c.get("hostnqn"))))
    lines.append("iopolicy:")
    for nqn in sorted({conn_key(c)[0] for c in d["connections"]}):
        s = observed.get("subsystems", {}).get(nqn)
        lines.append("  %s: %s" % (nqn, s.get("iopolicy") if s else "(not connected)"))
    return render(lines)


def describe_desired(desired):
    d = normalize_desired(desired)
    lines = ["hostnqn: %s" % d["hostnqn"], "hostid: %s" % d["hostid"], "connections:"]
    for c in sorted(d["connections"], key=conn_key):
        lines.append("  - %s state=live %s" % (key_label(conn_key(c)), _policy_text(
            expected_ctrl_loss_tmo(d["ctrl_loss_tmo"], d["reconnect_delay"]), d["reconnect_delay"],
            d["keep_alive_tmo"], bool(c.get("dhchap_secret")), d["hostnqn"])))
    lines.append("iopolicy:")
    for nqn in sorted({conn_key(c)[0] for c in d["connections"]}):
        lines.append("  %s: %s" % (nqn, d["iopolicy"] or "(unchanged)"))
    return render(lines)


def _policy_text(tmo, delay, kato, dhchap, hostnqn):
    return "ctrl_loss_tmo=%s reconnect_delay=%s kato=%s dhchap=%s hostnqn=%s" % (
        _tmo(tmo) if tmo is not None else "?", delay, kato, "yes" if dhchap else "no", hostnqn)


# --------------------------------------------------------------------------- boot-time runner
def set_iopolicy(paths, subsys_name, value):
    path = os.path.join(paths["subsys"], subsys_name, "iopolicy")
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        return "cannot set %s to %s: %s" % (path, value, exc.strerror or exc)
    return None


def connect_all(config_path, paths=None, retry_for=600, log=None, runner=run, sleep=time.sleep,
                clock=time.monotonic, nvme="nvme"):
    """Boot-time: connect every missing path, retry failures with backoff for ``retry_for`` s.
    Returns the exit status (0: all connected)."""
    log = log or (lambda m: print(m, flush=True))  # pylint: disable=ansible-bad-function  # boot-time program, not module code
    paths = paths or paths_for()
    with open(config_path) as f:
        d = normalize_desired(json.load(f))
    secrets = _secrets_of(d)
    start = clock()
    delay = 5
    attempt = 0
    while True:
        attempt += 1
        state = _state_at(paths)
        missing = [c for c in d["connections"] if not find_controllers(state, conn_key(c))]
        if missing:
            _loaded, err = ensure_modules({c["transport"] for c in missing}, paths["module"], runner)
            if err:
                log(redact(err, secrets))
        for c in missing:
            res = connect(c, d, paths, d["connect_timeout"], nvme, runner)
            if res["ok"]:
                log("connected %s as %s" % (res["label"], res["controller"]))
            else:
                log(redact("attempt %d: %s failed (%s): %s" % (
                    attempt, res["label"], res["category"], res["message"]), secrets))
                if res["category"] == "timeout":
                    break  # the kernel serializes connects: later ones would block too
        state = _state_at(paths)
        missing = [c for c in d["connections"] if not find_controllers(state, conn_key(c))]
        if d.get("iopolicy"):
            for nqn in sorted({c["subsysnqn"] for c in d["connections"]}):
                s = state["subsystems"].get(nqn)
                if s and s.get("iopolicy") != d["iopolicy"]:
                    err = set_iopolicy(paths, s["name"], d["iopolicy"])
                    if err:
                        log(err)
        if not missing:
            log("all %d NVMe-oF paths connected" % len(d["connections"]))
            return 0
        if clock() - start + delay > retry_for:
            log("giving up after %d attempts: %s still missing" % (
                attempt, ", ".join(key_label(conn_key(c)) for c in missing)))
            return 1
        sleep(delay)
        delay = min(delay * 2, 60)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) >= 2 and argv[0] == "connect-all":
        retry_for = 600
        if "--retry-for" in argv:
            retry_for = int(argv[argv.index("--retry-for") + 1])
        return connect_all(argv[1], retry_for=retry_for)
    if argv and argv[0] == "dump":
        print(json.dumps(read_state(), indent=1, sort_keys=True))  # pylint: disable=ansible-bad-function  # boot-time program, not module code
        return 0
    usage = "usage: %s nvme-host connect-all CONFIG.json [--retry-for SECONDS] | dump\n" % BOOT_NAME
    if argv and argv[0] in ("-h", "--help"):
        sys.stdout.write(usage)
        return 0
    sys.stderr.write(usage)
    return 2
