# -*- coding: utf-8 -*-
# Copyright: nvmeofctl contributors
# Apache-2.0
"""The host files nvmeofctl writes (systemd units, the RDMA restore script), rendered from the
collection's ``templates/`` with jinja2.

Controller side only: the action plugins of ``nvmet_target``, ``nvme_host`` and ``rdma_link``
render them and hand the texts to the module as its ``host_files`` option (the hosts' Python has
no jinja2), and nvmeofctl's planner renders the same texts to compare their digests with what a
host has. The values come from the modules' own ``template_vars`` functions (module_utils), so
one renderer and one set of values serve the module, the plan and a plain ``ansible-playbook``.
Imports nothing from the collection, so nvmeofctl can load it by path.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

import os
import shlex

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                             "templates")

# host_files key -> template file (a key ``base@suffix``, an RDMA rail 2..N's ``rdma_script@<interface>``
# or ``rdma_unit@<interface>``, is rendered from the template of ``base``)
TEMPLATES = {
    "rdma_script": "nvmeofctl-rdma.sh.j2",
    "rdma_unit": "nvmeofctl-rdma.service.j2",
    "nvmet_unit": "nvmeofctl-nvmet.service.j2",
    "connect_unit": "nvmeofctl-connect.service.j2",
}

_ENV = []


def systemd_escape(name):
    """``systemd-escape`` of a path component (``-`` becomes ``\\x2d``)."""
    out = []
    for i, ch in enumerate(name):
        if ch == "/":
            out.append("-")
        elif (ch.isascii() and ch.isalnum()) or ch in ":_" or (ch == "." and i > 0):
            out.append(ch)
        else:
            out.append("\\x%02x" % ord(ch))
    return "".join(out)


def environment():
    """The one jinja2 environment: strict (an unset value is an error, never an empty string),
    no autoescape (these are shell and unit files; shell values go through ``quote``)."""
    if not _ENV:
        env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), undefined=StrictUndefined,
                          keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                          autoescape=False)
        env.filters["quote"] = shlex.quote
        env.filters["systemd_escape"] = systemd_escape
        _ENV.append(env)
    return _ENV[0]


def render(key, variables):
    """The text of the host file ``key`` (a key of ``TEMPLATES``, or ``base@suffix`` for the template
    of ``base``) for ``variables``."""
    return environment().get_template(TEMPLATES[key.partition("@")[0]]).render(**variables)


def render_all(wanted):
    """``{key: text}`` for ``wanted``: ``{key: variables}`` (``template_vars`` of the modules)."""
    return {key: render(key, variables) for key, variables in wanted.items()}
