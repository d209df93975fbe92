#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nvmeofctl contributors
# Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rdma_link
version_added: 0.1.0
short_description: Set up one RoCE v2 fabric interface (MTU, Soft-RoCE device, rdma_cm defaults) and its boot persistence
description:
  - One call per fabric interface sets the netdev MTU, creates a Soft-RoCE (rxe) device on the interface
    when asked and none is bound, or checks that the RDMA device bound to it is the expected one,
    and sets the rdma_cm default RoCE mode (v2) and TOS through configfs.
  - Writes an idempotent restore script and the C(nvmeofctl-rdma.service) unit (ordered before
    C(nvmeofctl-nvmet.service) and C(nvmeofctl-connect.service)) so it all survives a reboot.
  - Check mode predicts C(changed) and RV(changes) (and RV(diff) in diff mode) without writing
    anything.
  - One fabric interface per call. A host with several (one per RoCE port, "rails") calls it once
    per interface with a different O(rail) each; rail 2 and up write boot files and a unit named
    after the interface, so each rail is restored at boot on its own.
  - If rdma_cm's configfs is not exposed by the kernel the mode/TOS are reported as
    C(not exposed) and the module does not fail.
  - The same options are the O(nvmeofctl.fabric.nvmet_target#module:rdma) and
    O(nvmeofctl.fabric.nvme_host#module:rdma) options of the role modules, which reconcile the
    link in their own module run, and the elements of their
    O(nvmeofctl.fabric.nvmet_target#module:rdma_rails) and
    O(nvmeofctl.fabric.nvme_host#module:rdma_rails) (rails 2 and up).
extends_documentation_fragment:
  - nvmeofctl.fabric.rdma.link
  - nvmeofctl.fabric.host_files
author:
  - nvmeofctl contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Soft-RoCE fabric link
  nvmeofctl.fabric.rdma_link:
    interface: eth1
    mtu: 9000
    soft_roce: true
    roce_tos: 106

- name: The host's second fabric interface (its own nvmeofctl-rdma-ens1f1.service)
  nvmeofctl.fabric.rdma_link:
    interface: ens1f1
    rail: 2
    mtu: 9000
    roce_tos: 106
"""

RETURN = r"""
changes:
  description: Ordered changes (predicted in check mode).
  returned: always
  type: list
  elements: dict
  contains:
    object:
      description: What changes (C(netdev eth1), C(rdma link rxe_eth1), C(file /etc/systemd/system/...)).
      type: str
    action:
      description: C(create) or C(update).
      type: str
    detail:
      description: The change itself (old and new values, the command run).
      type: str
    disruptive:
      description: Whether the change interrupts established RDMA connections (a lower MTU).
      type: bool
    reason:
      description: Why the change is needed.
      type: str
    kind:
      description: C(mtu), C(modules), C(rxe), C(rdma_cm) or C(persist).
      type: str
  sample:
    - object: rdma link rxe_eth1
      action: create
      detail: rdma link add rxe_eth1 type rxe netdev eth1
      disruptive: false
      reason: no RDMA device bound to eth1
      kind: rxe
disruptive:
  description: Whether any change is disruptive.
  returned: always
  type: bool
rdma_device:
  description: The RDMA device bound to O(interface) (to be created, in check mode).
  returned: always
  type: str
  sample: rxe_eth1
observed:
  description:
    - Interface MTU, RDMA links on the interface, its GID table and rdma_cm settings (as read
      before the changes in check mode, after them otherwise).
  returned: always
  type: dict
  contains:
    interface:
      description: The fabric interface.
      type: str
    mtu:
      description: Its MTU.
      type: int
    links:
      description: RDMA links bound to the interface (device, port, state, physical_state, netdev).
      type: list
      elements: dict
    gids:
      description: The device's port 1 GID table (index, gid, type, ndev, ipv4).
      type: list
      elements: dict
    rdma_cm:
      description:
        - C(default_roce_mode) and C(default_roce_tos) of the device's port 1, or the text
          C(not exposed) or C(not configured).
      type: raw
diff:
  description: The link's state as text, before and after.
  returned: in diff mode (C(--diff))
  type: dict
  contains:
    before:
      description: State before the run.
      type: str
    after:
      description: State after the run (predicted in check mode).
      type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nvmeofctl.fabric.plugins.module_utils.persist import HOST_FILES_SPEC
from ansible_collections.nvmeofctl.fabric.plugins.module_utils.rdma import ARGUMENT_SPEC, reconcile


def main():
    module = AnsibleModule(argument_spec=dict(ARGUMENT_SPEC, host_files=HOST_FILES_SPEC), supports_check_mode=True)
    result = reconcile(module, module.params, module.check_mode, module.params["host_files"])
    if not module._diff:  # the diff only in diff mode (--diff), as Ansible's own modules do
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
