# -*- coding: utf-8 -*-
"""nvmet: the diff (desired vs observed -> ordered changes), the check-mode prediction and diff texts.

Part of ``nvmet`` (module_utils/nvmet.py re-exports every name; see its docstring for the
data shapes and the kernel rules). Stdlib only.
"""

from __future__ import annotations

import copy

from .change import change as _new_change
from .nvmet_model import (
    ANA_LIVE_STATES, CNTLID_MAX, CNTLID_MIN, DHCHAP_DHGROUP, DHCHAP_HASH, KINDS, SECRET, SECRET_CHANGED, _ns_record, _port_record,
    _subsys_record, ns_label, sanitize, secret_hash,
)
from .nvmet_observe import _sort_key, _sorted_tree


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
            if s.get("cntlid_min") is not None or s.get("cntlid_max") is not None:
                bits.append("cntlid %s-%s" % (s.get("cntlid_min") or "", s.get("cntlid_max") or ""))
            fwd["subsystem"].append(_change("subsystem", [nqn], "create", "subsystem %s" % nqn,
                                            "mkdir; " + ", ".join(bits), "not in configfs"))
            continue
        attrs, notes, disruptive = [], [], False
        if o.get("allow_any_host") is not False:
            attrs.append("allow_any_host")
            notes.append("allow_any_host: %s -> 0" % {True: "1", None: "?"}[o.get("allow_any_host")])
            disruptive = o.get("allow_any_host") is True
        for a in ("serial", "model", "cntlid_min", "cntlid_max"):
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
                if ns.get("ana_grpid") is not None:
                    bits.append("ana_grpid=%s" % ns["ana_grpid"])
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
            if ns.get("ana_grpid") is not None and ns["ana_grpid"] != on.get("ana_grpid"):
                # written while enabled: hosts read the new group from the ANA log (not disruptive)
                attrs.append("ana_grpid")
                notes.append("ana_grpid: %s -> %s" % (on.get("ana_grpid"), ns["ana_grpid"]))
            if not attrs:
                continue
            enabled = on.get("enable") is True
            if dev_change:
                detail = "; ".join(notes) + ("; disable, write, re-enable" if enabled else "; write, enable")
            elif "enable" in attrs:
                detail = "; ".join(notes + ["enable: 0 -> 1"])
            else:
                detail = "; ".join(notes)
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
        if p.get("ana_groups") is not None:
            _ana_changes(fwd, dels, pid, p["ana_groups"], (o or {}).get("ana_groups") or {}, o is None)
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
        groups = [g for g in (o.get("ana_groups") or {}) if g != "1"]
        dels["port"].append(_change(
            "port", [pid], "delete", "port %s" % pid,
            ("unlink %d subsystem(s); " % len(links) if links else "")
            + ("rmdir ANA group(s) %s; " % ", ".join(groups) if groups else "") + "rmdir",
            "managed by nvmeofctl and no longer in spec"
            + ("; hosts connected through it are disconnected" if links else ""),
            disruptive=bool(links)))

    out = []
    for k in reversed(KINDS):
        out.extend(dels[k])
    for k in KINDS:
        out.extend(fwd[k])
    return out


def _ana_changes(fwd, dels, pid, want, have, new_port):
    """ANA group changes of one port: groups made (mkdir, group 1 always exists), states written,
    groups the spec no longer names removed. A group leaving optimized/non-optimized stops I/O
    through this port for its namespaces: disruptive unless another path serves them (the
    cluster planner, which knows the other paths, says so; rollout drains through it)."""
    if new_port:
        have = {"1": "optimized"}  # mkdir of a port makes its default group 1, optimized
    for grpid, state in want.items():
        cur = have.get(grpid)
        obj = "port %s / ana group %s" % (pid, grpid)
        if cur == state:
            continue
        down = state not in ANA_LIVE_STATES
        action = "create" if (cur is None and grpid != "1") else "update"
        detail = ("mkdir; " if action == "create" else "") + "ana_state: %s -> %s" % (cur or "-", state)
        fwd["ana_group"].append(_change(
            "ana_group", [pid, grpid], action, obj, detail,
            "hosts stop I/O through this port for the group's namespaces" if down else
            "not in configfs" if action == "create" else "differs from spec",
            disruptive=down and cur in ANA_LIVE_STATES, state=state))
    for grpid in have:
        if grpid not in want and grpid != "1":
            dels["ana_group"].append(_change(
                "ana_group", [pid, grpid], "delete", "port %s / ana group %s" % (pid, grpid),
                "rmdir (was %s)" % have[grpid], "not in spec"))


def ana_only_changes(states, observed):
    """Changes that set ANA group states on existing ports and nothing else (``nvmet_ana``: a
    rollout moving I/O between the targets of a dual-controller subsystem). ``states``:
    {port id: {grpid: state}} (normalized); only the groups named are touched, none removed.
    A port that does not exist is an error (ValueError): ANA states belong to configured ports."""
    fwd = {"ana_group": []}
    ports = observed.get("ports", {})
    for pid, groups in states.items():
        if pid not in ports:
            raise ValueError("port %s is not configured on this target (nvmet_target makes it)" % pid)
        _ana_changes(fwd, {"ana_group": []}, pid, groups, ports[pid].get("ana_groups") or {}, False)
    return fwd["ana_group"]


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
                for a, default in (("cntlid_min", CNTLID_MIN), ("cntlid_max", CNTLID_MAX)):
                    rec[a] = want[a] if want.get(a) is not None else default
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
            for a in ("device_path", "device_uuid", "device_nguid", "ana_grpid"):
                if want.get(a) is not None:
                    rec[a] = want[a]
            if action == "create" and rec.get("ana_grpid") is None:
                rec["ana_grpid"] = 1
            rec["enable"] = True
        elif kind == "allowed_host":
            _link(st["subsystems"][key[0]]["allowed_hosts"], key[1], action == "create")
        elif kind == "port":
            if action == "delete":
                st["ports"].pop(key[0], None)
                continue
            rec = st["ports"].setdefault(key[0], _port_record())
            want = desired["ports"][key[0]]
            for a in ("trtype", "adrfam", "traddr", "trsvcid"):
                rec[a] = want[a]
            if action == "create":
                rec["ana_groups"] = {"1": "optimized"}  # the kernel's default group
        elif kind == "ana_group":
            groups = st["ports"][key[0]].setdefault("ana_groups", {})
            if action == "delete":
                groups.pop(key[1], None)
            else:
                groups[key[1]] = c["state"]
            st["ports"][key[0]]["ana_groups"] = {g: groups[g] for g in sorted(groups, key=_sort_key)}
        elif kind == "port_link":
            _link(st["ports"][key[0]]["subsystems"], key[1], action == "create")
    return _sorted_tree(st)


def _link(names, name, present):
    """A symlink folder (allowed_hosts, a port's subsystems) as a sorted list: ``name`` in or out."""
    if present and name not in names:
        names.append(name)
    elif not present and name in names:
        names.remove(name)
    names.sort()


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
        if (s.get("cntlid_min"), s.get("cntlid_max")) not in ((None, None), (CNTLID_MIN, CNTLID_MAX)):
            lines.append("  cntlid: %s-%s" % (s.get("cntlid_min"), s.get("cntlid_max")))
        for hn in s.get("allowed_hosts", []):
            lines.append("  allowed_host %s" % hn)
        for nsid, ns in s.get("namespaces", {}).items():
            lines.append("  namespace %s: %s uuid=%s nguid=%s enable=%s%s" % (
                nsid, ns.get("device_path"), ns.get("device_uuid"), ns.get("device_nguid"),
                _onoff(ns.get("enable")),
                " ana_grpid=%s" % ns["ana_grpid"] if ns.get("ana_grpid") not in (None, 1) else ""))
    for pid, p in state.get("ports", {}).items():
        lines.append("port %s: %s %s %s:%s" % (
            pid, p.get("trtype"), p.get("adrfam"), p.get("traddr"), p.get("trsvcid")))
        for sn in p.get("subsystems", []):
            lines.append("  subsystem %s" % sn)
        groups = p.get("ana_groups") or {}
        if set(groups) - {"1"} or groups.get("1", "optimized") != "optimized":
            for g, st in groups.items():
                lines.append("  ana group %s: %s" % (g, st))
    return "\n".join(lines) + ("\n" if lines else "")


def changed_secrets(changes):
    out = set()
    for c in changes:
        if c["kind"] == "host" and c["action"] == "update":
            for a in c.get("attrs", []):
                if a in ("dhchap_key", "dhchap_ctrl_key"):
                    out.add((c["key"][0], a))
    return out
