# -*- coding: utf-8 -*-
"""nvmet: observed state, read from configfs directly or parsed from a one-SSH-round-trip dump.

Part of ``nvmet`` (module_utils/nvmet.py re-exports every name; see its docstring for the
data shapes and the kernel rules). Stdlib only.
"""

from __future__ import annotations

import os
import shlex
import stat

from .fileio import list_dir, read_text
from .nvmet_model import (
    CONFIGFS_ROOT, SYS_MODULE_DIR, _HOST_ATTRS, _NS_ATTRS, _PORT_ATTRS, _SUBSYS_ATTRS,
    _host_record, _ns_record, _port_record, _set_ns_attr, _set_subsys_attr, _str, _subsys_record,
    empty_tree, ns_label,
)


# --------------------------------------------------------------------------------------------
# reading: configfs directly, or a one-SSH-round-trip dump
# --------------------------------------------------------------------------------------------


def _read(path):
    return read_text(path, strip=False)  # None: write-only (revalidate_size), EINVAL, vanished: skip


_ls = list_dir


def _read_attrs(d, attrs, rec, setter):
    """``rec`` with ``setter(rec, name, raw)`` for each (file, name) of ``attrs`` readable in ``d``."""
    for fname, name in attrs:
        raw = _read(os.path.join(d, fname))
        if raw is not None:
            setter(rec, name, raw)
    return rec


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
        rec = _read_attrs(d, _SUBSYS_ATTRS.items(), _subsys_record(), _set_subsys_attr)
        rec["allowed_hosts"] = _ls(os.path.join(d, "allowed_hosts"))
        ns_dir = os.path.join(d, "namespaces")
        for nsid in _ls(ns_dir):
            nd = os.path.join(ns_dir, nsid)
            if os.path.isdir(nd):
                rec["namespaces"][nsid] = _read_attrs(nd, ((a, a) for a in _NS_ATTRS), _ns_record(), _set_ns_attr)
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
        groups_dir = os.path.join(d, "ana_groups")
        for grpid in _ls(groups_dir):
            state = _str(_read(os.path.join(groups_dir, grpid, "ana_state")))
            if state is not None:
                rec["ana_groups"][grpid] = state
        rec["ana_groups"] = {g: rec["ana_groups"][g] for g in sorted(rec["ana_groups"], key=_sort_key)}
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
        "-o -name attr_allow_any_host -o -name attr_serial -o -name attr_model -o -name 'attr_cntlid_*' "
        "-o -name 'device_*' -o -name enable -o -name buffered_io -o -name 'dhchap_*' "
        "-o -name ana_grpid -o -name ana_state \\) -print \\) "
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
            elif len(parts) == 5 and parts[2] == "ana_groups" and parts[4] == "ana_state" \
                    and value is not None and _str(value) is not None:
                rec["ana_groups"][parts[3]] = _str(value)
    for nqn, raw in host_raw.items():
        tree["hosts"][nqn] = _host_record(raw.get("dhchap_key"), raw.get("dhchap_ctrl_key"),
                                          raw.get("dhchap_hash"), raw.get("dhchap_dhgroup"))
    for rec in tree["subsystems"].values():
        rec["allowed_hosts"].sort()
    for rec in tree["ports"].values():
        rec["subsystems"].sort()
        rec["ana_groups"] = {g: rec["ana_groups"][g] for g in sorted(rec["ana_groups"], key=_sort_key)}
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


def files_command(desired, managed_path):
    """Read-only shell whose output ``parse_files`` turns into ``probe_files(desired,
    <files nvmet-managed.json records>)``: the planner's view of the backing files, read in its
    one round trip. ``stat`` does not follow the last component, as ``probe_file``; a path whose
    parent is not a directory reads as missing (``probe_file``: "not-regular"), and then the
    module refuses what the plan showed."""
    paths = sorted(probe_files_paths(desired))
    q = shlex.quote
    listed = "printf '%%s\\n' %s; " % " ".join(q(x) for x in paths) if paths else ""
    return (
        "{ " + listed + "[ -f " + q(managed_path) + " ] && python3 -c 'import json, sys\n"
        "try:\n    d = json.load(open(sys.argv[1]))\nexcept Exception:\n    d = {}\n"
        "f = d.get(\"files\") if isinstance(d, dict) else None\n"
        "print(\"\\n\".join(x for x in (f if isinstance(f, list) else []) if isinstance(x, str)))' "
        + q(managed_path) + " 2>/dev/null; } | while IFS= read -r p; do [ -n \"$p\" ] || continue; "
        "printf 'P\\t%s\\n' \"$p\"; stat --printf 'S\\t%F\\t%s\\t%n\\n' -- \"$p\" 2>/dev/null; done; true")


def probe_files_paths(desired):
    """The ``create_file`` paths of ``desired`` (what ``probe_files`` probes besides ``extra``)."""
    return [ns["device_path"] for sub in desired.get("subsystems", {}).values()
            for ns in sub["namespaces"].values() if ns.get("create_file")]


def parse_files(text):
    """``files_command`` output as ``probe_files`` returns it: {path: size | None | "symlink" |
    "not-regular"}."""
    out = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if parts[0] == "P" and len(parts) == 2:
            out.setdefault(parts[1], None)
        elif parts[0] == "S" and len(parts) == 4:
            kind, size, path = parts[1], parts[2], parts[3]
            if kind in ("regular file", "regular empty file") and size.isdigit():
                out[path] = int(size)
            else:
                out[path] = "symlink" if kind == "symbolic link" else "not-regular"
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
