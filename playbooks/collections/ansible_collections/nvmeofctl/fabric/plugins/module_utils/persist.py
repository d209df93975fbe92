# -*- coding: utf-8 -*-
# Copyright: nvmeofctl contributors
# Apache-2.0
"""Boot persistence, written once for every domain: systemd unit texts, and the loop that
writes configs, the boot program and units, then enables the unit.

``plan`` compares, ``apply`` executes: the changes it returns carry their own ``op`` (see
change.py), so check mode predicts exactly what apply does. Stdlib only.

``plan`` sees the files through a view: ``LOCAL`` (this machine's files: the modules, at apply
time) or ``DumpedFiles`` (what ``state_command`` printed on the host, in the planner's one
read-only round trip: sha256 digests and modes, never contents). The same plan code so decides,
on the host and on the controller, whether a persistence file needs a rewrite: a host whose plan
is empty needs no module run.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import shlex

from .change import change, op_of
from .fileio import file_state, remove_file, to_bytes, write_atomic

UNIT_DIR = "/etc/systemd/system"
LIB_DIR = "/usr/local/lib/nvmeofctl"
BOOT_NAME = "nvmeofctl-boot.pyz"  # the boot-time program (bootapp.py), shared by the units
WANTS = "multi-user.target.wants"
ENABLE_DETAIL = "systemctl enable (runs at boot; not started now)"


class LocalFiles:
    """This machine's files (the modules' view)."""

    def state(self, path, content, mode):
        return file_state(path, content, mode)

    def lexists(self, path):
        return os.path.lexists(path)


LOCAL = LocalFiles()


class UnreadPath(ValueError):
    """The planner asked about a file the host's dump did not cover (a bug, never a guess)."""


class DumpedFiles:
    """The files as ``state_command`` printed them on the host: per path its sha256 and mode
    (``stat -L``: what ``file_state`` sees), and whether the path exists as anything
    (``os.path.lexists``). ``paths``: the paths the dump covered."""

    def __init__(self, paths, digests, modes, present):
        self.paths, self.digests, self.modes, self.present = set(paths), digests, modes, set(present)

    def _known(self, path):
        if path not in self.paths:
            raise UnreadPath("%s was not read from the host" % path)

    def state(self, path, content, mode):
        self._known(path)
        if path not in self.modes:
            return "absent"
        if self.digests.get(path) != hashlib.sha256(to_bytes(content)).hexdigest() or self.modes[path] != mode:
            return "outdated"
        return "current"

    def lexists(self, path):
        self._known(path)
        return path in self.present


class Recorder:
    """A view that answers "current"/present and records every path asked: run a plan with it
    to learn which paths ``state_command`` must cover."""

    def __init__(self):
        self.paths = set()

    def state(self, path, content, mode):
        self.paths.add(path)
        return "current"

    def lexists(self, path):
        self.paths.add(path)
        return True


def state_command(paths):
    """Read-only shell printing what ``parse_state`` reads for ``paths``: three processes in all,
    whatever the number of paths (each costs in a slow VM)."""
    args = " ".join(shlex.quote(p) for p in sorted(paths))
    return ("sha256sum -- %s 2>/dev/null; stat -L -c 'mode %%a %%n' -- %s 2>/dev/null; "
            "stat -c 'lexists %%n' -- %s 2>/dev/null; true" % (args, args, args))


def parse_state(text, paths):
    """``DumpedFiles`` from ``state_command(paths)``'s output."""
    digests, modes, present = {}, {}, []
    for line in text.splitlines():
        first, _sep, rest = line.partition(" ")
        if first == "mode":
            m, _sep, path = rest.partition(" ")
            try:
                modes[path] = int(m, 8) & 0o7777
            except ValueError:
                continue
        elif first == "lexists":
            present.append(rest)
        elif len(first) == 64 and rest.startswith(" "):  # sha256sum: "<hex>  <path>"
            digests[rest[1:]] = first.lower()
    return DumpedFiles(paths, digests, modes, present)


# The ``host_files`` option of nvmet_target, nvme_host and rdma_link (doc fragment
# nvmeofctl.fabric.host_files): texts rendered from the collection's templates/ on the controller,
# by key: rdma_script, rdma_unit, nvmet_unit, connect_unit, and per RDMA rail 2..N
# rdma_script@<interface>, rdma_unit@<interface> (so no fixed suboptions: ``require_texts``
# checks what a call needs).
HOST_FILES_SPEC = dict(type="dict")


def require_texts(texts, keys, module_name):
    """Raise ValueError unless ``texts`` (a module's ``host_files`` option) has every key of
    ``keys``: the texts come from the module's action plugin, which renders the collection's
    templates/ on the controller."""
    missing = [k for k in keys if not isinstance((texts or {}).get(k), str)]
    if missing:
        raise ValueError("host_files.%s not given: nvmeofctl.fabric.%s renders it from the collection's "
                         "templates/ in its action plugin (call the module by that name, with the "
                         "collection installed)" % (", host_files.".join(missing), module_name))


def systemd_root(unit_dir):
    """The root directory whose ``etc/systemd/system`` is ``unit_dir``: "/" for systemd's own
    (however spelled), another root for a tree systemctl manages with ``--root``; None when
    ``unit_dir`` is no such directory."""
    d = os.path.normpath(unit_dir)
    if d == UNIT_DIR:
        return "/"
    if d.endswith(UNIT_DIR):
        return d[:-len(UNIT_DIR)] or "/"
    return None


def wants_path(unit_dir, unit_name):
    return os.path.join(unit_dir, WANTS, unit_name)


def file_change(path, state, detail, op=None):
    """The change that writes ``path`` (``state``: "absent" or "outdated"), in the one shape of a
    persistence file change; ``op``: what apply executes (None: the caller writes it)."""
    extra = {"op": op} if op is not None else {}
    return change("file %s" % path, "create" if state == "absent" else "update", detail,
                  "missing" if state == "absent" else "content or mode differ",
                  kind="persist", key=[path], **extra)


def plan(files, unit_dir=None, unit_name=None, fs=LOCAL):
    """Changes that make ``files`` current and (with ``unit_name``) the unit enabled.

    ``files``: [(path, content, mode, detail)] (content str or bytes). ``fs``: the view of the
    host's files (``LOCAL``, ``DumpedFiles``). Returns (changes, states) with states
    [(path, "absent" | "outdated" | "current")] for diff texts.
    """
    changes, states = [], []
    unit_path = os.path.join(unit_dir, unit_name) if unit_name else None
    unit_changed = reload = False
    for path, content, mode, detail in files:
        st = fs.state(path, content, mode)
        states.append((path, st))
        if st == "current":
            continue
        text = "mode %04o" % mode + ("; %s" % detail if detail else "")
        if path == unit_path:
            unit_changed = True
            # systemd loads a NEW unit file when it is first referenced; one it may hold loaded
            # needs a daemon-reload (each costs seconds on a slow host: only when needed)
            reload = st == "outdated"
            if reload:
                text += "; systemctl daemon-reload"
        changes.append(file_change(path, st, text, {"op": "write", "path": path, "content": content,
                                                    "mode": mode}))
    if not unit_name:
        return changes, states
    wants = wants_path(unit_dir, unit_name)
    if unit_changed or not fs.lexists(wants):
        changes.append(change("systemd %s" % unit_name, "update", ENABLE_DETAIL,
                              "unit new or changed" if unit_changed else "not enabled",
                              kind="persist", key=[unit_name],
                              op={"op": "enable", "unit": unit_name, "unit_path": unit_path,
                                  "wants": wants, "reload": reload}))
    return changes, states


def plan_removal(paths, unit_dir=None, unit_name=None, reason="persist is false", fs=LOCAL):
    """Changes that disable the unit (with ``unit_name``) and remove ``paths`` (those present)."""
    changes = []
    wants = wants_path(unit_dir, unit_name) if unit_name else None
    if wants and fs.lexists(wants):
        changes.append(change("systemd %s" % unit_name, "disable", "systemctl disable", reason,
                              kind="persist", key=[unit_name],
                              op={"op": "disable", "unit": unit_name, "wants": wants}))
    for path in paths:
        if fs.lexists(path):
            changes.append(change("file %s" % path, "remove", "", reason, kind="persist", key=[path],
                                  op={"op": "remove", "path": path,
                                      "reload": bool(unit_name) and path == os.path.join(unit_dir, unit_name)}))
    return changes


def apply(changes, systemctl=None):
    """Carry out persistence ``changes`` (from plan / plan_removal). ``systemctl``: a callable
    ``(*args) -> error message or None``, or None where there is no systemd to talk to (the
    wants link is then made or removed directly). Returns (done, failures)."""
    done, failures = [], []
    reload = False
    for ch in changes:
        op = op_of(ch)
        try:
            if op.get("op") == "write":
                write_atomic(op["path"], op["content"], op["mode"])
            elif op.get("op") == "disable":
                err = systemctl("disable", "--no-reload", op["unit"]) if systemctl else None
                if err:
                    failures.append(err)
                    continue
                remove_file(op["wants"])
            elif op.get("op") == "remove":
                remove_file(op["path"])
                reload = reload or op["reload"]
            else:
                continue
        except OSError as exc:
            failures.append("%s: %s" % (op.get("path") or op.get("wants"), exc.strerror or exc))
            continue
        done.append(ch)
    for ch in changes:
        op = op_of(ch)
        if op.get("op") != "enable":
            continue
        err = None
        if systemctl:
            if op["reload"]:
                err = systemctl("daemon-reload")
            # --no-reload: the wants link is what boot needs; a reload, when one is needed, ran
            # just before (a new unit needs none)
            err = err or systemctl("enable", "--no-reload", op["unit"])
        if err is None and not os.path.lexists(op["wants"]):
            try:
                os.makedirs(os.path.dirname(op["wants"]), exist_ok=True)
                os.symlink(op["unit_path"], op["wants"])
            except OSError as exc:
                err = "enable %s: %s" % (op["unit"], exc.strerror or exc)
        if err:
            failures.append(err)
        else:
            done.append(ch)
    if reload and systemctl:
        err = systemctl("daemon-reload")
        if err:
            failures.append(err)
    return done, failures


def systemctl_for(module, unit_dir):
    """A ``systemctl`` callable for ``apply`` through ``module`` (an AnsibleModule: run_command,
    get_bin_path, warn). Always systemctl: for systemd's own unit directory as is, for
    ``ROOT/etc/systemd/system`` with ``--root=ROOT`` (offline: no daemon-reload there). None
    (the wants link is then made directly, with a warning) when systemctl is missing or
    ``unit_dir`` is not a systemd unit directory."""
    root = systemd_root(unit_dir)
    exe = module.get_bin_path("systemctl")
    if not exe or root is None:
        module.warn("%s: units written, enabled by their wants link only" % (
            "systemctl not found" if not exe else "%s is not ROOT/etc/systemd/system" % unit_dir))
        return None
    prefix = [exe] if root == "/" else [exe, "--root=%s" % root]

    def run(*args):
        if args == ("daemon-reload",) and root != "/":
            return None  # an offline root has no service manager to reload
        rc, out, err = module.run_command(prefix + list(args))
        if rc != 0:
            return "systemctl %s failed (rc=%d): %s" % (" ".join(args), rc, (err or out or "").strip())
        return None
    return run
