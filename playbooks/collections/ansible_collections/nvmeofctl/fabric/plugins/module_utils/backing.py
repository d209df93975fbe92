# -*- coding: utf-8 -*-
"""Is a block device safe to export? Checks ``nvmet_target`` runs before it creates a namespace
on a device or changes a namespace's device_path.

Stdlib only, imports nothing else of the collection. Imported by the ``nvmet_target`` module
only, deliberately not part of ``nvmet.py``:
  * ``nvmet.py`` is also the boot-time restore program. At boot the devices it re-exports rightly
    hold the GPU nodes' filesystems (made through the fabric after the first export), so these
    checks would refuse every healthy namespace there; they belong to the moment a device is
    first handed to nvmet, which only the module sees.
  * the planner loads ``nvmet.py`` for its pure diff; it has no business probing devices.

A device is refused when it is not a block device; when it holds the root filesystem or is part
of the root disk; when it, a partition of it, or (for a partition) its disk is mounted; when
something is stacked on it (``holders`` in sysfs: LVM, md, dm-crypt, ...); and when a low-level
``blkid -p`` probe finds a filesystem, RAID/LVM signature or partition table other than the
one the spec names (``backing.signature``).

Everything on the host is reached through injected seams (``proc_root``, ``sys_root``, the root
path, a ``stat`` function and a command runner), so tests run the same code over fake trees.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import stat as _stat

from .fileio import list_dir, read_text

PROC_ROOT = "/proc"
SYS_ROOT = "/sys"

# blkid exit codes (blkid(8)): 2 = nothing found, 8 = ambivalent low-level probing result
BLKID_NOTHING = 2
BLKID_AMBIVALENT = 8


# -- parsers (pure) -------------------------------------------------------------------------------


def _unoctal(text):
    """Undo the kernel's octal escapes in mountinfo fields (\\040 = space, \\134 = backslash)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def parse_mountinfo(text):
    """[(\"MAJ:MIN\", mount point)] from /proc/self/mountinfo (proc(5): field 3 is major:minor,
    field 5 the mount point)."""
    out = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) < 5 or not re.fullmatch(r"[0-9]+:[0-9]+", fields[2]):
            continue
        out.append((fields[2], _unoctal(fields[4])))
    return out


def parse_blkid_export(text):
    """{KEY: value} from ``blkid -o export`` (values are backslash-escaped for the shell)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and re.fullmatch(r"[A-Z0-9_]+", key):
            out[key] = re.sub(r"\\(.)", r"\1", value)
    return out


def _article(word):
    return "an" if word[:1].lower() in "aeiox" or word[:2].isupper() and word[:1] in "FHLMNRSX" else "a"


def signature_reasons(probe, signature=None):
    """Why the signatures in a parsed ``blkid -p -o export`` result refuse the device: every
    TYPE (filesystem, RAID/LVM member, swap, ...) and PTTYPE (partition table) that is not
    ``signature``."""
    out = []
    hint = " (set backing.signature: %s in the spec to export it anyway)"
    typ, usage, pttype = probe.get("TYPE"), probe.get("USAGE"), probe.get("PTTYPE")
    if typ and typ != signature:
        if usage == "filesystem":
            what = "%s %s filesystem" % (_article(typ), typ)
        else:
            what = "%s %s signature%s" % (_article(typ), typ, " (%s)" % usage if usage else "")
        out.append("holds " + what + hint % typ)
    if pttype and pttype != signature:
        out.append("holds %s %s partition table" % (_article(pttype), pttype) + hint % pttype)
    return out


# -- the probe --------------------------------------------------------------------------------------


_read = read_text  # sysfs attribute, stripped; None when unreadable
_ls = list_dir


class BlockProbe:
    """The checks for one host. ``run(argv) -> (rc, stdout, stderr)`` runs a command (no shell);
    ``blkid`` is the path of blkid, or None when it is not installed (then every device is
    refused: it cannot be checked for signatures)."""

    def __init__(self, run, blkid="blkid", proc_root=PROC_ROOT, sys_root=SYS_ROOT, root="/", stat=os.stat):
        self.run = run
        self.blkid = blkid
        self.proc_root = proc_root
        self.sys_root = sys_root
        self.root = root
        self.stat = stat

    # -- sysfs ----------------------------------------------------------------------------------

    def sysdir(self, majmin):
        """The device's directory in sysfs (resolved /sys/dev/block/MAJ:MIN), or None."""
        p = os.path.join(self.sys_root, "dev", "block", majmin)
        return os.path.realpath(p) if os.path.exists(p) else None

    @staticmethod
    def is_partition(d):
        return os.path.isfile(os.path.join(d, "partition"))

    def disk_of(self, d):
        return os.path.dirname(d) if self.is_partition(d) else d

    def partitions(self, disk):
        return [os.path.join(disk, n) for n in _ls(disk) if os.path.isfile(os.path.join(disk, n, "partition"))]

    @staticmethod
    def majmin(d):
        return _read(os.path.join(d, "dev"))

    @staticmethod
    def devname(d):
        return "/dev/" + os.path.basename(d).replace("!", "/")

    def holders(self, d):
        out = []
        for h in _ls(os.path.join(d, "holders")):
            dm = _read(os.path.join(self.sys_root, "class", "block", h, "dm", "name"))
            out.append("%s (%s)" % (h, dm) if dm else h)
        return out

    def root_device(self):
        """(\"MAJ:MIN\" of the root filesystem, {sysfs dirs of the disks it lives on})."""
        st = self.stat(self.root)
        mm = "%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev))
        disks, seen = set(), set()
        start = self.sysdir(mm)
        stack = [start] if start else []
        while stack:  # through device-mapper / md (slaves) down to the disks
            d = stack.pop()
            if d in seen:
                continue
            seen.add(d)
            slaves = _ls(os.path.join(d, "slaves"))
            for s in slaves:
                p = os.path.join(self.sys_root, "class", "block", s)
                if os.path.exists(p):
                    stack.append(os.path.realpath(p))
            if not slaves:
                disks.add(self.disk_of(d))
        return mm, disks

    # -- the check ------------------------------------------------------------------------------

    def problem(self, path, signature=None):
        """None when ``path`` may be exported, else "<device> <reason>" (one line)."""
        real = os.path.realpath(path)
        dev = path if real == path else "%s (%s)" % (path, real)
        try:
            st = self.stat(real)
        except FileNotFoundError:
            return "%s does not exist" % dev
        except OSError as e:
            return "%s cannot be checked: %s" % (dev, e.strerror or e)
        if not _stat.S_ISBLK(st.st_mode):
            return "%s is not a block device (a device backing must be one; use a file backing " \
                   "for an image file nvmeofctl creates)" % dev
        mm = "%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
        d = self.sysdir(mm)
        if d is None:
            return "%s (block device %s) is not in %s/dev/block: cannot check it" % (dev, mm, self.sys_root)
        disk = self.disk_of(d)
        part = d != disk

        # the root filesystem and its disk(s)
        try:
            root_mm, root_disks = self.root_device()
        except OSError as e:
            return "%s: cannot find the root filesystem's device (%s)" % (dev, e.strerror or e)
        if mm == root_mm:
            return "%s holds the root filesystem" % dev
        if disk in root_disks:
            if part:
                return "%s is part of the root disk %s" % (dev, self.devname(disk))
            return "%s is the root disk (the root filesystem lives on it)" % dev

        # mounted: the device, its partitions, or (a partition) its disk
        family = {mm: None}
        if part:
            family[self.majmin(disk)] = "is a partition of %s, which is mounted at %%s" % self.devname(disk)
        else:
            for p in self.partitions(d):
                family[self.majmin(p)] = "has partition %s mounted at %%s" % self.devname(p)
        text = _read(os.path.join(self.proc_root, "self", "mountinfo"))
        if text is None:
            return "%s: cannot read %s/self/mountinfo to check mounts" % (dev, self.proc_root)
        for m, where in parse_mountinfo(text):
            if m in family:
                how = family[m] or "is mounted at %s"
                return "%s %s" % (dev, how % where)

        # stacked devices (LVM, md, dm-crypt, ...)
        for sd, what in [(d, "is")] + ([(disk, "is a partition of %s, which is" % self.devname(disk))] if part else
                                       [(p, "has partition %s" % self.devname(p)) for p in self.partitions(d)]):
            held = self.holders(sd)
            if held:
                return "%s %s in use by %s (holders in sysfs: LVM, md RAID or device-mapper on top)" \
                       % (dev, what, ", ".join(held))

        # signatures: low-level probe of the device itself, no cache
        if not self.blkid:
            return "%s cannot be probed for filesystem signatures: blkid (util-linux) not found" % dev
        try:
            rc, out, err = self.run([self.blkid, "-p", "-o", "export", real])
        except OSError as e:
            return "%s cannot be probed: blkid failed to run (%s)" % (dev, e.strerror or e)
        if rc == BLKID_NOTHING:
            return None
        if rc == BLKID_AMBIVALENT:
            return "%s holds several conflicting signatures (blkid -p: ambivalent result); " \
                   "check it with wipefs -n" % dev
        if rc != 0:
            return "%s cannot be probed (blkid -p exited %d: %s)" % (
                dev, rc, " ".join((err or out or "").split())[:200])
        reasons = signature_reasons(parse_blkid_export(out), signature)
        return "%s %s" % (dev, reasons[0]) if reasons else None


def namespaces_to_check(desired, observed):
    """[(nqn, nsid, ns)] of device-backed namespaces (no ``create_file``) that the next apply
    creates or points at another device: the only moments a device is handed to nvmet. An
    unchanged namespace is not re-checked: its device rightly holds the GPU nodes' data by now."""
    out = []
    for nqn, sub in desired.get("subsystems", {}).items():
        have = observed.get("subsystems", {}).get(nqn, {}).get("namespaces", {})
        for nsid, ns in sub.get("namespaces", {}).items():
            if ns.get("create_file"):
                continue
            on = have.get(nsid)
            if on is None or on.get("device_path") != ns["device_path"]:
                out.append((nqn, nsid, ns))
    return out
