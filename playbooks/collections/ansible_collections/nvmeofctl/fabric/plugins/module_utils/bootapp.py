# -*- coding: utf-8 -*-
# Copyright: nvmeofctl contributors
# Apache-2.0
"""The boot-time program: ONE zipapp built from this package's own sources.

``/usr/local/lib/nvmeofctl/nvmeofctl-boot.pyz`` holds the module_utils the boot units need
(nvmet, nvme_host and what they import) as the package ``nvmeofctl_boot``, and a ``__main__``
that dispatches::

    python3 nvmeofctl-boot.pyz nvmet --config /etc/nvmeofctl/nvmet.json      (nvmeofctl-nvmet.service)
    python3 nvmeofctl-boot.pyz nvme-host connect-all /etc/nvmeofctl/connections.json --retry-for 600
                                                                        (nvmeofctl-connect.service)

The sources are read through the importing loader (``get_source``), so the same bytes come out
whether this package was imported from files (controller, tests) or from the AnsiballZ zip a
module runs from. The archive is deterministic (sorted entries, fixed timestamps and modes, no
compression): a second apply sees the file current and changes nothing.

The imports below are static on purpose: AnsiballZ ships only the module_utils a module imports,
so every module that writes the program imports this file and with it all the sources.
Stdlib only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import io
import re
import sys
import zipfile

from .fileio import to_bytes
from .nvme_host import main as _nvme_host_main
from .nvmet import main as _nvmet_main
from .persist import BOOT_NAME

PACKAGE = "nvmeofctl_boot"
# the commands' modules; the sibling modules they import (relatively) come along
_ENTRY_POINTS = (_nvme_host_main, _nvmet_main)
_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: no build time in the bytes

MAIN = '''"""nvmeofctl boot-time program (built by nvmeofctl.fabric's bootapp.py; do not edit)."""
import sys

USAGE = """usage: python3 %(name)s COMMAND [ARGS...]

commands:
  nvmet [--config FILE] ...               re-apply the nvmet target configuration (boot-time restore)
  nvme-host connect-all CONFIG [--retry-for SECONDS] | dump
                                          connect this node's NVMe-oF paths, retrying until they are up
Run a command with --help for its options.
"""


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        (sys.stdout if argv else sys.stderr).write(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "nvmet":
        from %(pkg)s import nvmet
        return nvmet.main(rest)
    if cmd == "nvme-host":
        from %(pkg)s import nvme_host
        return nvme_host.main(rest)
    sys.stderr.write("unknown command %%r\\n" %% cmd + USAGE)
    return 2


sys.exit(main(sys.argv[1:]))
''' % {"name": BOOT_NAME, "pkg": PACKAGE}


def _source(modname):
    """The source text of the loaded module ``modname`` (files, or the AnsiballZ zip)."""
    mod = sys.modules[modname]
    loader = getattr(mod, "__loader__", None)
    if loader is not None and hasattr(loader, "get_source"):
        try:
            src = loader.get_source(modname)
        except (ImportError, OSError):
            src = None
        if src:
            return src
    with open(mod.__file__, "r", encoding="utf-8") as f:
        return f.read()


# ``from .x import ...`` / ``from . import x, y`` at the start of a line
_REL_IMPORT_RE = re.compile(r"^[ \t]*from[ \t]+\.([A-Za-z_][A-Za-z0-9_]*)?[ \t]+import[ \t]+([^#\n]*)", re.M)


def _sibling_imports(text):
    """Short names of the sibling modules ``text`` imports (``from .x import``, ``from . import x``).

    A line scan, not ``ast``: parsing and walking every source took 2.5-4.8 s per module run on
    the lab's emulated hosts. Parenthesised multi-line ``from . import (...)`` is not read; the
    unit tests check that this finds exactly what ``ast`` finds in every module_utils file."""
    out = set()
    for module, names in _REL_IMPORT_RE.findall(text):
        if module:
            out.add(module)
            continue
        for name in names.split(","):
            name = name.strip().strip("()").split(" as ")[0].strip()
            if name:
                out.add(name)
    return out


def sources():
    """{short name: source text} of the module_utils in the program: the commands' modules and,
    transitively, every sibling they import."""
    package = __name__.rsplit(".", 1)[0]
    out = {}
    todo = sorted(fn.__module__.rsplit(".", 1)[-1] for fn in _ENTRY_POINTS)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out[name] = _source("%s.%s" % (package, name))
        todo += sorted(_sibling_imports(out[name]) - set(out))
    return out


def build(srcs=None):
    """The program's bytes: a zip (stored, sorted, fixed dates and modes) of ``__main__.py`` and
    ``nvmeofctl_boot/<name>.py`` for each source."""
    srcs = sources() if srcs is None else srcs
    entries = {"__main__.py": MAIN, PACKAGE + "/__init__.py": '"""nvmeofctl boot-time modules."""\n'}
    for name, text in srcs.items():
        entries["%s/%s.py" % (PACKAGE, name)] = text
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # unix, so the mode below is what readers see
            info.external_attr = (0o100644 & 0xFFFF) << 16
            zf.writestr(info, to_bytes(entries[name]))
    return buf.getvalue()
