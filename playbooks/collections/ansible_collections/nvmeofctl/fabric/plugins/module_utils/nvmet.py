"""nvmet (NVMe-oF target) configfs: read, diff and reconcile in place.

The code is split by concern, and this module re-exports every name (callers use ``nvmet.X``):
``nvmet_model`` (constants, errors, the desired state), ``nvmet_observe`` (read configfs or a
dump), ``nvmet_diff`` (diff, check-mode prediction, diff texts), ``nvmet_apply`` (ConfigFS,
apply); persistence and the boot-time ``main`` live here.

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
     "subsystems": {nqn: {"allow_any_host", "serial", "model", "cntlid_min", "cntlid_max",
                          "allowed_hosts": [..],
                          "namespaces": {nsid: {"device_path", "device_uuid", "device_nguid",
                                                "enable", "buffered_io", "ana_grpid"}}}},
     "ports": {id: {"trtype", "adrfam", "traddr", "trsvcid", "subsystems": [..],
                    "ana_groups": {grpid: ana_state}}}}

  plus, when the caller probed them, ``"files": {path: size | None | "symlink" | "not-regular"}``
  for file-backed namespaces with ``create_file`` (``probe_files``, never following a symlink).
  Secrets appear only as sha256 hex digests.

managed (nvmet-managed.json, ``load_managed``)::

    {"hosts": [..], "subsystems": [..], "ports": [..], "files": [backing files nvmeofctl created]}

Every configfs path goes through ``ConfigFS``, which refuses names that are not one path
component and any path that resolves outside the configfs root (spec strings are hostile).

desired (``normalize``): the same keys, built from the module options (``cntlid_*``,
``ana_grpid`` and ``ana_groups`` only when given: unset, the kernel's values are left alone); hosts carry the clear
keys (``dhchap_key``, ``dhchap_ctrl_key``) because ``apply`` must write them. Use
``sanitize`` before showing a desired state to anyone.

Kernel rules honoured by ``apply`` (see FACTS.md): ``attr_allow_any_host=0``; namespace
``device_*`` writable only while ``enable=0``; port ``addr_*`` writable only while no subsystem is
linked; subsystem serial/model fixed once a host identified it; configfs symlinks need absolute
targets; rmdir needs the children (namespaces, links) gone first.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

from . import persist
from .change import public as public_change
from .persist import BOOT_NAME, UNIT_DIR
from .nvmet_apply import ConfigFS, apply
from .nvmet_diff import ana_only_changes, diff
from .nvmet_model import (
    CONFIGFS_ROOT, CONFIG_NAME, LIB_DIR, MANAGED_NAME, NvmetError, RESTORE_NAME, STATE_DIR,
    UNIT_NAME,
)
from .nvmet_observe import missing_modules, probe_files, read_tree
from .nvmet_model import (  # re-exported: the one name space callers use
    DEFAULT_MODEL, DHCHAP_DHGROUP, DHCHAP_HASH, KINDS, MAX_BACKING_SIZE, RETRY_ERRNOS, SECRET,
    SECRET_CHANGED, SYS_MODULE_DIR, _HEX32_RE, _HOST_ATTRS, _NQN_RE, _NS_ATTRS, _PORTNUM_RE,
    _PORT_ATTRS, _SUBSYS_ATTRS, _UUID_RE, _bool, _check_device_path, _check_nqn, _host_record,
    _norm_nguid, _norm_uuid, _ns_record, _port_record, _set_ns_attr, _set_subsys_attr, _str,
    _subsys_record, empty_tree, normalize, ns_label, sanitize, secret_hash,
)
from .nvmet_observe import (  # re-exported: the one name space callers use
    DUMP_COMMAND, _ls, _read, _sort_key, _sorted_tree, _unreadable, backing_file_problems,
    dump_command, files_command, parse_dump, parse_files, probe_file,
)
from .nvmet_diff import (  # re-exported: the one name space callers use
    _change, _fmt_size, _onoff, changed_secrets, foreign_objects, managed_after, render, simulate,
)
from .nvmet_apply import (  # re-exported: the one name space callers use
    _apply_one, _check_size, _hint, _link_port, _makedirs_private, _oserr, _write_host,
    create_backing_file, grow_backing_file,
)

__all__ = [
    "CONFIGFS_ROOT", "CONFIG_NAME", "ConfigFS", "DEFAULT_MODEL", "DHCHAP_DHGROUP", "DHCHAP_HASH",
    "DUMP_COMMAND", "KINDS", "LIB_DIR", "MANAGED_KEYS", "MANAGED_NAME", "MAX_BACKING_SIZE",
    "NvmetError", "RESTORE_NAME", "RETRY_ERRNOS", "SECRET", "SECRET_CHANGED", "STATE_DIR",
    "SYS_MODULE_DIR", "UNIT_NAME", "_HEX32_RE", "_HOST_ATTRS", "_NQN_RE", "_NS_ATTRS",
    "_PORTNUM_RE", "_PORT_ATTRS", "_SUBSYS_ATTRS", "_UUID_RE", "_apply_one", "_bool", "_change",
    "_check_device_path", "_check_nqn", "_check_size", "_fmt_size", "_hint", "_host_record",
    "_link_port", "_ls", "_makedirs_private", "_norm_nguid", "_norm_uuid", "_ns_record", "_onoff",
    "_oserr", "_port_record", "_read", "_set_ns_attr", "_set_subsys_attr", "_sort_key",
    "_sorted_tree", "_str", "_subsys_record", "_unreadable", "_write_host", "ana_only_changes", "apply",
    "backing_file_problems", "changed_secrets", "config_text", "create_backing_file", "diff",
    "dump_command", "empty_tree", "files_command", "foreign_objects", "grow_backing_file",
    "load_json", "load_managed", "main", "managed_after", "managed_change", "managed_from",
    "managed_text", "missing_modules", "normalize", "ns_label", "obsolete_files", "parse_dump",
    "parse_files", "persist_changes", "persist_removal", "persistence_files", "probe_file", "probe_files", "public_change",
    "read_tree", "render", "sanitize", "secret_hash", "simulate", "template_vars",
]


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
    path = os.path.join(state_dir, MANAGED_NAME)
    return managed_from(load_json(path), path)


def managed_from(data, where=MANAGED_NAME):
    """The managed record from nvmet-managed.json's parsed JSON (None: no file): every key of
    ``MANAGED_KEYS`` a list of strings."""
    data = data or {}
    if not isinstance(data, dict):
        raise NvmetError("cannot read %s: not a JSON object" % where)
    out = {}
    for k in MANAGED_KEYS:
        v = data.get(k) or []
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise NvmetError("cannot read %s: %s is not a list of strings" % (where, k))
        out[k] = list(v)
    return out


def managed_text(managed):
    data = {k: list(managed.get(k) or []) for k in MANAGED_KEYS}
    data["version"] = 1
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def config_text(desired):
    """nvmet.json: the desired state, keys included (mode 0600)."""
    return json.dumps({"version": 1, "desired": desired}, indent=2, sort_keys=True) + "\n"


def template_vars(python, state_dir=STATE_DIR, lib_dir=LIB_DIR):
    """The values of the boot unit's template (``host_files`` key ``nvmet_unit``, the collection's
    templates/nvmeofctl-nvmet.service.j2, rendered on the controller). ``python``: the host's
    interpreter, which runs the boot program's ``nvmet`` command (bootapp.py) at boot."""
    return {"nvmet_unit": {"python": python, "program_path": os.path.join(lib_dir, BOOT_NAME),
                           "config_path": os.path.join(state_dir, CONFIG_NAME)}}


def persistence_files(desired, texts, program, state_dir=STATE_DIR, lib_dir=LIB_DIR, unit_dir=UNIT_DIR):
    """[(path, content, mode, secret)] that make the configuration survive a reboot.
    ``texts``: the rendered ``host_files`` (the unit); ``program``: the boot program's bytes
    (bootapp.build())."""
    persist.require_texts(texts, ("nvmet_unit",), "nvmet_target")
    return [
        (os.path.join(state_dir, CONFIG_NAME), config_text(desired), 0o600, True),
        (os.path.join(lib_dir, BOOT_NAME), program, 0o644, False),
        (os.path.join(unit_dir, UNIT_NAME), texts["nvmet_unit"], 0o644, False),
    ]


def obsolete_files(lib_dir=LIB_DIR):
    """Boot files earlier versions wrote and this one no longer uses (removed on apply)."""
    return [os.path.join(lib_dir, RESTORE_NAME)]


def persist_changes(desired, texts, program, state_dir=STATE_DIR, lib_dir=LIB_DIR, unit_dir=UNIT_DIR,
                    fs=persist.LOCAL):
    """Boot persistence: nvmet.json (0600, keys), the boot program, the unit (enabled); the
    restore program earlier versions copied is removed. ``fs``: the view of the host's files
    (persist.py); the module and the planner both call this. Returns (changes, states)."""
    files = [(path, content, mode,
              "holds the desired state incl. DH-HMAC-CHAP keys (<secret>)" if secret else None)
             for path, content, mode, secret in persistence_files(desired, texts, program, state_dir,
                                                                  lib_dir, unit_dir)]
    changes, states = persist.plan(files, unit_dir, UNIT_NAME, fs=fs)
    changes += persist.plan_removal(obsolete_files(lib_dir), reason="replaced by %s" % BOOT_NAME, fs=fs)
    return changes, states


CONNECT_UNIT = "nvmeofctl-connect.service"  # a GPU node's unit also runs the boot program


def persist_removal(state_dir=STATE_DIR, lib_dir=LIB_DIR, unit_dir=UNIT_DIR, fs=persist.LOCAL):
    """``persist: false``: disable the unit, remove nvmet.json (keys), the unit and the restore
    program of earlier versions, and the boot program unless a connect unit still uses it."""
    gone = [os.path.join(state_dir, CONFIG_NAME), os.path.join(unit_dir, UNIT_NAME)] + obsolete_files(lib_dir)
    if not fs.lexists(os.path.join(unit_dir, CONNECT_UNIT)):
        gone.append(os.path.join(lib_dir, BOOT_NAME))
    return persist.plan_removal(gone, unit_dir, UNIT_NAME, fs=fs)


def managed_change(state_dir, managed, fs=persist.LOCAL):
    """nvmet-managed.json holding ``managed``: (path, text, state, change or None)."""
    path = os.path.join(state_dir, MANAGED_NAME)
    text = managed_text(managed)
    state = fs.state(path, text, 0o644)
    if state == "current":
        return path, text, state, None
    return path, text, state, persist.file_change(
        path, state, "record the hosts, subsystems, ports and backing files nvmeofctl manages")


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
