"""nvmet (NVMe-oF target) configfs: read, diff and reconcile in place.

Stdlib only, no Ansible; shared pieces come from sibling module_utils by relative import
(fileio, change, persist), so that:
  * the nvmeofctl package imports it as part of the module_utils package for its pure planner
    (``nvmeofctl.resources.load_module_utils``);
  * the boot-time restore program is built from it (bootapp.py: ``nvmeofctl-boot.pyz nvmet
    --config /etc/nvmeofctl/nvmet.json``).

Data shapes (plain JSON-able data; port ids and nsids are strings, like configfs names):

observed (``read_tree`` / ``parse_dump``)::

    {"hosts": {hostnqn: {"dhchap_key_set", "dhchap_key_hash", "dhchap_ctrl_key_set",
                         "dhchap_ctrl_key_hash", "dhchap_hash", "dhchap_dhgroup"}},
     "subsystems": {nqn: {"allow_any_host", "serial", "model", "allowed_hosts": [..],
                          "namespaces": {nsid: {"device_path", "device_uuid", "device_nguid",
                                                "enable", "buffered_io"}}}},
     "ports": {id: {"trtype", "adrfam", "traddr", "trsvcid", "subsystems": [..]}}}

  plus, when the caller probed them, ``"files": {path: size | None | "symlink" | "not-regular"}``
  for file-backed namespaces with ``create_file`` (``probe_files``, never following a symlink).
  Secrets appear only as sha256 hex digests.

managed (nvmet-managed.json, ``load_managed``)::

    {"hosts": [..], "subsystems": [..], "ports": [..], "files": [backing files nvmeofctl created]}

Every configfs path goes through ``ConfigFS``, which refuses names that are not one path
component and any path that resolves outside the configfs root (spec strings are hostile).

desired (``normalize``): the same keys, built from the module options; hosts carry the clear
keys (``dhchap_key``, ``dhchap_ctrl_key``) because ``apply`` must write them. Use
``sanitize`` before showing a desired state to anyone.

Kernel rules honoured by ``apply`` (see FACTS.md): ``attr_allow_any_host=0``; namespace
``device_*`` writable only while ``enable=0``; port ``addr_*`` writable only while no subsystem is
linked; subsystem serial/model fixed once a host identified it; configfs symlinks need absolute
targets; rmdir needs the children (namespaces, links) gone first.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import ipaddress
import json
import os
import re
import shlex
import stat
import subprocess
import time

from .change import change as _new_change, public as public_change
from .fileio import makedirs_private
from .persist import BOOT_NAME, UNIT_DIR, unit_text
CONFIGFS_ROOT = "/sys/kernel/config/nvmet"
SYS_MODULE_DIR = "/sys/module"
STATE_DIR = "/etc/nvmeofctl"
LIB_DIR = "/usr/local/lib/nvmeofctl"
CONFIG_NAME = "nvmet.json"
MANAGED_NAME = "nvmet-managed.json"
RESTORE_NAME = "nvmet.py"  # the copied restore program of earlier versions (now BOOT_NAME)
UNIT_NAME = "nvmeofctl-nvmet.service"

DHCHAP_HASH = "hmac(sha256)"
DHCHAP_DHGROUP = "ffdhe2048"
SECRET = "<secret>"
SECRET_CHANGED = "<changed>"
DEFAULT_MODEL = "nvmeofctl"

# Order of creation; deletions run first, in the reverse order.
KINDS = ("host", "subsystem", "file", "namespace", "allowed_host", "port", "port_link")
# errno values that mean "the fabric address is not there yet": retried while linking ports.
RETRY_ERRNOS = (errno.EADDRNOTAVAIL, errno.ENODEV)

# Every pattern is applied with ``fullmatch`` (``$`` would accept a trailing newline).
# An NQN here: "nqn." then printable ASCII without '/' or spaces, 223 bytes at most. Looser than
# module_utils/validators.py (which the module and the spec apply first; this file cannot import
# it), never looser about what could leave the configfs root: every NQN validators accepts matches.
_NQN_RE = re.compile(r"nqn\.[\x21-\x2e\x30-\x7e]{1,219}")
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX32_RE = re.compile(r"[0-9a-f]{32}")
_PORTNUM_RE = re.compile(r"[0-9]{1,5}")
# The largest backing file nvmeofctl creates (validators.MAX_BACKING_SIZE: 1 PiB).
MAX_BACKING_SIZE = 1 << 50


class NvmetError(Exception):
    """An expected failure; the message never contains secret values."""

    def __init__(self, message, done=None):
        super().__init__(message)
        self.done = list(done or [])


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def secret_hash(value):
    """sha256 hex digest of a DH-HMAC-CHAP key as read from configfs or a dump, or None.

    Accepts clear text (configfs, old dumps) or ``sha256:<hex>`` (``DUMP_COMMAND`` output).
    """
    if value is None:
        return None
    value = value.rstrip()
    if not value:
        return None
    if value.startswith("sha256:"):
        return value[len("sha256:"):]
    return hashlib.sha256(value.encode()).hexdigest()


def _bool(value):
    if value is None:
        return None
    value = value.strip()
    if value in ("1", "Y", "y", "yes", "true"):
        return True
    if value in ("0", "N", "n", "no", "false"):
        return False
    return None


def _str(value):
    if value is None:
        return None
    value = value.rstrip()
    return value or None


def _norm_uuid(value):
    if value is None:
        return None
    v = str(value).strip().lower()
    if _HEX32_RE.fullmatch(v):
        v = "%s-%s-%s-%s-%s" % (v[:8], v[8:12], v[12:16], v[16:20], v[20:])
    if not _UUID_RE.fullmatch(v):
        raise ValueError("not a UUID: %r" % (value,))
    return v


def _norm_nguid(value):
    if value is None:
        return None
    v = re.sub(r"[-:]", "", str(value).strip().lower())
    if not _HEX32_RE.fullmatch(v):
        raise ValueError("not an NGUID (32 hex digits): %r" % (value,))
    # the kernel shows it as %pUb: 8-4-4-4-12
    return "%s-%s-%s-%s-%s" % (v[:8], v[8:12], v[12:16], v[16:20], v[20:])


def empty_tree():
    return {"hosts": {}, "subsystems": {}, "ports": {}}


def _host_record(key, ctrl_key, hash_name, dhgroup):
    kh = secret_hash(key)
    ch = secret_hash(ctrl_key)
    return {
        "dhchap_key_set": kh is not None,
        "dhchap_key_hash": kh,
        "dhchap_ctrl_key_set": ch is not None,
        "dhchap_ctrl_key_hash": ch,
        "dhchap_hash": _str(hash_name),
        "dhchap_dhgroup": _str(dhgroup),
    }


def _subsys_record():
    return {"allow_any_host": None, "serial": None, "model": None, "allowed_hosts": [],
            "namespaces": {}}


def _ns_record():
    return {"device_path": None, "device_uuid": None, "device_nguid": None, "enable": None,
            "buffered_io": None}


def _port_record():
    return {"trtype": None, "adrfam": None, "traddr": None, "trsvcid": None, "subsystems": []}


_HOST_ATTRS = ("dhchap_key", "dhchap_ctrl_key", "dhchap_hash", "dhchap_dhgroup")
_SUBSYS_ATTRS = {"attr_allow_any_host": "allow_any_host", "attr_serial": "serial",
                 "attr_model": "model"}
_NS_ATTRS = ("device_path", "device_uuid", "device_nguid", "enable", "buffered_io")
_PORT_ATTRS = {"addr_trtype": "trtype", "addr_adrfam": "adrfam", "addr_traddr": "traddr",
               "addr_trsvcid": "trsvcid"}


def _set_subsys_attr(rec, name, raw):
    if name == "allow_any_host":
        rec[name] = _bool(raw)
    else:
        rec[name] = _str(raw)


def _set_ns_attr(rec, name, raw):
    if name in ("enable", "buffered_io"):
        rec[name] = _bool(raw)
    elif name in ("device_uuid", "device_nguid"):
        rec[name] = _str(raw.lower()) if raw is not None else None
    else:
        rec[name] = _str(raw)


# --------------------------------------------------------------------------------------------
# reading: configfs directly, or a one-SSH-round-trip dump
# --------------------------------------------------------------------------------------------


def _read(path):
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None  # write-only (revalidate_size), EINVAL, vanished: skip


def _ls(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def read_tree(root=CONFIGFS_ROOT):
    """Observed nvmet state read from configfs (or a fake tree of plain files and symlinks)."""
    tree = empty_tree()
    if not os.path.isdir(root):
        return tree
    hosts_dir = os.path.join(root, "hosts")
    for nqn in _ls(hosts_dir):
        d = os.path.join(hosts_dir, nqn)
        if not os.path.isdir(d) or os.path.islink(d):
            continue
        vals = {a: _read(os.path.join(d, a)) for a in _HOST_ATTRS}
        tree["hosts"][nqn] = _host_record(vals["dhchap_key"], vals["dhchap_ctrl_key"],
                                          vals["dhchap_hash"], vals["dhchap_dhgroup"])
    subs_dir = os.path.join(root, "subsystems")
    for nqn in _ls(subs_dir):
        d = os.path.join(subs_dir, nqn)
        if not os.path.isdir(d) or os.path.islink(d):
            continue
        rec = _subsys_record()
        for fname, name in _SUBSYS_ATTRS.items():
            raw = _read(os.path.join(d, fname))
            if raw is not None:
                _set_subsys_attr(rec, name, raw)
        rec["allowed_hosts"] = _ls(os.path.join(d, "allowed_hosts"))
        ns_dir = os.path.join(d, "namespaces")
        for nsid in _ls(ns_dir):
            nd = os.path.join(ns_dir, nsid)
            if not os.path.isdir(nd):
                continue
            ns = _ns_record()
            for a in _NS_ATTRS:
                raw = _read(os.path.join(nd, a))
                if raw is not None:
                    _set_ns_attr(ns, a, raw)
            rec["namespaces"][nsid] = ns
        tree["subsystems"][nqn] = rec
    ports_dir = os.path.join(root, "ports")
    for pid in _ls(ports_dir):
        d = os.path.join(ports_dir, pid)
        if not os.path.isdir(d):
            continue
        rec = _port_record()
        for fname, name in _PORT_ATTRS.items():
            rec[name] = _str(_read(os.path.join(d, fname)))
        rec["subsystems"] = _ls(os.path.join(d, "subsystems"))
        tree["ports"][pid] = rec
    return tree


def dump_command(root=CONFIGFS_ROOT):
    """A read-only shell one-liner printing what ``parse_dump`` needs, in one round trip.

    Modelled on the ``k612-nvmet-configfs-attrs.txt`` capture (``./path=value``), plus
    ``./dir/`` lines for objects and ``./path -> target`` lines for symlinks. Only the
    attributes nvmeofctl compares are read, with shell builtins (no fork per file: a slow VM
    pays for every process), and DH-HMAC-CHAP keys
    are hashed on the host (``sha256:<hex>``) so they never cross the wire in clear.
    """
    return (
        "cd %s 2>/dev/null || exit 0; "
        "find . -mindepth 2 \\( -type l -printf '%%p -> %%l\\n' \\) -o \\( -type d -printf '%%p/\\n' \\) "
        "-o \\( -type f \\( -name 'addr_*' "
        "-o -name attr_allow_any_host -o -name attr_serial -o -name attr_model "
        "-o -name 'device_*' -o -name enable -o -name buffered_io -o -name 'dhchap_*' \\) -print \\) "
        "| LC_ALL=C sort | while IFS= read -r f; do "
        "case $f in *' -> '*|*/) printf '%%s\\n' \"$f\"; continue;; esac; "
        "[ -r \"$f\" ] || continue; v=; IFS= read -r v < \"$f\" 2>/dev/null; "
        "case $f in */dhchap_key|*/dhchap_ctrl_key) [ -n \"$v\" ] && "
        "v=sha256:$(printf %%s \"$v\" | sha256sum | cut -d' ' -f1);; esac; "
        "printf '%%s=%%s\\n' \"$f\" \"$v\"; done"
    ) % shlex.quote(root)


DUMP_COMMAND = dump_command()


def _unreadable(value):
    # the k612 capture used `cat $f 2>&1`: "cat: './x/revalidate_size': Permission denied"
    return value.startswith("cat: ")


def parse_dump(text):
    """Turn ``DUMP_COMMAND`` output (or the older ``./path=value`` captures) into observed state."""
    tree = empty_tree()
    host_raw = {}
    for line in text.splitlines():
        if not line.startswith("./"):
            continue  # comments, continuation lines of multi-line values
        link = False
        value = None
        head, sep, tail = line.partition(" -> ")
        if sep and "=" not in head:
            path, link = head, True
        elif line.endswith("/") and "=" not in line:
            path = line.rstrip("/")
        elif "=" in line:
            path, value = line.split("=", 1)
            if _unreadable(value):
                continue
        else:
            continue
        parts = path[2:].split("/")
        if len(parts) < 2:
            continue
        top, name = parts[0], parts[1]
        if top == "hosts":
            raw = host_raw.setdefault(name, {})
            if len(parts) == 3 and value is not None and parts[2] in _HOST_ATTRS:
                raw[parts[2]] = value
        elif top == "subsystems":
            rec = tree["subsystems"].setdefault(name, _subsys_record())
            if len(parts) == 3 and value is not None and parts[2] in _SUBSYS_ATTRS:
                _set_subsys_attr(rec, _SUBSYS_ATTRS[parts[2]], value)
            elif len(parts) >= 4 and parts[2] == "namespaces":
                ns = rec["namespaces"].setdefault(parts[3], _ns_record())
                if len(parts) == 5 and value is not None and parts[4] in _NS_ATTRS:
                    _set_ns_attr(ns, parts[4], value)
            elif len(parts) == 4 and parts[2] == "allowed_hosts" and link:
                if parts[3] not in rec["allowed_hosts"]:
                    rec["allowed_hosts"].append(parts[3])
        elif top == "ports":
            rec = tree["ports"].setdefault(name, _port_record())
            if len(parts) == 3 and value is not None and parts[2] in _PORT_ATTRS:
                rec[_PORT_ATTRS[parts[2]]] = _str(value)
            elif len(parts) == 4 and parts[2] == "subsystems" and link:
                if parts[3] not in rec["subsystems"]:
                    rec["subsystems"].append(parts[3])
    for nqn, raw in host_raw.items():
        tree["hosts"][nqn] = _host_record(raw.get("dhchap_key"), raw.get("dhchap_ctrl_key"),
                                          raw.get("dhchap_hash"), raw.get("dhchap_dhgroup"))
    for rec in tree["subsystems"].values():
        rec["allowed_hosts"].sort()
    for rec in tree["ports"].values():
        rec["subsystems"].sort()
    return _sorted_tree(tree)


def _sorted_tree(tree):
    out = empty_tree()
    for k in ("hosts", "subsystems", "ports"):
        out[k] = {n: tree[k][n] for n in sorted(tree[k], key=_sort_key)}
    for rec in out["subsystems"].values():
        rec["namespaces"] = {n: rec["namespaces"][n] for n in sorted(rec["namespaces"], key=_sort_key)}
    for k, v in tree.items():
        if k not in out:
            out[k] = v
    return out


def _sort_key(name):
    return (0, int(name), "") if str(name).isdigit() else (1, 0, str(name))


def probe_file(path):
    """size | None (missing) | "symlink" | "not-regular"; the last component is never followed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return "not-regular"  # a parent is not a directory: nothing we could create there
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    return st.st_size if stat.S_ISREG(st.st_mode) else "not-regular"


def probe_files(desired, extra=()):
    """{path: probe_file(path)} for namespaces with ``create_file`` (and the ``extra`` paths:
    the files nvmet-managed.json records, so ``managed_after`` can forget vanished ones)."""
    out = {}
    for sub in desired.get("subsystems", {}).values():
        for ns in sub["namespaces"].values():
            if ns.get("create_file"):
                out[ns["device_path"]] = probe_file(ns["device_path"])
    for path in extra:
        if path not in out:
            out[path] = probe_file(path)
    return out


def backing_file_problems(desired, observed, managed=None):
    """Refusals for ``create_file`` namespaces whose path exists but is not nvmeofctl's.

    nvmeofctl never grows or exports a regular file it did not create. An existing path is
    accepted only when nvmet-managed.json records it in ``files``, or (files made by versions
    before that list existed) when it is the current device_path of a namespace of a subsystem
    nvmeofctl manages. Symlinks and anything but a regular file are always refused.
    ``observed["files"]`` comes from ``probe_files``. Pure; returns one message per problem.
    """
    managed = managed or {}
    files = observed.get("files") or {}
    recorded = set(managed.get("files") or ())
    adopted = set()
    for nqn in managed.get("subsystems") or ():
        for ns in observed.get("subsystems", {}).get(nqn, {}).get("namespaces", {}).values():
            if ns.get("device_path"):
                adopted.add(ns["device_path"])
    out = []
    for nqn, sub in desired.get("subsystems", {}).items():
        for nsid, ns in sub["namespaces"].items():
            path = ns["device_path"]
            if not ns.get("create_file") or path not in files or files[path] is None:
                continue
            have, where = files[path], ns_label(nqn, nsid, ns)
            if have == "symlink":
                out.append("%s: %s is a symbolic link; a backing file must be a regular file "
                           "(refusing to follow it)" % (where, path))
            elif have == "not-regular":
                out.append("%s: %s exists and is not a regular file (create_file makes a regular "
                           "file; use a device backing for a block device)" % (where, path))
            elif path not in recorded and path not in adopted:
                out.append("%s: %s exists and was not created by nvmeofctl; refusing to grow or "
                           "export it (move it away, or pick another path)" % (where, path))
    return out


def missing_modules(desired, sys_module_dir=SYS_MODULE_DIR):
    """Kernel modules the desired state needs that /sys/module does not list yet."""
    need = ["nvmet"]
    trtypes = {p["trtype"] for p in desired.get("ports", {}).values()}
    if "rdma" in trtypes:
        need.append("nvmet_rdma")
    if "tcp" in trtypes:
        need.append("nvmet_tcp")
    return [m for m in need if not os.path.isdir(os.path.join(sys_module_dir, m))]


# --------------------------------------------------------------------------------------------
# desired state
# --------------------------------------------------------------------------------------------


def _check_nqn(value, where):
    """``value`` if it is an NQN that is safe as one configfs directory name, else ValueError."""
    if not isinstance(value, str) or not _NQN_RE.fullmatch(value):
        raise ValueError("%s: not an NQN (nqn.yyyy-mm.reverse.domain:name; printable ASCII without "
                         "'/' or spaces): %r" % (where, value))
    return value


def _check_device_path(value, where):
    """An absolute, normalised path of printable characters (the module also applies the
    spec's backing-path rules and allowed prefixes, which this file cannot import)."""
    if (not isinstance(value, str) or not value.startswith("/") or value == "/"
            or os.path.normpath(value) != value or value.startswith("//")
            or not all(0x21 <= ord(c) <= 0x7e for c in value)):
        raise ValueError("%s: an absolute, normalised path without spaces or control characters "
                         "is required: %r" % (where, value))
    return value


def ns_label(nqn, nsid, ns=None):
    """How messages name a namespace: subsystem, nsid and the spec's namespace name."""
    name = (ns or {}).get("name")
    return "subsystem %s namespace %s%s" % (nqn, nsid, " (%s)" % name if name else "")


def normalize(spec):
    """Validate module-option-shaped input and return the keyed desired state.

    Raises ValueError with a one-line message naming the offending item (never a secret).
    """
    desired = {"hosts": {}, "subsystems": {}, "ports": {}}
    for i, h in enumerate(spec.get("hosts") or []):
        where = "hosts[%d]" % i
        nqn = _check_nqn(h.get("nqn"), where + ".nqn")
        if nqn in desired["hosts"]:
            raise ValueError("%s.nqn: duplicate host %s" % (where, nqn))
        key = (h.get("dhchap_key") or "").strip() or None
        ctrl = (h.get("dhchap_ctrl_key") or "").strip() or None
        for name, val in (("dhchap_key", key), ("dhchap_ctrl_key", ctrl)):
            if val is not None and not val.startswith("DHHC-1:"):
                raise ValueError("%s.%s (host %s): not a DH-HMAC-CHAP secret (must start with "
                                 "'DHHC-1:'; make one with nvme gen-dhchap-key)" % (where, name, nqn))
        if ctrl and not key:
            raise ValueError("%s.dhchap_ctrl_key (host %s): needs dhchap_key too "
                             "(bidirectional authentication)" % (where, nqn))
        desired["hosts"][nqn] = {"dhchap_key": key, "dhchap_ctrl_key": ctrl, "reauth": bool(h.get("reauth"))}

    for i, s in enumerate(spec.get("subsystems") or []):
        where = "subsystems[%d]" % i
        nqn = _check_nqn(s.get("nqn"), where + ".nqn")
        if nqn in desired["subsystems"]:
            raise ValueError("%s.nqn: duplicate subsystem %s" % (where, nqn))
        serial = s.get("serial")
        serial = str(serial).strip() if serial not in (None, "") else None
        if serial is not None and (len(serial) > 20 or not all(0x20 <= ord(c) <= 0x7e for c in serial)):
            raise ValueError("%s.serial: at most 20 printable ASCII characters: %r" % (where, serial))
        model = s.get("model")
        model = DEFAULT_MODEL if model is None else str(model).strip()
        if not model or len(model) > 40 or not all(0x20 <= ord(c) <= 0x7e for c in model):
            raise ValueError("%s.model: 1 to 40 printable ASCII characters: %r" % (where, model))
        allowed = sorted(set(s.get("allowed_hosts") or []))
        for hn in allowed:
            if not isinstance(hn, str) or hn not in desired["hosts"]:
                raise ValueError("%s.allowed_hosts: %s is not in hosts (list it there, with its "
                                 "key if any)" % (where, hn))
        nss = {}
        for j, n in enumerate(s.get("namespaces") or []):
            nw = "%s.namespaces[%d]" % (where, j)
            try:
                nsid = int(n.get("nsid"))
            except (TypeError, ValueError):
                raise ValueError("%s.nsid: an integer >= 1 is required" % nw)
            if nsid < 1:
                raise ValueError("%s.nsid: an integer >= 1 is required" % nw)
            if str(nsid) in nss:
                raise ValueError("%s.nsid: duplicate nsid %d in %s" % (nw, nsid, nqn))
            path = _check_device_path(n.get("device_path"), nw + ".device_path")
            try:
                uuid = _norm_uuid(n.get("uuid"))
                nguid = _norm_nguid(n.get("nguid"))
            except ValueError as e:
                raise ValueError("%s: %s" % (nw, e))
            if nguid == "00000000-0000-0000-0000-000000000000":
                nguid = None  # zero means "not set" to the kernel
            size = n.get("size")
            try:
                size = int(size) if size not in (None, "") else None
            except (TypeError, ValueError):
                raise ValueError("%s.size: not a size in bytes" % nw)
            create_file = bool(n.get("create_file"))
            if create_file:
                if not size or size < 0 or size % 512:
                    raise ValueError("%s.size: create_file needs a size in bytes, a positive "
                                     "multiple of 512" % nw)
                if size > MAX_BACKING_SIZE:
                    raise ValueError("%s.size: at most 1 PiB (%d bytes)" % (nw, MAX_BACKING_SIZE))
                if path.startswith("/dev/"):
                    raise ValueError("%s.device_path: create_file makes a regular file; %s is "
                                     "under /dev" % (nw, path))
            rec = {"device_path": path, "device_uuid": uuid, "device_nguid": nguid,
                   "size": size, "create_file": create_file}
            for opt in ("name", "signature"):  # for messages and the device checks only
                if n.get(opt) not in (None, ""):
                    rec[opt] = str(n[opt])
            nss[str(nsid)] = rec
        desired["subsystems"][nqn] = {"serial": serial, "model": model, "allowed_hosts": allowed,
                                      "namespaces": {k: nss[k] for k in sorted(nss, key=int)}}

    addrs = {}
    for i, p in enumerate(spec.get("ports") or []):
        where = "ports[%d]" % i
        try:
            pid = int(p.get("id"))
        except (TypeError, ValueError):
            raise ValueError("%s.id: an integer port id is required" % where)
        if not 0 < pid < 65535:
            raise ValueError("%s.id: 1..65534 required, got %d" % (where, pid))
        if str(pid) in desired["ports"]:
            raise ValueError("%s.id: duplicate port id %d" % (where, pid))
        trtype = (p.get("trtype") or "").strip()
        if trtype not in ("rdma", "tcp"):
            raise ValueError("%s.trtype: rdma or tcp, got %r" % (where, trtype))
        adrfam = (p.get("adrfam") or "ipv4").strip()
        if adrfam not in ("ipv4", "ipv6"):
            raise ValueError("%s.adrfam: ipv4 or ipv6, got %r" % (where, adrfam))
        traddr = p.get("traddr") or ""
        try:
            ip = ipaddress.ip_address(traddr) if isinstance(traddr, str) and "%" not in traddr else None
        except ValueError:
            ip = None
        if ip is None:
            raise ValueError("%s.traddr: the fabric IP address is required, got %r" % (where, traddr))
        trsvcid = str(p.get("trsvcid") or "4420").strip()
        if not _PORTNUM_RE.fullmatch(trsvcid) or not 0 < int(trsvcid) < 65536:
            raise ValueError("%s.trsvcid: a TCP/UDP port number, got %r" % (where, trsvcid))
        addr = (trtype, traddr, trsvcid)
        if addr in addrs:
            raise ValueError("%s: same %s %s:%s as port %s" % (where, trtype, traddr, trsvcid, addrs[addr]))
        addrs[addr] = pid
        subs = sorted(set(p.get("subsystems") or []))
        for sn in subs:
            if not isinstance(sn, str) or sn not in desired["subsystems"]:
                raise ValueError("%s.subsystems: %s is not in subsystems" % (where, sn))
        desired["ports"][str(pid)] = {"trtype": trtype, "adrfam": adrfam, "traddr": traddr,
                                      "trsvcid": trsvcid, "subsystems": subs}
    desired["ports"] = {k: desired["ports"][k] for k in sorted(desired["ports"], key=int)}
    return desired


def sanitize(desired):
    """The desired state with keys replaced by their sha256 digests (observed-shaped hosts)."""
    out = copy.deepcopy(desired)
    out["hosts"] = {n: _host_record(h.get("dhchap_key"), h.get("dhchap_ctrl_key"),
                                    DHCHAP_HASH if h.get("dhchap_key") else None,
                                    DHCHAP_DHGROUP if h.get("dhchap_key") else None)
                    for n, h in desired.get("hosts", {}).items()}
    return out


# --------------------------------------------------------------------------------------------
# diff
# --------------------------------------------------------------------------------------------


def _change(kind, key, action, obj, detail, reason, disruptive=False, attrs=None, **extra):
    if attrs:
        extra["attrs"] = list(attrs)
    return _new_change(obj, action, detail, reason, disruptive, kind=kind, key=list(key), **extra)


def _fmt_size(n):
    for unit, div in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return "%.1f %s" % (n / div, unit)
    return "%d B" % n


def diff(desired, observed, managed=None):
    """Ordered changes turning ``observed`` into ``desired``.

    Objects that ``desired`` does not list are deleted only when ``managed`` (the content of
    nvmet-managed.json: {"hosts": [..], "subsystems": [..], "ports": [..]}) records them as
    nvmeofctl's; anything else is foreign and left alone. Within a desired subsystem nvmeofctl
    owns everything (namespaces, allowed hosts); on a desired port it owns the links to
    nvmeofctl subsystems, and keeps links to foreign subsystems.
    """
    managed = managed or {}
    m = {k: set(managed.get(k) or ()) for k in ("hosts", "subsystems", "ports")}
    obs_hosts = observed.get("hosts", {})
    obs_subs = observed.get("subsystems", {})
    obs_ports = observed.get("ports", {})
    files = observed.get("files")
    want_hosts = desired.get("hosts", {})
    want_subs = desired.get("subsystems", {})
    want_ports = desired.get("ports", {})
    fwd = {k: [] for k in KINDS}
    dels = {k: [] for k in KINDS}

    del_subs = [n for n in obs_subs if n not in want_subs and n in m["subsystems"]]
    del_ports = [p for p in obs_ports if p not in want_ports and p in m["ports"]]

    # ---- hosts
    for nqn, h in want_hosts.items():
        o = obs_hosts.get(nqn)
        key, ctrl = h.get("dhchap_key"), h.get("dhchap_ctrl_key")
        auth = ("DH-HMAC-CHAP %s, %s%s" % (DHCHAP_HASH, DHCHAP_DHGROUP,
                                           ", bidirectional" if ctrl else "")) if key else "no DH-HMAC-CHAP"
        if o is None:
            fwd["host"].append(_change("host", [nqn], "create", "host %s" % nqn,
                                       "mkdir; %s" % auth, "not in configfs"))
            continue
        attrs, notes, recreate = [], [], False
        for attr, value in (("dhchap_key", key), ("dhchap_ctrl_key", ctrl)):
            want_hash = secret_hash(value)
            if want_hash != o.get(attr + "_hash"):  # compared as hashes: values never leave the host
                attrs.append(attr)
                if want_hash is None:
                    recreate = True
                    notes.append("%s: %s -> none" % (attr, SECRET))
                else:
                    notes.append("%s: %s" % (attr, SECRET_CHANGED))
        if key:
            for attr, want in (("dhchap_hash", DHCHAP_HASH), ("dhchap_dhgroup", DHCHAP_DHGROUP)):
                if o.get(attr) != want:
                    attrs.append(attr)
                    notes.append("%s: %s -> %s" % (attr, o.get(attr), want))
        if attrs:
            keys_changed = any(a in ("dhchap_key", "dhchap_ctrl_key") for a in attrs)
            detail = "; ".join(notes)
            if recreate:
                detail += "; the kernel cannot clear a key: unlink from its subsystems, rmdir, " \
                          "mkdir, relink"
            reauth = keys_changed and not recreate and h.get("reauth")
            fwd["host"].append(_change(
                "host", [nqn], "update", "host %s" % nqn, detail,
                "its GPU node re-authenticates with the new key in this run, after this target"
                if reauth else
                "initiators still holding the old key fail to (re)authenticate"
                if keys_changed else "differs from spec",
                disruptive=keys_changed and not reauth, attrs=attrs, recreate=recreate))
    foreign_subs_keep = {n for n in obs_subs if n not in want_subs and n not in del_subs}
    for nqn in obs_hosts:
        if nqn in want_hosts or nqn not in m["hosts"]:
            continue
        users = [s for s in foreign_subs_keep if nqn in obs_subs[s].get("allowed_hosts", [])]
        if users:
            continue  # still allowed by a foreign subsystem: keep it (and keep it managed)
        dels["host"].append(_change("host", [nqn], "delete", "host %s" % nqn, "rmdir",
                                    "managed by nvmeofctl and no longer in spec"))

    # ---- subsystems
    for nqn, s in want_subs.items():
        o = obs_subs.get(nqn)
        if o is None:
            bits = ["allow_any_host=0"]
            if s.get("serial"):
                bits.append("serial=%s" % s["serial"])
            bits.append("model=%s" % s["model"])
            fwd["subsystem"].append(_change("subsystem", [nqn], "create", "subsystem %s" % nqn,
                                            "mkdir; " + ", ".join(bits), "not in configfs"))
            continue
        attrs, notes, disruptive = [], [], False
        if o.get("allow_any_host") is not False:
            attrs.append("allow_any_host")
            notes.append("allow_any_host: %s -> 0" % {True: "1", None: "?"}[o.get("allow_any_host")])
            disruptive = o.get("allow_any_host") is True
        for a in ("serial", "model"):
            if s.get(a) is not None and s[a] != o.get(a):
                attrs.append(a)
                notes.append("%s: %s -> %s" % (a, o.get(a), s[a]))
        if attrs:
            fwd["subsystem"].append(_change(
                "subsystem", [nqn], "update", "subsystem %s" % nqn, "; ".join(notes),
                "hosts not in allowed_hosts lose access" if disruptive else
                "differs from spec (the kernel refuses serial/model changes once a host has "
                "identified the subsystem)",
                disruptive=disruptive, attrs=attrs))
    for nqn in del_subs:
        o = obs_subs[nqn]
        on_ports = sorted((p for p, po in obs_ports.items() if nqn in po.get("subsystems", [])), key=_sort_key)
        bits = []
        if on_ports:
            bits.append("unlink from port(s) %s" % ", ".join(on_ports))
        if o.get("allowed_hosts"):
            bits.append("remove %d allowed host(s)" % len(o["allowed_hosts"]))
        if o.get("namespaces"):
            bits.append("remove namespace(s) %s" % ", ".join(o["namespaces"]))
        bits.append("rmdir")
        dels["subsystem"].append(_change(
            "subsystem", [nqn], "delete", "subsystem %s" % nqn, "; ".join(bits),
            "managed by nvmeofctl and no longer in spec; GPU nodes using it lose it",
            disruptive=True))

    # ---- backing files, namespaces, allowed hosts (desired subsystems only)
    for nqn, s in want_subs.items():
        o = obs_subs.get(nqn) or _subsys_record()
        for nsid, ns in s["namespaces"].items():
            path = ns["device_path"]
            if ns.get("create_file") and files is not None and path in files:
                have = files[path]
                if have is None:
                    fwd["file"].append(_change(
                        "file", [nqn, nsid, path], "create", "file %s" % path,
                        "create sparse backing file of %s (%d bytes), parent dirs as needed"
                        % (_fmt_size(ns["size"]), ns["size"]), "missing"))
                elif isinstance(have, str):  # "not-regular", "symlink"
                    raise ValueError("%s: create_file is set but %s exists and is not a regular "
                                     "file" % (ns_label(nqn, nsid, ns), path))
                elif have < ns["size"]:
                    fwd["file"].append(_change(
                        "file", [nqn, nsid, path], "update", "file %s" % path,
                        "grow %s -> %s (sparse; never shrunk); hosts see the new size after "
                        "revalidate" % (_fmt_size(have), _fmt_size(ns["size"])),
                        "smaller than spec size"))
            obj = "subsystem %s / namespace %s" % (nqn, nsid)
            on = o["namespaces"].get(nsid)
            if on is None:
                bits = ["device_path=%s" % path]
                if ns.get("device_uuid"):
                    bits.append("uuid=%s" % ns["device_uuid"])
                if ns.get("device_nguid"):
                    bits.append("nguid=%s" % ns["device_nguid"])
                fwd["namespace"].append(_change("namespace", [nqn, nsid], "create", obj,
                                                "mkdir; %s; enable" % ", ".join(bits), "not in configfs"))
                continue
            attrs, notes = [], []
            for a in ("device_path", "device_uuid", "device_nguid"):
                if ns.get(a) is not None and ns[a] != on.get(a):
                    attrs.append(a)
                    notes.append("%s: %s -> %s" % (a, on.get(a), ns[a]))
            dev_change = bool(attrs)
            if dev_change or on.get("enable") is not True:
                attrs.append("enable")
            if not attrs:
                continue
            enabled = on.get("enable") is True
            if dev_change:
                detail = "; ".join(notes) + ("; disable, write, re-enable" if enabled else "; write, enable")
            else:
                detail = "enable: 0 -> 1"
            fwd["namespace"].append(_change(
                "namespace", [nqn, nsid], "update", obj, detail,
                "hosts lose the namespace while it is disabled and then see another device"
                if dev_change and enabled else "differs from spec",
                disruptive=dev_change and enabled, attrs=attrs))
        for nsid in o["namespaces"]:
            if nsid not in s["namespaces"]:
                dels["namespace"].append(_change(
                    "namespace", [nqn, nsid], "delete", "subsystem %s / namespace %s" % (nqn, nsid),
                    "disable and rmdir (device_path %s; its data is kept)" % o["namespaces"][nsid].get("device_path"),
                    "not in spec; GPU nodes using it lose it", disruptive=True))
        for hn in s["allowed_hosts"]:
            if hn not in o["allowed_hosts"]:
                fwd["allowed_host"].append(_change(
                    "allowed_host", [nqn, hn], "create", "subsystem %s / allowed host %s" % (nqn, hn),
                    "symlink allowed_hosts/%s -> hosts/%s" % (hn, hn), "not allowed yet"))
        for hn in o["allowed_hosts"]:
            if hn not in s["allowed_hosts"]:
                dels["allowed_host"].append(_change(
                    "allowed_host", [nqn, hn], "delete", "subsystem %s / allowed host %s" % (nqn, hn),
                    "unlink allowed_hosts/%s" % hn, "not in spec; that host loses access on its next "
                    "connect", disruptive=True))

    # ---- ports and port links
    for pid, p in want_ports.items():
        o = obs_ports.get(pid)
        addr = "%s %s %s:%s" % (p["trtype"], p["adrfam"], p["traddr"], p["trsvcid"])
        if o is None:
            fwd["port"].append(_change("port", [pid], "create", "port %s" % pid,
                                       "mkdir; %s" % addr, "not in configfs"))
            links = []
        else:
            attrs, notes = [], []
            for a in ("trtype", "adrfam", "traddr", "trsvcid"):
                if p[a] != o.get(a):
                    attrs.append(a)
                    notes.append("%s: %s -> %s" % (a, o.get(a), p[a]))
            links = o.get("subsystems", [])
            if attrs:
                linked = bool(links)
                fwd["port"].append(_change(
                    "port", [pid], "update", "port %s" % pid,
                    "; ".join(notes) + ("; unlink %d subsystem(s), write, relink" % len(links)
                                        if linked else "; write"),
                    "hosts connected through this port are disconnected and must reconnect to "
                    "the new address" if linked else "differs from spec",
                    disruptive=linked, attrs=attrs))
        for sn in p["subsystems"]:
            if sn not in links:
                fwd["port_link"].append(_change(
                    "port_link", [pid, sn], "create", "port %s / subsystem %s" % (pid, sn),
                    "symlink ports/%s/subsystems/%s (enables the listener)" % (pid, sn),
                    "not exported on this port yet"))
        for sn in links:
            if sn in p["subsystems"] or sn in del_subs:
                continue
            if sn not in want_subs and sn not in m["subsystems"]:
                continue  # a foreign subsystem on our port: leave it
            dels["port_link"].append(_change(
                "port_link", [pid, sn], "delete", "port %s / subsystem %s" % (pid, sn),
                "unlink ports/%s/subsystems/%s" % (pid, sn),
                "not in spec; hosts connected through this port lose it", disruptive=True))
    for pid in del_ports:
        o = obs_ports[pid]
        links = o.get("subsystems", [])
        dels["port"].append(_change(
            "port", [pid], "delete", "port %s" % pid,
            ("unlink %d subsystem(s); " % len(links) if links else "") + "rmdir",
            "managed by nvmeofctl and no longer in spec"
            + ("; hosts connected through it are disconnected" if links else ""),
            disruptive=bool(links)))

    out = []
    for k in reversed(KINDS):
        out.extend(dels[k])
    for k in KINDS:
        out.extend(fwd[k])
    return out


def managed_after(desired, observed, changes, managed=None):
    """What nvmet-managed.json records after ``changes`` ran: desired + still-present managed.

    ``files``: the backing files nvmeofctl created (or adopted, see ``backing_file_problems``),
    kept while they exist, also once no namespace uses them (their data is kept, and a later
    spec may export them again). Without ``observed["files"]`` (the planner) the list is
    carried over unchanged.
    """
    managed = managed or {}
    deleted = {(c["kind"], c["key"][0]) for c in changes if c["action"] == "delete"}
    out = {}
    for cat, kind in (("hosts", "host"), ("subsystems", "subsystem"), ("ports", "port")):
        keep = {n for n in (managed.get(cat) or ()) if n in observed.get(cat, {}) and (kind, n) not in deleted}
        out[cat] = sorted(set(desired.get(cat, {})) | keep, key=_sort_key)
    files = observed.get("files")
    recorded = set(managed.get("files") or ())
    if files is None:
        out["files"] = sorted(recorded)
        return out
    keep = {f for f in recorded if isinstance(files.get(f), int)}
    keep |= {c["key"][2] for c in changes if c["kind"] == "file" and c["action"] == "create"}
    for sub in desired.get("subsystems", {}).values():
        for ns in sub["namespaces"].values():
            # an existing regular file on a create_file namespace got past backing_file_problems
            if ns.get("create_file") and isinstance(files.get(ns["device_path"]), int):
                keep.add(ns["device_path"])
    out["files"] = sorted(keep)
    return out


def foreign_objects(observed, desired, managed=None):
    managed = managed or {}
    out = []
    for cat, label in (("hosts", "host"), ("subsystems", "subsystem"), ("ports", "port")):
        for n in observed.get(cat, {}):
            if n not in desired.get(cat, {}) and n not in (managed.get(cat) or ()):
                out.append("%s %s" % (label, n))
    return out


# --------------------------------------------------------------------------------------------
# simulate + render (check-mode prediction, diff text)
# --------------------------------------------------------------------------------------------


def simulate(observed, desired, changes):
    """The observed state as it will be after ``changes`` (pure)."""
    st = copy.deepcopy({k: observed.get(k, {}) for k in ("hosts", "subsystems", "ports")})
    san = sanitize(desired)
    for c in changes:
        kind, key, action = c["kind"], c["key"], c["action"]
        if kind == "host":
            if action == "delete":
                st["hosts"].pop(key[0], None)
            else:
                rec = dict(san["hosts"][key[0]])
                old = st["hosts"].get(key[0])
                if not rec["dhchap_key_set"] and old:
                    rec["dhchap_hash"], rec["dhchap_dhgroup"] = old.get("dhchap_hash"), old.get("dhchap_dhgroup")
                st["hosts"][key[0]] = rec
        elif kind == "subsystem":
            if action == "delete":
                st["subsystems"].pop(key[0], None)
                for p in st["ports"].values():
                    if key[0] in p["subsystems"]:
                        p["subsystems"].remove(key[0])
            elif action == "create":
                rec = _subsys_record()
                want = desired["subsystems"][key[0]]
                rec.update(allow_any_host=False, serial=want.get("serial"), model=want.get("model"))
                st["subsystems"][key[0]] = rec
            else:
                rec = st["subsystems"][key[0]]
                want = desired["subsystems"][key[0]]
                for a in c.get("attrs", []):
                    rec[a] = False if a == "allow_any_host" else want[a]
        elif kind == "namespace":
            nss = st["subsystems"][key[0]]["namespaces"]
            if action == "delete":
                nss.pop(key[1], None)
                continue
            want = desired["subsystems"][key[0]]["namespaces"][key[1]]
            rec = nss.setdefault(key[1], _ns_record())
            for a in ("device_path", "device_uuid", "device_nguid"):
                if want.get(a) is not None:
                    rec[a] = want[a]
            rec["enable"] = True
        elif kind == "allowed_host":
            lst = st["subsystems"][key[0]]["allowed_hosts"]
            if action == "create":
                lst.append(key[1])
            elif key[1] in lst:
                lst.remove(key[1])
            lst.sort()
        elif kind == "port":
            if action == "delete":
                st["ports"].pop(key[0], None)
                continue
            rec = st["ports"].setdefault(key[0], _port_record())
            want = desired["ports"][key[0]]
            for a in ("trtype", "adrfam", "traddr", "trsvcid"):
                rec[a] = want[a]
        elif kind == "port_link":
            lst = st["ports"][key[0]]["subsystems"]
            if action == "create":
                lst.append(key[1])
            elif key[1] in lst:
                lst.remove(key[1])
            lst.sort()
    return _sorted_tree(st)


def _onoff(v):
    return {True: "1", False: "0", None: "?"}[v]


def render(state, changed_secrets=()):
    """Human-readable text of an observed-shaped state, for ``diff`` before/after. No secrets."""
    lines = []
    for nqn, h in state.get("hosts", {}).items():
        lines.append("host %s" % nqn)
        for a in ("dhchap_key", "dhchap_ctrl_key"):
            if h.get(a + "_set"):
                val = SECRET_CHANGED if (nqn, a) in changed_secrets else SECRET
            else:
                val = "none"
            lines.append("  %s: %s" % (a, val))
        if h.get("dhchap_key_set"):
            lines.append("  dhchap_hash: %s" % h.get("dhchap_hash"))
            lines.append("  dhchap_dhgroup: %s" % h.get("dhchap_dhgroup"))
    for nqn, s in state.get("subsystems", {}).items():
        lines.append("subsystem %s" % nqn)
        lines.append("  allow_any_host: %s" % _onoff(s.get("allow_any_host")))
        lines.append("  serial: %s" % s.get("serial"))
        lines.append("  model: %s" % s.get("model"))
        for hn in s.get("allowed_hosts", []):
            lines.append("  allowed_host %s" % hn)
        for nsid, ns in s.get("namespaces", {}).items():
            lines.append("  namespace %s: %s uuid=%s nguid=%s enable=%s" % (
                nsid, ns.get("device_path"), ns.get("device_uuid"), ns.get("device_nguid"),
                _onoff(ns.get("enable"))))
    for pid, p in state.get("ports", {}).items():
        lines.append("port %s: %s %s %s:%s" % (
            pid, p.get("trtype"), p.get("adrfam"), p.get("traddr"), p.get("trsvcid")))
        for sn in p.get("subsystems", []):
            lines.append("  subsystem %s" % sn)
    return "\n".join(lines) + ("\n" if lines else "")


def changed_secrets(changes):
    out = set()
    for c in changes:
        if c["kind"] == "host" and c["action"] == "update":
            for a in c.get("attrs", []):
                if a in ("dhchap_key", "dhchap_ctrl_key"):
                    out.add((c["key"][0], a))
    return out


# --------------------------------------------------------------------------------------------
# apply
# --------------------------------------------------------------------------------------------


class ConfigFS:
    """Thin I/O layer over the nvmet configfs tree, with the kernel's semantics: mkdir creates
    the attribute files and default groups, writes go to existing attributes (never create a
    file), rmdir works while they are present. Tests inject a subclass over a plain directory
    (``fs=`` of ``apply``) that emulates what the kernel does and then calls these methods.

    Names come from the spec (NQNs): every path part must be one name (not empty, '.', '..',
    no '/' or NUL), and every path used, resolved, must stay inside the resolved root
    (``NvmetError`` otherwise). mkdir, write, read, listdir and symlink targets resolve the
    whole path; unlink, rmdir, exists and the symlink itself resolve the parent directory and
    keep the last name (they act on the link, not where it points).
    """

    OUTSIDE = "refusing path outside the nvmet configfs root"

    def __init__(self, root=CONFIGFS_ROOT):
        self.root = root
        self.real_root = os.path.realpath(root)

    def _join(self, parts):
        for part in parts:
            if (not isinstance(part, str) or not part or part in (".", "..") or "/" in part
                    or "\0" in part):
                raise NvmetError("%s: %r is not a single file name (in %r)"
                                 % (self.OUTSIDE, part, "/".join(str(p) for p in parts)))
        return os.path.join(self.root, *parts)

    def _inside(self, resolved, shown):
        if resolved != self.real_root and not resolved.startswith(self.real_root.rstrip("/") + "/"):
            raise NvmetError("%s: %s resolves to %s, not below %s" % (self.OUTSIDE, shown, resolved, self.real_root))

    def path(self, *parts):
        """The path of ``parts`` below the root, resolved in full and checked."""
        p = self._join(parts)
        self._inside(os.path.realpath(p), p)
        return p

    def entry(self, *parts):
        """The path of ``parts``, its parent directory resolved and checked (for links)."""
        p = self._join(parts)
        if not parts:
            raise NvmetError("%s: no name given" % self.OUTSIDE)
        d = os.path.realpath(os.path.dirname(p))
        self._inside(d, p)
        self._inside(os.path.join(d, parts[-1]), p)
        return p

    def exists(self, *parts):
        return os.path.lexists(self.entry(*parts))

    def read(self, *parts):
        raw = _read(self.path(*parts))
        return None if raw is None else raw.rstrip()

    def listdir(self, *parts):
        return _ls(self.path(*parts))

    def mkdir(self, *parts):
        p = self.path(*parts)
        if not os.path.isdir(p):
            os.mkdir(p)

    def write(self, value, *parts):
        p = self.path(*parts)
        fd = os.open(p, os.O_WRONLY | os.O_NOFOLLOW)
        try:
            data = str(value).encode()
            n = os.write(fd, data)
            if n != len(data):
                raise OSError(errno.EIO, "short write to %s" % p)
        finally:
            os.close(fd)

    def symlink(self, target_parts, link_parts):
        target = self.path(*target_parts)
        link = self.entry(*link_parts)
        os.symlink(target, link)

    def unlink(self, *parts):
        os.unlink(self.entry(*parts))

    def rmdir(self, *parts):
        os.rmdir(self.entry(*parts))


def _oserr(e):
    name = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else "error"
    return "%s (%s)" % (e.strerror or e, name)


def apply(root, desired, changes, fs=None, link_timeout=0.0, keep_going=False, log=None):
    """Perform ``changes`` (from ``diff``) in place. Returns (done, failed).

    Never clears and restores; touches only what the changes name. With ``keep_going`` (the
    boot-time restore) a failed change is recorded and the rest still run; otherwise the
    first failure raises NvmetError carrying the changes done so far. Port links that fail
    because the fabric address is not configured yet are retried until ``link_timeout``
    seconds after the start.
    """
    fs = fs or ConfigFS(root)
    deadline = time.monotonic() + float(link_timeout or 0)
    done, failed = [], []
    for c in changes:
        try:
            _apply_one(fs, desired, c, deadline)
        except (OSError, NvmetError) as e:
            msg = "%s: %s failed: %s" % (c["object"], c["action"],
                                         _oserr(e) if isinstance(e, OSError) else e)
            hint = _hint(desired, c, e)
            if hint:
                msg += " (%s)" % hint
            if not keep_going:
                raise NvmetError(msg, done)
            failed.append({"change": public_change(c), "error": msg})
            if log:
                log("FAILED " + msg)
            continue
        done.append(c)
        if log:
            log("%s %s: %s" % (c["action"], c["object"], c["detail"]))
    return done, failed


def _hint(desired, c, e):
    en = getattr(e, "errno", None)
    kind = c["kind"]
    if kind == "host" and en in (errno.ENOENT, errno.EACCES, errno.EPERM):
        return "does this kernel have DH-HMAC-CHAP (CONFIG_NVME_TARGET_AUTH, 6.x)?"
    if kind == "subsystem" and en == errno.EINVAL and set(c.get("attrs", [])) & {"serial", "model"}:
        return "the kernel refuses serial/model changes once a host has identified the " \
               "subsystem: remove and re-create it to change them"
    if kind == "namespace" and en in (errno.ENOENT, errno.ENODEV, errno.EINVAL, errno.ENXIO):
        path = desired["subsystems"][c["key"][0]]["namespaces"].get(c["key"][1], {}).get("device_path")
        return "device_path must be an existing block device or regular file%s" % (
            ": " + path if path else "")
    if kind in ("port_link", "port") and en in RETRY_ERRNOS:
        return "is the fabric address configured on an interface (and an RDMA device bound to " \
               "it for rdma)?"
    if kind in ("port_link", "port") and en == errno.EADDRINUSE:
        return "another port already listens on this address"
    return None


def _write_host(fs, nqn, h, attrs=None):
    key, ctrl = h.get("dhchap_key"), h.get("dhchap_ctrl_key")
    attrs = attrs if attrs is not None else (_HOST_ATTRS if key else ())
    if not key:
        return
    if "dhchap_hash" in attrs:
        fs.write(DHCHAP_HASH, "hosts", nqn, "dhchap_hash")
    if "dhchap_dhgroup" in attrs:
        fs.write(DHCHAP_DHGROUP, "hosts", nqn, "dhchap_dhgroup")
    if "dhchap_key" in attrs:
        fs.write(key, "hosts", nqn, "dhchap_key")
    if "dhchap_ctrl_key" in attrs and ctrl:
        fs.write(ctrl, "hosts", nqn, "dhchap_ctrl_key")


def _check_size(path, size):
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_BACKING_SIZE:
        raise NvmetError("backing file %s: size must be 1 byte to 1 PiB (%d bytes)" % (path, MAX_BACKING_SIZE))


def _makedirs_private(d):
    """Create the missing directories of absolute path ``d``, each mode 0700."""
    try:
        makedirs_private(d)
    except NotADirectoryError as e:
        raise NvmetError(str(e))


def create_backing_file(path, size):
    """A new sparse file of ``size`` bytes, mode 0600, parent directories 0700. Never opens an
    existing path or follows a symlink (O_EXCL | O_NOFOLLOW); if sizing fails the new file is
    removed again, so no empty file is left to be exported later."""
    _check_size(path, size)
    _makedirs_private(os.path.dirname(path) or "/")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
    except (OSError, OverflowError, ValueError) as e:
        os.close(fd)
        os.unlink(path)
        if isinstance(e, OSError):
            raise
        raise NvmetError("backing file %s: cannot size it to %d bytes: %s" % (path, size, e))
    os.close(fd)


def grow_backing_file(path, size):
    """Grow (never shrink) an existing regular file; a symlink or anything else is refused."""
    _check_size(path, size)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise NvmetError("backing file %s is a symbolic link: refusing to follow it" % path)
    if not stat.S_ISREG(st.st_mode):
        raise NvmetError("backing file %s is not a regular file: refusing to grow it" % path)
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fst = os.fstat(fd)
        if not stat.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
            raise NvmetError("backing file %s changed while it was checked: not grown" % path)
        if fst.st_size < size:
            os.ftruncate(fd, size)
    finally:
        os.close(fd)


def _link_port(fs, pid, nqn, deadline):
    while True:
        try:
            fs.symlink(("subsystems", nqn), ("ports", pid, "subsystems", nqn))
            return
        except OSError as e:
            if e.errno not in RETRY_ERRNOS or time.monotonic() >= deadline:
                raise
            time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))


def _apply_one(fs, desired, c, deadline):
    kind, key, action = c["kind"], c["key"], c["action"]
    attrs = c.get("attrs") or []
    if kind == "host":
        nqn = key[0]
        if action == "create":
            fs.mkdir("hosts", nqn)
            _write_host(fs, nqn, desired["hosts"][nqn])
        elif action == "update":
            if c.get("recreate"):
                users = [s for s in fs.listdir("subsystems") if fs.exists("subsystems", s, "allowed_hosts", nqn)]
                for s in users:
                    fs.unlink("subsystems", s, "allowed_hosts", nqn)
                fs.rmdir("hosts", nqn)
                fs.mkdir("hosts", nqn)
                _write_host(fs, nqn, desired["hosts"][nqn])
                for s in users:
                    fs.symlink(("hosts", nqn), ("subsystems", s, "allowed_hosts", nqn))
            else:
                _write_host(fs, nqn, desired["hosts"][nqn], attrs)
        else:
            fs.rmdir("hosts", nqn)
    elif kind == "subsystem":
        nqn = key[0]
        if action == "delete":
            for pid in fs.listdir("ports"):
                if fs.exists("ports", pid, "subsystems", nqn):
                    fs.unlink("ports", pid, "subsystems", nqn)
            for hn in fs.listdir("subsystems", nqn, "allowed_hosts"):
                fs.unlink("subsystems", nqn, "allowed_hosts", hn)
            for nsid in fs.listdir("subsystems", nqn, "namespaces"):
                fs.rmdir("subsystems", nqn, "namespaces", nsid)
            fs.rmdir("subsystems", nqn)
            return
        want = desired["subsystems"][nqn]
        if action == "create":
            fs.mkdir("subsystems", nqn)
            attrs = ["allow_any_host", "serial", "model"]
        for a in attrs:
            if a == "allow_any_host":
                fs.write("0", "subsystems", nqn, "attr_allow_any_host")
            elif want.get(a) is not None:
                fs.write(want[a], "subsystems", nqn, "attr_" + a)
    elif kind == "file":
        nqn, nsid, path = key
        size = desired["subsystems"][nqn]["namespaces"][nsid]["size"]
        if action == "create":
            create_backing_file(path, size)
        else:
            grow_backing_file(path, size)
            if fs.read("subsystems", nqn, "namespaces", nsid, "enable") == "1":
                try:
                    fs.write("1", "subsystems", nqn, "namespaces", nsid, "revalidate_size")
                except OSError:
                    pass  # older kernels: hosts see the size on their next rescan
    elif kind == "namespace":
        nqn, nsid = key
        ns_parts = ("subsystems", nqn, "namespaces", nsid)
        if action == "delete":
            if fs.read(*ns_parts, "enable") == "1":
                fs.write("0", *ns_parts, "enable")
            fs.rmdir(*ns_parts)
            return
        want = desired["subsystems"][nqn]["namespaces"][nsid]
        if action == "create":
            fs.mkdir(*ns_parts)
            attrs = ["device_path", "device_uuid", "device_nguid", "enable"]
        dev_attrs = [a for a in attrs if a != "enable"]
        if dev_attrs and fs.read(*ns_parts, "enable") == "1":
            fs.write("0", *ns_parts, "enable")
        for a in dev_attrs:
            if want.get(a) is not None:
                fs.write(want[a], *ns_parts, a)
        fs.write("1", *ns_parts, "enable")
    elif kind == "allowed_host":
        nqn, hn = key
        if action == "create":
            fs.symlink(("hosts", hn), ("subsystems", nqn, "allowed_hosts", hn))
        else:
            fs.unlink("subsystems", nqn, "allowed_hosts", hn)
    elif kind == "port":
        pid = key[0]
        if action == "delete":
            for sn in fs.listdir("ports", pid, "subsystems"):
                fs.unlink("ports", pid, "subsystems", sn)
            fs.rmdir("ports", pid)
            return
        want = desired["ports"][pid]
        if action == "create":
            fs.mkdir("ports", pid)
            for a in ("trtype", "adrfam", "traddr", "trsvcid"):
                fs.write(want[a], "ports", pid, "addr_" + a)
            return
        links = fs.listdir("ports", pid, "subsystems")
        for sn in links:
            fs.unlink("ports", pid, "subsystems", sn)
        for a in ("trtype", "adrfam", "traddr", "trsvcid"):
            if a in attrs:
                fs.write(want[a], "ports", pid, "addr_" + a)
        for sn in links:
            _link_port(fs, pid, sn, deadline)
    elif kind == "port_link":
        pid, nqn = key
        if action == "create":
            _link_port(fs, pid, nqn, deadline)
        else:
            fs.unlink("ports", pid, "subsystems", nqn)
    else:
        raise NvmetError("unknown change kind %r" % kind)


# --------------------------------------------------------------------------------------------
# persistence: state files, restore program, systemd unit
# --------------------------------------------------------------------------------------------


def load_json(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise NvmetError("cannot read %s: %s" % (path, e))


MANAGED_KEYS = ("hosts", "subsystems", "ports", "files")


def load_managed(state_dir=STATE_DIR):
    """nvmet-managed.json; files written before the ``files`` list existed read as files: []."""
    data = load_json(os.path.join(state_dir, MANAGED_NAME)) or {}
    if not isinstance(data, dict):
        raise NvmetError("cannot read %s: not a JSON object" % os.path.join(state_dir, MANAGED_NAME))
    out = {}
    for k in MANAGED_KEYS:
        v = data.get(k) or []
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise NvmetError("cannot read %s: %s is not a list of strings"
                             % (os.path.join(state_dir, MANAGED_NAME), k))
        out[k] = list(v)
    return out


def managed_text(managed):
    data = {k: list(managed.get(k) or []) for k in MANAGED_KEYS}
    data["version"] = 1
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def config_text(desired):
    """nvmet.json: the desired state, keys included (mode 0600)."""
    return json.dumps({"version": 1, "desired": desired}, indent=2, sort_keys=True) + "\n"


def render_unit(python, program_path, config_path):
    """The unit running the boot program's ``nvmet`` command (bootapp.py) at boot."""
    return unit_text(
        ["Written by nvmeofctl (nvmeofctl.fabric.nvmet_target). Do not edit: the next apply",
         "rewrites it. Re-applies %s to nvmet configfs at boot." % config_path],
        "nvmeofctl: restore the NVMe-oF target (nvmet) configuration",
        "%s %s nvmet --config %s" % (python, program_path, config_path),
        after="nvmeofctl-rdma.service network-online.target local-fs.target sys-kernel-config.mount",
        wants="network-online.target", timeout=300)


def persistence_files(desired, python, program, state_dir=STATE_DIR, lib_dir=LIB_DIR, unit_dir=UNIT_DIR):
    """[(path, content, mode, secret)] that make the configuration survive a reboot.
    ``program``: the boot program's bytes (bootapp.build())."""
    config_path = os.path.join(state_dir, CONFIG_NAME)
    program_path = os.path.join(lib_dir, BOOT_NAME)
    return [
        (config_path, config_text(desired), 0o600, True),
        (program_path, program, 0o644, False),
        (os.path.join(unit_dir, UNIT_NAME), render_unit(python, program_path, config_path), 0o644, False),
    ]


def obsolete_files(lib_dir=LIB_DIR):
    """Boot files earlier versions wrote and this one no longer uses (removed on apply)."""
    return [os.path.join(lib_dir, RESTORE_NAME)]


# --------------------------------------------------------------------------------------------
# boot-time restore: python3 nvmeofctl-boot.pyz nvmet --config /etc/nvmeofctl/nvmet.json
# --------------------------------------------------------------------------------------------


def main(argv=None, make_fs=ConfigFS):
    """The boot-time restore; ``make_fs(root)``: the configfs layer (tests inject a plain-tree one)."""
    import argparse

    ap = argparse.ArgumentParser(prog="%s nvmet" % BOOT_NAME, description="Re-apply the nvmeofctl nvmet configuration (boot-time restore).")
    ap.add_argument("--config", default=os.path.join(STATE_DIR, CONFIG_NAME))
    ap.add_argument("--configfs-root", default=CONFIGFS_ROOT)
    ap.add_argument("--link-timeout", type=float, default=60.0,
                    help="seconds to retry port links while the fabric address is missing")
    ap.add_argument("--no-modprobe", action="store_true")
    args = ap.parse_args(argv)

    def log(msg):
        print("nvmeofctl-nvmet: " + msg, flush=True)  # pylint: disable=ansible-bad-function  # boot-time program, not module code

    try:
        data = load_json(args.config)
    except NvmetError as e:
        log(str(e))
        return 1
    if not data or "desired" not in data:
        log("%s missing or empty: nothing to restore" % args.config)
        return 0
    desired = data["desired"]
    if not args.no_modprobe:
        mods = missing_modules(desired)
        if mods:
            rc = subprocess.call(["modprobe", "-a"] + mods)
            if rc:
                log("modprobe -a %s failed (rc=%d)" % (" ".join(mods), rc))
                return 1
    for _attempt in range(50):
        if os.path.isdir(args.configfs_root):
            break
        time.sleep(0.2)
    else:
        log("%s not found: is configfs mounted and nvmet loaded?" % args.configfs_root)
        return 1
    observed = read_tree(args.configfs_root)
    observed["files"] = probe_files(desired)
    try:
        changes = diff(desired, observed, managed=None)  # at boot: never delete anything
    except ValueError as e:
        log(str(e))
        return 1
    rc = 0
    kept = []
    for c in changes:
        if c["kind"] == "file" and c["action"] == "create":
            # a missing backing file at boot means lost data or an unmounted filesystem:
            # exporting a fresh empty file would hide that, so do not create it
            log("backing file %s missing: not re-created at boot; namespace %s stays off"
                % (c["key"][2], c["key"][1]))
            rc = 1
            continue
        kept.append(c)
    done, failed = apply(args.configfs_root, desired, kept, fs=make_fs(args.configfs_root), link_timeout=args.link_timeout,
                         keep_going=True, log=log)
    log("%d change(s) applied, %d failed" % (len(done), len(failed)))
    return 1 if (failed or rc) else 0
