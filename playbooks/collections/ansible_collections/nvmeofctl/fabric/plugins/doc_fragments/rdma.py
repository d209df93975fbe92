# -*- coding: utf-8 -*-
# Copyright: nvmeofctl contributors
# Apache-2.0
"""The `rdma` option shared by nvmet_target and nvme_host (one module run per host)."""


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  rdma:
    type: dict
    description: >-
      Optional rdma_link options (interface, mtu, soft_roce, rdma_device, roce_mode, roce_tos,
      persist). When given, the RDMA fabric link is reconciled first, in this same module run
      (a converged host then costs one module run, not two); its changes lead the returned list.
"""
