# -*- coding: utf-8 -*-
"""NVMe host: constants, paths and the observed state (sysfs read directly or parsed from a dump).

Part of ``nvme_host`` (module_utils/nvme_host.py re-exports every name; see its docstring).
Stdlib only; DH-HMAC-CHAP secrets never enter a returned structure, a message or a log line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re


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
