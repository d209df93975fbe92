# -*- coding: utf-8 -*-
"""nvmet: constants, errors, small helpers and the desired state (``normalize``, ``sanitize``).

Part of ``nvmet`` (module_utils/nvmet.py re-exports every name; see its docstring for the
data shapes and the kernel rules). Stdlib only.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import ipaddress
import os
import re


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
KINDS = ("host", "subsystem", "file", "namespace", "allowed_host", "port", "ana_group", "port_link")
# errno values that mean "the fabric address is not there yet": retried while linking ports.
RETRY_ERRNOS = (errno.EADDRNOTAVAIL, errno.ENODEV)

# Every pattern is applied with ``fullmatch`` (``$`` would accept a trailing newline).
# An NQN here: "nqn." then printable ASCII without '/' or spaces, 223 bytes at most. Looser than
# module_utils/validators.py (which the module and the spec apply first; this check stays here so
# the boot-time restore and the planner keep it too), never looser about what could leave the
# configfs root: every NQN validators accepts matches.
_NQN_RE = re.compile(r"nqn\.[\x21-\x2e\x30-\x7e]{1,219}")
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX32_RE = re.compile(r"[0-9a-f]{32}")
_PORTNUM_RE = re.compile(r"[0-9]{1,5}")
# ANA (asymmetric namespace access): the states a port's ANA group takes, the groups the kernel
# accepts (NVMET_MAX_ANAGRPS), and the controller id range (NVME_CNTLID_MIN..MAX).
ANA_STATES = ("optimized", "non-optimized", "inaccessible", "persistent-loss", "change")
ANA_LIVE_STATES = ("optimized", "non-optimized")
MAX_ANA_GROUP = 128
CNTLID_MIN, CNTLID_MAX = 1, 0xFFEF
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
    return {"allow_any_host": None, "serial": None, "model": None, "cntlid_min": None,
            "cntlid_max": None, "allowed_hosts": [], "namespaces": {}}


def _ns_record():
    return {"device_path": None, "device_uuid": None, "device_nguid": None, "enable": None,
            "buffered_io": None, "ana_grpid": None}


def _port_record():
    # ana_groups: {grpid: state} as read from ports/<id>/ana_groups/<grpid>/ana_state
    return {"trtype": None, "adrfam": None, "traddr": None, "trsvcid": None, "subsystems": [],
            "ana_groups": {}}


_HOST_ATTRS = ("dhchap_key", "dhchap_ctrl_key", "dhchap_hash", "dhchap_dhgroup")
_SUBSYS_ATTRS = {"attr_allow_any_host": "allow_any_host", "attr_serial": "serial",
                 "attr_model": "model", "attr_cntlid_min": "cntlid_min", "attr_cntlid_max": "cntlid_max"}
_NS_ATTRS = ("device_path", "device_uuid", "device_nguid", "enable", "buffered_io", "ana_grpid")
_PORT_ATTRS = {"addr_trtype": "trtype", "addr_adrfam": "adrfam", "addr_traddr": "traddr",
               "addr_trsvcid": "trsvcid"}


def _int(value):
    value = _str(value)
    return int(value) if value is not None and value.isdigit() else None


def _set_subsys_attr(rec, name, raw):
    if name == "allow_any_host":
        rec[name] = _bool(raw)
    elif name in ("cntlid_min", "cntlid_max"):
        rec[name] = _int(raw)
    else:
        rec[name] = _str(raw)


def _set_ns_attr(rec, name, raw):
    if name in ("enable", "buffered_io"):
        rec[name] = _bool(raw)
    elif name == "ana_grpid":
        rec[name] = _int(raw)
    elif name in ("device_uuid", "device_nguid"):
        rec[name] = _str(raw.lower()) if raw is not None else None
    else:
        rec[name] = _str(raw)


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
    spec's backing-path rules and allowed prefixes, from validators.py)."""
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
        cntlid = [_opt_int(s.get(a), "%s.%s" % (where, a), CNTLID_MIN, CNTLID_MAX)
                  for a in ("cntlid_min", "cntlid_max")]
        if None not in cntlid and cntlid[0] > cntlid[1]:
            raise ValueError("%s.cntlid_min: %d is above cntlid_max %d" % (where, cntlid[0], cntlid[1]))
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
            grpid = _opt_int(n.get("ana_grpid"), nw + ".ana_grpid", 1, MAX_ANA_GROUP)
            if grpid is not None:  # unset keys stay out: nvmet.json of earlier versions still matches
                rec["ana_grpid"] = grpid
            for opt in ("name", "signature"):  # for messages and the device checks only
                if n.get(opt) not in (None, ""):
                    rec[opt] = str(n[opt])
            nss[str(nsid)] = rec
        desired["subsystems"][nqn] = {"serial": serial, "model": model, "allowed_hosts": allowed,
                                      "namespaces": {k: nss[k] for k in sorted(nss, key=int)}}
        for a, v in zip(("cntlid_min", "cntlid_max"), cntlid):
            if v is not None:
                desired["subsystems"][nqn][a] = v

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
        groups = _ana_groups(p.get("ana_groups"), where + ".ana_groups")
        if groups is not None:
            desired["ports"][str(pid)]["ana_groups"] = groups
    desired["ports"] = {k: desired["ports"][k] for k in sorted(desired["ports"], key=int)}
    return desired


def _opt_int(value, where, low, high):
    """None (unset: the kernel's value is left alone) or an integer in [low, high]."""
    if value is None or value == "":
        return None
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise ValueError("%s: an integer %d..%d is required, got %r" % (where, low, high, value))
    if isinstance(value, bool) or not low <= v <= high:
        raise ValueError("%s: an integer %d..%d is required, got %r" % (where, low, high, value))
    return v


def _ana_groups(value, where):
    """A port's ANA groups as {grpid (str): state}, or None (not managed: left as they are).

    Given as a list of {grpid, state}; group 1 exists on every port (the kernel's default group)."""
    if value is None:
        return None
    out = {}
    for i, g in enumerate(value):
        gw = "%s[%d]" % (where, i)
        if not isinstance(g, dict):
            raise ValueError("%s: {grpid, state} expected, got %r" % (gw, g))
        grpid = _opt_int(g.get("grpid"), gw + ".grpid", 1, MAX_ANA_GROUP)
        if grpid is None:
            raise ValueError("%s.grpid: an integer 1..%d is required" % (gw, MAX_ANA_GROUP))
        state = g.get("state")
        if state not in ANA_STATES:
            raise ValueError("%s.state: one of %s, got %r" % (gw, ", ".join(ANA_STATES), state))
        if str(grpid) in out:
            raise ValueError("%s.grpid: duplicate ANA group %d" % (gw, grpid))
        out[str(grpid)] = state
    return {k: out[k] for k in sorted(out, key=int)}


def sanitize(desired):
    """The desired state with keys replaced by their sha256 digests (observed-shaped hosts)."""
    out = copy.deepcopy(desired)
    out["hosts"] = {n: _host_record(h.get("dhchap_key"), h.get("dhchap_ctrl_key"),
                                    DHCHAP_HASH if h.get("dhchap_key") else None,
                                    DHCHAP_DHGROUP if h.get("dhchap_key") else None)
                    for n, h in desired.get("hosts", {}).items()}
    return out
