# -*- coding: utf-8 -*-
# Copyright: nvmeofctl contributors
# Apache-2.0
"""The ``host_files`` option (module_utils/persist.py HOST_FILES_SPEC) of nvmet_target, nvme_host
and rdma_link: the texts their action plugins render from the collection's templates/."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  host_files:
    description:
      - The texts of the boot files the module writes with O(persist), rendered on the controller
        from the collection's C(templates/) (jinja2) by the module's action plugin, which fills
        this option in. Leave it unset; it is documented because it is the contract between the
        action plugin and the module (the hosts' Python has no jinja2).
      - A module run with O(persist) fails before changing anything when a text it needs is
        missing.
      - The keys are C(rdma_script) and C(rdma_unit), the RDMA link's boot script and systemd
        unit (C(templates/nvmeofctl-rdma.sh.j2), C(templates/nvmeofctl-rdma.service.j2)), and for
        each RDMA rail 2 and up C(rdma_script@<interface>) and C(rdma_unit@<interface>) (the same
        templates); C(nvmet_unit), the target's systemd unit
        (C(templates/nvmeofctl-nvmet.service.j2)); C(connect_unit), the initiator's systemd unit
        (C(templates/nvmeofctl-connect.service.j2)).
    type: dict
"""
