# -*- coding: utf-8 -*-
"""NVMe host: commands (connect, disconnect, rekey, kernel modules) and their outcomes.

Part of ``nvme_host`` (module_utils/nvme_host.py re-exports every name; see its docstring).
Stdlib only; DH-HMAC-CHAP secrets never enter a returned structure, a message or a log line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

from .nvme_host_plan import _ctrl_sort, conn_key, ctrl_key, key_label, redact
from .nvme_host_state import GONE_STATES, TRANSPORT_MODULES, _FsTree, _build_state


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
