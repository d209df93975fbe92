# -*- coding: utf-8 -*-
# Copyright: nvmeofctl contributors
# Apache-2.0
"""Renders nvme_host's boot files from the collection's templates/ on the controller, then runs the
module (plugin_utils/host_files_action.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # pylint: disable=invalid-name

from ansible_collections.nvmeofctl.fabric.plugins.plugin_utils.host_files_action import HostFilesAction


class ActionModule(HostFilesAction):
    MODULE = "nvme_host"
