# -*- coding: utf-8 -*-
# Copyright: nvmeofctl contributors
# Apache-2.0
"""The one shape of a change, for every domain (nvmet, nvme_host, rdma) and for the planner.

A change is a plain dict::

    {"object": str, "action": str, "detail": str, "disruptive": bool, "reason": str, ...}

Domains add their own public fields (``kind``, ``key``). What the apply step needs to carry out
a change travels WITH it, in private fields (``op``: what to execute, may hold secrets or file
contents; ``attrs``/``recreate``: nvmet's attribute lists), so nothing is matched by index.
``public`` drops the private fields: results, diffs and the planner only ever see that.

Stdlib only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

PRIVATE = ("op", "attrs", "recreate")


def change(obj, action, detail, reason, disruptive=False, **extra):
    """A change dict; ``extra`` adds domain fields (``kind``, ``key``) and the private ``op``."""
    ch = {"object": obj, "action": action, "detail": detail, "disruptive": bool(disruptive),
          "reason": reason}
    ch.update(extra)
    return ch


def public(ch):
    """The change as users see it: without the private fields."""
    return {k: v for k, v in ch.items() if k not in PRIVATE}


def op_of(ch):
    """What to execute for ``ch`` (its private ``op``), or {}."""
    return ch.get("op") or {}
