#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nvmeofctl contributors
# Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rdma_link
short_description: Set up one RoCE v2 fabric interface (MTU, Soft-RoCE device, rdma_cm defaults) and its boot persistence
description:
  - One call per host sets the netdev MTU, creates a Soft-RoCE (rxe) device on the interface
    when asked and none is bound, or checks that the RDMA device bound to it is the expected one,
    and sets the rdma_cm default RoCE mode (v2) and TOS through configfs.
  - Writes an idempotent restore script and the C(nvmeofctl-rdma.service) unit (ordered before
    C(nvmeofctl-nvmet.service) and C(nvmeofctl-connect.service)) so it all survives a reboot.
  - Check mode predicts C(changed), C(changes) and C(diff) without writing anything.
  - One fabric interface per host (one unit); if rdma_cm's configfs is not exposed by the
    kernel the mode/TOS are reported as C(not exposed) and the module does not fail.
options:
  interface: {description: Fabric network interface (netdev)., type: str, required: true}
  mtu: {description: L2 MTU to set (e.g. 9000; RoCE active_mtu 4096 needs >= ~4200)., type: int}
  soft_roce: {description: Create a Soft-RoCE (rdma_rxe) device when none is bound to I(interface)., type: bool, default: false}
  rdma_device:
    description:
      - RDMA device name. With I(soft_roce) the name to create (default C(rxe_<interface>));
        an existing device bound to I(interface) is adopted when this is not set.
      - When set, it must be (or become) the device bound to I(interface); anything else fails.
    type: str
  roce_mode: {description: rdma_cm default RoCE mode., type: str, default: RoCE v2, choices: [RoCE v2, IB/RoCE v1]}
  roce_tos: {description: rdma_cm default TOS (e.g. 106 = DSCP 26 + ECT)., type: int}
  persist: {description: Write the restore script and systemd unit., type: bool, default: true}
  sysfs_root: {description: sysfs root (tests)., type: path, default: /sys}
  configfs_root: {description: configfs root (tests)., type: path, default: /sys/kernel/config}
  lib_dir: {description: Where the restore script is installed (tests)., type: path, default: /usr/local/lib/nvmeofctl}
  unit_dir: {description: systemd unit directory; systemctl runs only for the default (others are test trees)., type: path, default: /etc/systemd/system}
author: nvmeofctl
"""

EXAMPLES = r"""
- name: Soft-RoCE fabric link
  nvmeofctl.fabric.rdma_link:
    interface: eth1
    mtu: 9000
    soft_roce: true
    roce_tos: 106
"""

RETURN = r"""
changes:
  description: Ordered changes (predicted in check mode).
  returned: always
  type: list
  elements: dict
rdma_device:
  description: The RDMA device bound to I(interface) (to be created, in check mode).
  returned: always
  type: str
observed:
  description: Interface MTU, RDMA links on the interface, its GID table and rdma_cm settings
    (as read before the changes in check mode, after them otherwise).
  returned: always
  type: dict
diff:
  description: Text before/after.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nvmeofctl.fabric.plugins.module_utils.rdma import ARGUMENT_SPEC, reconcile


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.exit_json(**reconcile(module, module.params, module.check_mode))


if __name__ == "__main__":
    main()
