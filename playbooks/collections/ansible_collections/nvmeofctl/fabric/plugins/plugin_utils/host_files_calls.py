# -*- coding: utf-8 -*-
# Copyright: nvmeofctl contributors
# Apache-2.0
"""Which boot files a call of nvmet_target, nvme_host or rdma_link writes, with which template
values (the modules' own ``template_vars``), and their rendered texts: the ``host_files`` option
the action plugin (host_files_action.py) passes to the module. No controller machinery here, so
the collection's tests run a module exactly as the action plugin would call it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import os

from ansible.module_utils.parsing.convert_bool import boolean
from ansible_collections.nvmeofctl.fabric.plugins.module_utils import nvme_host, nvmet, persist, rdma
from ansible_collections.nvmeofctl.fabric.plugins.plugin_utils.host_files import render_all

DEFAULT_PYTHON = "/usr/bin/python3"


def _path(args, name, default):
    value = args.get(name)
    return os.path.expanduser(os.path.expandvars(value)) if value else default


def _on(args, name):
    value = args.get(name)
    return True if value is None else boolean(value, strict=False)


def wanted(module_name, args, python):
    """``{host_files key: template variables}`` for a call of ``module_name`` (nvmet_target,
    nvme_host, rdma_link) with ``args``: with the role modules' ``rdma_rails``, each rail's own
    keys (``rdma_script@<interface>``, ``rdma_unit@<interface>``). Raises ValueError when the RDMA
    options are invalid (the module then reports them itself)."""
    out = {}
    links = [args] if module_name == "rdma_link" else [args.get("rdma") or {}]
    if module_name != "rdma_link":  # rails 2..N: element i is rail i + 2, whatever it says
        links += [dict(link or {}, rail=i + 2) for i, link in enumerate(args.get("rdma_rails") or [])]
    for link in links:
        if link and _on(link, "persist"):
            out.update(rdma.template_vars(rdma.normalize(link), _path(link, "lib_dir", rdma.LIB_DIR),
                                          _path(link, "configfs_root", rdma.CONFIGFS_ROOT)))
    if module_name == "nvmet_target" and _on(args, "persist"):
        out.update(nvmet.template_vars(python, _path(args, "state_dir", nvmet.STATE_DIR),
                                       _path(args, "lib_dir", nvmet.LIB_DIR)))
    if module_name == "nvme_host" and _on(args, "persist"):
        out.update(nvme_host.template_vars(python, _path(args, "state_dir", nvmet.STATE_DIR),
                                           _path(args, "lib_dir", persist.LIB_DIR)))
    return out


def host_files(module_name, args, python):
    """The ``host_files`` texts for the call (``{}`` when its RDMA options are invalid)."""
    try:
        return render_all(wanted(module_name, args, python))
    except (ValueError, TypeError):
        return {}
