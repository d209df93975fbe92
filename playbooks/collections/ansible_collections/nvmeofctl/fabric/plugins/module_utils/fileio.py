# -*- coding: utf-8 -*-
# Copyright: nvmeofctl contributors
# Apache-2.0
"""Files nvmeofctl keeps on hosts: one comparison, one atomic write, private directories.

Stdlib only. Every domain (nvmet, nvme_host, rdma) writes its state, configs, boot program and
units through here, so they behave alike: a file is replaced atomically (a temporary file in the
same directory, created 0600 and given its final mode before any byte is written, fsynced,
renamed over the target), and the temporary file is removed when anything fails.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import tempfile

TMP_SUFFIX = ".nvmeofctl-tmp"


def to_bytes(content):
    return content if isinstance(content, bytes) else content.encode("utf-8")


def file_state(path, content, mode):
    """"absent", "outdated" (content or mode differ, or unreadable) or "current"."""
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            have = f.read()
    except FileNotFoundError:
        return "absent"
    except OSError:
        return "outdated"
    if have != to_bytes(content) or (st.st_mode & 0o7777) != mode:
        return "outdated"
    return "current"


def differs(path, content, mode):
    """True unless ``path`` holds exactly ``content`` with exactly ``mode``."""
    return file_state(path, content, mode) != "current"


def read_text(path, strip=True):
    """A sysfs/configfs attribute or small file as text (stripped), None when unreadable
    (absent, write-only, EINVAL, vanished)."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    return text.strip() if strip else text


def list_dir(path):
    """Sorted names in ``path``; [] when it is absent or unreadable."""
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def write_atomic(path, content, mode, dir_mode=0o755):
    """Replace ``path`` by ``content`` (str or bytes) with ``mode``, atomically.

    The temporary file has ``mode`` before any byte is written (secrets) and is removed if the
    write, the fsync or the rename fails.
    """
    data = to_bytes(content)
    d = os.path.dirname(path) or "."
    os.makedirs(d, mode=dir_mode, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=TMP_SUFFIX, dir=d)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_file(path, content, mode):
    """Write ``path`` atomically if its content or mode differ. Returns whether it changed."""
    if file_state(path, content, mode) == "current":
        return False
    write_atomic(path, content, mode)
    return True


def remove_file(path):
    """Remove ``path`` (a file or a symlink) if present. Returns whether it existed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def makedirs_private(d):
    """Create the missing directories of absolute path ``d``, each mode 0700 (existing ones are
    left as they are). Raises NotADirectoryError when a component exists and is not one."""
    missing = []
    while not os.path.isdir(d):
        if os.path.lexists(d):
            raise NotADirectoryError("%s exists and is not a directory" % d)
        missing.append(d)
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    for m in reversed(missing):
        try:
            os.mkdir(m, 0o700)
        except FileExistsError:
            if not os.path.isdir(m):
                raise
