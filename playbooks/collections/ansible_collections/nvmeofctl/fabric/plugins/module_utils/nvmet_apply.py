# -*- coding: utf-8 -*-
"""nvmet: applying changes to configfs (``ConfigFS``, ``apply``, backing files).

Part of ``nvmet`` (module_utils/nvmet.py re-exports every name; see its docstring for the
data shapes and the kernel rules). Stdlib only.
"""

from __future__ import annotations

import errno
import os
import stat
import time

from .change import public as public_change
from .fileio import makedirs_private
from .nvmet_model import (
    CONFIGFS_ROOT, DHCHAP_DHGROUP, DHCHAP_HASH, MAX_BACKING_SIZE, NvmetError, RETRY_ERRNOS,
    _HOST_ATTRS,
)
from .nvmet_observe import _ls, _read


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


def _unlink_all(fs, *folder):
    """Remove every symlink in a configfs folder (allowed_hosts, a port's subsystems)."""
    for name in fs.listdir(*folder):
        fs.unlink(*(folder + (name,)))


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
            _unlink_all(fs, "subsystems", nqn, "allowed_hosts")
            for nsid in fs.listdir("subsystems", nqn, "namespaces"):
                fs.rmdir("subsystems", nqn, "namespaces", nsid)
            fs.rmdir("subsystems", nqn)
            return
        want = desired["subsystems"][nqn]
        if action == "create":
            fs.mkdir("subsystems", nqn)
            attrs = ["allow_any_host", "serial", "model", "cntlid_min", "cntlid_max"]
        if want.get("cntlid_min") is not None and want.get("cntlid_max") is not None \
                and "cntlid_min" in attrs and "cntlid_max" in attrs:
            # the kernel refuses a min above the current max (and a max below the current min)
            cur_max = fs.read("subsystems", nqn, "attr_cntlid_max")
            if cur_max and cur_max.isdigit() and want["cntlid_min"] > int(cur_max):
                attrs = [a for a in attrs if a != "cntlid_min"] + ["cntlid_min"]
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
            attrs = ["device_path", "device_uuid", "device_nguid", "ana_grpid", "enable"]
        if "ana_grpid" in attrs and want.get("ana_grpid") is not None:
            fs.write(want["ana_grpid"], *ns_parts, "ana_grpid")  # allowed while enabled
        dev_attrs = [a for a in attrs if a not in ("enable", "ana_grpid")]
        if dev_attrs and fs.read(*ns_parts, "enable") == "1":
            fs.write("0", *ns_parts, "enable")
        for a in dev_attrs:
            if want.get(a) is not None:
                fs.write(want[a], *ns_parts, a)
        if "enable" in attrs:
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
            _unlink_all(fs, "ports", pid, "subsystems")
            # ANA groups made by mkdir keep the port (ENOTEMPTY); group 1 is the kernel's own
            for grpid in fs.listdir("ports", pid, "ana_groups"):
                if grpid != "1":
                    fs.rmdir("ports", pid, "ana_groups", grpid)
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
    elif kind == "ana_group":
        pid, grpid = key
        if action == "delete":
            fs.rmdir("ports", pid, "ana_groups", grpid)
            return
        if action == "create":
            fs.mkdir("ports", pid, "ana_groups", grpid)
        fs.write(desired["ports"][pid]["ana_groups"][grpid], "ports", pid, "ana_groups", grpid, "ana_state")
    elif kind == "port_link":
        pid, nqn = key
        if action == "create":
            _link_port(fs, pid, nqn, deadline)
        else:
            fs.unlink("ports", pid, "subsystems", nqn)
    else:
        raise NvmetError("unknown change kind %r" % kind)
