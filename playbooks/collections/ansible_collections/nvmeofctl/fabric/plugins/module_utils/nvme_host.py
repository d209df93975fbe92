# -*- coding: utf-8 -*-
# Copyright: nvmeofctl contributors
# Apache-2.0
"""NVMe-oF initiator (GPU node) state: read, diff, connect, persist.

Stdlib only, no Ansible; shared pieces (fileio, change, persist) come from sibling module_utils by
relative import. The ``nvmeofctl`` package imports it (module_utils package) for its pure
planner, the ``nvme_host`` module imports it, and the boot-time program built from it runs
``connect-all CONFIG`` (see ``main``).

The code is split by concern, and this module re-exports every name (callers use
``nvme_host.X``): ``nvme_host_state`` (constants, paths, observed state), ``nvme_host_plan``
(desired state, plan, redaction, output), ``nvme_host_ops`` (commands); the boot-time files and
``connect_all``/``main`` live here.

State comes from sysfs, never from nvme-cli JSON (its shape changed in 2.11 and again in 3.x).
DH-HMAC-CHAP secrets are read from sysfs only to be turned into booleans or compared in place;
they never enter a returned structure, a message or a log line.
"""

from __future__ import annotations

import json
import os
import sys
import time

from . import persist
from .persist import BOOT_NAME
from .nvme_host_ops import _state_at, connect, ensure_modules, find_controllers, run
from .nvme_host_plan import _secrets_of, conn_key, key_in_scope, key_label, normalize_desired, redact
from .nvme_host_state import CONNECTIONS_FILE, paths_for, read_state
from .nvme_host_state import (  # re-exported: the one name space callers use
    BLOCK_ATTRS, CTRL_ATTRS, DISCOVERY_NQN, DUMP_COMMAND, FABRICS_TRANSPORTS, GONE_STATES,
    IOPOLICIES, MANAGED_FILE, NS_ATTRS, SECRET_ATTRS, TRANSPORT_MODULES, UNIT_NAME, _CTRL_RE,
    _DumpTree, _FsTree, _INT_ATTRS, _NS_RE, _SUBSYS_RE, _build_state, _hex, _secret_flag, _shq,
    _to_int, dump_command, expected_ctrl_loss_tmo, parse_address, parse_dump, secret_digest,
)
from .nvme_host_plan import (  # re-exported: the one name space callers use
    REKEY_STATES, _DHHC_RE, _REKEY_DIFFS, _SECRET_ARG_RE, _change, _ctrl_sort, _mismatches,
    _policy_text, _tmo, ctrl_key, describe_desired, describe_observed, diff, in_scope, plan,
    public_controllers, render,
)
from .nvme_host_ops import (  # re-exported: the one name space callers use
    DISCONNECT_TIMEOUT, FABRICS_DEV, REKEY_WAIT, _AUTH_FAILED_RE, _AUTH_TIMEOUT_RE, _CLASSES,
    _FABRICS_WRITER, _KMSG_RE, _OPT_VALUE_RE, _explain_auth, auth_evidence, classify, connect_argv,
    controller_state, disconnect, fabrics_argv, fabrics_options, rekey, uptime,
)
from .change import public as public_change  # re-exported

__all__ = [
    "BLOCK_ATTRS", "CONNECTIONS_FILE", "CTRL_ATTRS", "DISCONNECT_TIMEOUT", "DISCOVERY_NQN",
    "DUMP_COMMAND", "FABRICS_DEV", "FABRICS_TRANSPORTS", "GONE_STATES", "IOPOLICIES",
    "MANAGED_FILE", "NS_ATTRS", "REKEY_STATES", "REKEY_WAIT", "SECRET_ATTRS", "TRANSPORT_MODULES",
    "UNIT_NAME", "_AUTH_FAILED_RE", "_AUTH_TIMEOUT_RE", "_CLASSES", "_CTRL_RE", "_DHHC_RE",
    "_DumpTree", "_FABRICS_WRITER", "_FsTree", "_INT_ATTRS", "_KMSG_RE", "_NS_RE", "_OPT_VALUE_RE",
    "_REKEY_DIFFS", "_SECRET_ARG_RE", "_SUBSYS_RE", "_build_state", "_change", "_ctrl_sort",
    "_explain_auth", "_hex", "_mismatches", "_policy_text", "_secret_flag", "_secrets_of", "_shq",
    "_state_at", "_tmo", "_to_int", "auth_evidence", "classify", "conn_key", "connect",
    "connect_all", "connect_argv", "connections_config", "controller_state", "ctrl_key",
    "describe_desired", "describe_observed", "diff", "disconnect", "dump_command", "ensure_modules",
    "expected_ctrl_loss_tmo", "fabrics_argv", "fabrics_options", "file_changes", "find_controllers", "in_scope",
    "key_in_scope",
    "key_label", "main", "managed_record", "normalize_desired", "parse_address", "parse_dump", "paths_for",
    "plan", "public_change", "public_controllers", "read_state", "redact", "rekey", "render", "run",
    "secret_digest", "set_iopolicy", "template_vars", "uptime",
]


# --------------------------------------------------------------------------- files
def managed_record(desired, managed=None):
    """initiator-managed.json: the connections nvmeofctl made here. A run scoped with ``only`` /
    ``only_traddr`` keeps what was recorded outside its scope (``managed``: the record as read),
    so a later run can still remove those paths; in scope, the desired connections replace it."""
    d = normalize_desired(desired)
    keys = {conn_key(c) for c in d["connections"]}
    if d["only"] is not None or d["only_traddr"] is not None:
        keys |= {tuple(k) for k in (managed or []) if not key_in_scope(tuple(k), d)}
    keys = sorted(keys)
    return json.dumps({"version": 1, "connections": [list(k) for k in keys]}, sort_keys=True) + "\n"


def connections_config(desired):
    """The boot-time config (holds secrets: write it 0600)."""
    cfg = normalize_desired(desired)
    del cfg["only"], cfg["only_traddr"]  # the boot-time connect-all makes every connection of the file
    return json.dumps(dict(cfg, version=1), sort_keys=True, indent=1) + "\n"


def template_vars(python, state_dir, lib_dir, retry_for=600):
    """The values of the boot unit's template (``host_files`` key ``connect_unit``, the
    collection's templates/nvmeofctl-connect.service.j2, rendered on the controller): the boot
    program's ``nvme-host connect-all`` connects at boot and retries for ``retry_for`` seconds
    (nvme-cli's nvmf-autoconnect is one-shot, nvme-cli #2800)."""
    return {"connect_unit": {"python": python, "program_path": os.path.join(lib_dir, BOOT_NAME),
                             "connections_path": os.path.join(state_dir, CONNECTIONS_FILE),
                             "retry_for": int(retry_for)}}


LEGACY_HELPER = "nvme_host.py"  # the boot-time helper earlier versions copied (removed on apply)
NVMET_UNIT = "nvmeofctl-nvmet.service"  # a target's unit also runs the boot program


def file_changes(desired, program, texts, state_dir, lib_dir, unit_dir, persist_on=True, fs=persist.LOCAL,
                 managed=None):
    """Changes for the managed-connections record and the boot persistence (persist.py):
    the boot program (``program``: bootapp.build()), connections.json (0600, secrets), the unit
    (``texts``: the rendered ``host_files``), enabled; or, with ``persist_on`` false, their
    removal. ``fs``: the view of the host's files; the module and the planner both call this."""
    changes, _states = persist.plan([(os.path.join(state_dir, MANAGED_FILE), managed_record(desired, managed), 0o644,
                                      "connections nvmeofctl manages here (removing one from the spec "
                                      "disconnects it)")], fs=fs)
    if persist_on:
        persist.require_texts(texts, ("connect_unit",), "nvme_host")
        pchanges, _states = persist.plan([
            (os.path.join(lib_dir, BOOT_NAME), program, 0o644, "boot-time program (connect-all)"),
            (os.path.join(state_dir, CONNECTIONS_FILE), connections_config(desired), 0o600,
             "boot-time connections (holds DH-HMAC-CHAP secrets)"),
            (os.path.join(unit_dir, UNIT_NAME), texts["connect_unit"], 0o644,
             "connect at boot and retry until the target is up (nvme-cli #2800)"),
        ], unit_dir, UNIT_NAME, fs=fs)
        # the helper earlier versions copied (now the boot program's `nvme-host` command)
        pchanges += persist.plan_removal([os.path.join(lib_dir, LEGACY_HELPER)],
                                         reason="replaced by %s" % BOOT_NAME, fs=fs)
    else:
        gone = [os.path.join(unit_dir, UNIT_NAME), os.path.join(state_dir, CONNECTIONS_FILE),
                os.path.join(lib_dir, LEGACY_HELPER)]
        if not fs.lexists(os.path.join(unit_dir, NVMET_UNIT)):  # the program is shared with nvmet's unit
            gone.append(os.path.join(lib_dir, BOOT_NAME))
        pchanges = persist.plan_removal(gone, unit_dir, UNIT_NAME, fs=fs)
    return changes + pchanges


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
