# -*- coding: utf-8 -*-
# Copyright: nvmeofctl contributors
# Apache-2.0
"""The action plugin of nvmet_target, nvme_host and rdma_link: renders the module's boot files
from the collection's templates/ on the controller (host_files.py) and runs the module with the
texts as its ``host_files`` option. No extra round trip: the module still runs once per host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

from ansible.plugins.action import ActionBase
from ansible_collections.nvmeofctl.fabric.plugins.plugin_utils.host_files_calls import DEFAULT_PYTHON, host_files


class HostFilesAction(ActionBase):
    """Subclassed once per module (``MODULE``)."""

    MODULE = None
    _supports_check_mode = True
    _supports_async = False

    def _python(self, task_vars):
        """The interpreter the boot units run the boot program with: the host's
        ``ansible_python_interpreter`` when it is an absolute path, else the one interpreter
        discovery found, else /usr/bin/python3."""
        for value in (task_vars.get("ansible_python_interpreter"),
                      (task_vars.get("ansible_facts") or {}).get("discovered_interpreter_python")):
            if isinstance(value, str):
                value = self._templar.template(value)
                if isinstance(value, str) and value.startswith("/"):
                    return value
        return DEFAULT_PYTHON

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(HostFilesAction, self).run(tmp, task_vars)
        args = dict(self._task.args)
        if not args.get("host_files"):
            args["host_files"] = host_files(self.MODULE, args, self._python(task_vars))
        result.update(self._execute_module(module_name="nvmeofctl.fabric.%s" % self.MODULE,
                                           module_args=args, task_vars=task_vars))
        return result
