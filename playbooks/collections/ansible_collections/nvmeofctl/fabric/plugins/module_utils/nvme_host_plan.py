# -*- coding: utf-8 -*-
"""NVMe host: the desired state, the plan (changes carrying their op), redaction and output.

Part of ``nvme_host`` (module_utils/nvme_host.py re-exports every name; see its docstring).
Stdlib only; DH-HMAC-CHAP secrets never enter a returned structure, a message or a log line.
"""

from __future__ import annotations

import hashlib
import re

from .change import change as _new_change, public as public_change
from .nvme_host_state import GONE_STATES, SECRET_ATTRS, _CTRL_RE, expected_ctrl_loss_tmo


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
        # act only on the connections to these subsystems (None: all); see ``in_scope``
        "only": sorted(set(d["only"])) if d.get("only") is not None else None,
        # ... and to these target addresses (None: all): a rollout changes the paths through one
        # target while the others carry the I/O
        "only_traddr": sorted(set(d["only_traddr"])) if d.get("only_traddr") is not None else None,
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
                "file %s/%s" % (etc, attr), "update",
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
    return [c for c in changes if in_scope(c["op"], d["only"], d["only_traddr"])]


def in_scope(op, only, only_traddr=None):
    """Whether a change (its private ``op``) concerns the subsystems ``only`` and the target
    addresses ``only_traddr`` (None: every one). The host identity and conflicts with it are
    always in scope: a connect needs them; a subsystem's multipath policy is in scope by its NQN."""
    if op["op"] in ("identity", "conflict"):
        return True
    nqn = op["nqn"] if op["op"] == "iopolicy" else op["key"][0]
    if only is not None and nqn not in only:
        return False
    if only_traddr is not None and op["op"] != "iopolicy" and op["key"][2] not in only_traddr:
        return False
    return True


def key_in_scope(k, d):
    """Whether connection key ``k`` (subsysnqn, transport, traddr, trsvcid) is in the run's scope."""
    return ((d.get("only") is None or k[0] in d["only"])
            and (d.get("only_traddr") is None or k[2] in d["only_traddr"]))


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
