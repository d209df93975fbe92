# -*- coding: utf-8 -*-
# Copyright: nvmeofctl contributors
# Apache-2.0
"""The RDMA fabric link options (module_utils/rdma.py ARGUMENT_SPEC), documented three times with
the same text (doc fragments must be plain string literals):

* ``nvmeofctl.fabric.rdma`` (DOCUMENTATION): the ``rdma`` dict option of nvmet_target and
  nvme_host, with the link's options as its suboptions;
* ``nvmeofctl.fabric.rdma.rails`` (RAILS): the ``rdma_rails`` list option of nvmet_target and
  nvme_host (rails 2..N), with the same suboptions;
* ``nvmeofctl.fabric.rdma.link`` (LINK): the same options at the top level, for rdma_link.

tests/unit/collection/test_docs.py checks that all three say the same and match ARGUMENT_SPEC.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # nvmet_target, nvme_host: the nested `rdma` option
    DOCUMENTATION = r"""
options:
  rdma:
    description:
      - The RDMA fabric link (the options of M(nvmeofctl.fabric.rdma_link)), reconciled first, in
        this same module run (a converged host then costs one module run, not two); its changes
        lead the returned RV(changes) list and its result is returned in RV(rdma).
      - Unset (or empty) leaves the RDMA link alone, as on a TCP-only fabric.
    type: dict
    suboptions:
      interface:
        description:
          - Fabric network interface (netdev).
        type: str
        required: true
      mtu:
        description:
          - L2 MTU to set (for example C(9000); a RoCE active_mtu of 4096 needs about 4200 or more).
          - Lowering the MTU is a disruptive change (RDMA connections that negotiated a larger path
            MTU break). Unset leaves the MTU alone.
        type: int
      soft_roce:
        description:
          - Create a Soft-RoCE (C(rdma_rxe)) device when none is bound to O(rdma.interface).
        type: bool
        default: false
      rdma_device:
        description:
          - RDMA device name. With O(rdma.soft_roce) the name to create (default C(rxe_<interface>));
            an existing device bound to O(rdma.interface) is adopted when this is not set.
          - When set, it must be (or become) the device bound to O(rdma.interface); anything else fails.
        type: str
      roce_mode:
        description:
          - rdma_cm default RoCE mode of the device's port 1 (applies to new connections only).
        type: str
        default: RoCE v2
        choices:
          - RoCE v2
          - IB/RoCE v1
      roce_tos:
        description:
          - rdma_cm default TOS, 0 to 255 (for example C(106) = DSCP 26 + ECT). Unset leaves it alone.
        type: int
      persist:
        description:
          - Write the restore script and the C(nvmeofctl-rdma.service) unit (ordered before
            C(nvmeofctl-nvmet.service) and C(nvmeofctl-connect.service)) so the link survives a reboot
            (for rail 2 and up, files named after the interface, see O(rdma.rail)).
          - When false, disables the unit and removes the script, its device file and the unit;
            the live link (MTU, RDMA device) stays as it is.
        type: bool
        default: true
      rail:
        description:
          - Which fabric interface ("rail") of the host this link is, from 1; it names the link's boot
            files, so each rail is restored at boot by a unit of its own.
          - Rail 1 writes O(rdma.lib_dir)/C(rdma-restore.sh), O(rdma.lib_dir)/C(rdma-device) and
            C(nvmeofctl-rdma.service). Rail N of 2 or more writes
            O(rdma.lib_dir)/C(rdma-restore-<interface>.sh), O(rdma.lib_dir)/C(rdma-device-<interface>)
            and C(nvmeofctl-rdma-<interface>.service).
          - The elements of O(nvmeofctl.fabric.nvmet_target#module:rdma_rails) and
            O(nvmeofctl.fabric.nvme_host#module:rdma_rails) are rails 2, 3, ... in list order, whatever
            they set here.
        type: int
        default: 1
      sysfs_root:
        description:
          - sysfs root (tests use a fake tree).
        type: path
        default: /sys
      configfs_root:
        description:
          - configfs root holding C(rdma_cm) (tests use a fake tree).
        type: path
        default: /sys/kernel/config
      lib_dir:
        description:
          - Where the restore script is installed (tests use a fake tree).
        type: path
        default: /usr/local/lib/nvmeofctl
      unit_dir:
        description:
          - systemd unit directory. For C(ROOT/etc/systemd/system) C(systemctl) runs with C(--root=ROOT).
        type: path
        default: /etc/systemd/system
"""

    # nvmet_target, nvme_host: the rails after the first, `rdma_rails` (the same suboptions)
    RAILS = r"""
options:
  rdma_rails:
    description:
      - More RDMA fabric links, for a host with several fabric interfaces ("rails", one per RoCE
        port). Each element takes the options of M(nvmeofctl.fabric.rdma_link), as O(rdma) does.
        Element 1 is rail 2, element 2 rail 3, and so on, whatever O(rdma_rails[].rail) says; each
        rail's boot files and unit are named after its interface, so each is restored at boot on
        its own.
      - Reconciled right after O(rdma), in this same module run, before the module's own work;
        their changes follow those of O(rdma) in the returned RV(changes) list and their results
        are returned in RV(rdma_rails).
      - Two rails (O(rdma) included) naming the same interface is an error, reported before
        anything changes.
      - Unset (or empty) means no rail after the first. The list is the host's whole set of rails
        after the first. When O(rdma) is set, the boot unit and files of a rail the host has but the
        list no longer names (C(nvmeofctl-rdma-<interface>.service)) are disabled and removed; its
        live link (MTU, RDMA device) stays as it is.
    type: list
    elements: dict
    suboptions:
      interface:
        description:
          - Fabric network interface (netdev).
        type: str
        required: true
      mtu:
        description:
          - L2 MTU to set (for example C(9000); a RoCE active_mtu of 4096 needs about 4200 or more).
          - Lowering the MTU is a disruptive change (RDMA connections that negotiated a larger path
            MTU break). Unset leaves the MTU alone.
        type: int
      soft_roce:
        description:
          - Create a Soft-RoCE (C(rdma_rxe)) device when none is bound to O(rdma_rails[].interface).
        type: bool
        default: false
      rdma_device:
        description:
          - RDMA device name. With O(rdma_rails[].soft_roce) the name to create (default C(rxe_<interface>));
            an existing device bound to O(rdma_rails[].interface) is adopted when this is not set.
          - When set, it must be (or become) the device bound to O(rdma_rails[].interface); anything else fails.
        type: str
      roce_mode:
        description:
          - rdma_cm default RoCE mode of the device's port 1 (applies to new connections only).
        type: str
        default: RoCE v2
        choices:
          - RoCE v2
          - IB/RoCE v1
      roce_tos:
        description:
          - rdma_cm default TOS, 0 to 255 (for example C(106) = DSCP 26 + ECT). Unset leaves it alone.
        type: int
      persist:
        description:
          - Write the restore script and the C(nvmeofctl-rdma.service) unit (ordered before
            C(nvmeofctl-nvmet.service) and C(nvmeofctl-connect.service)) so the link survives a reboot
            (for rail 2 and up, files named after the interface, see O(rdma_rails[].rail)).
          - When false, disables the unit and removes the script, its device file and the unit;
            the live link (MTU, RDMA device) stays as it is.
        type: bool
        default: true
      rail:
        description:
          - Which fabric interface ("rail") of the host this link is, from 1; it names the link's boot
            files, so each rail is restored at boot by a unit of its own.
          - Rail 1 writes O(rdma_rails[].lib_dir)/C(rdma-restore.sh), O(rdma_rails[].lib_dir)/C(rdma-device) and
            C(nvmeofctl-rdma.service). Rail N of 2 or more writes
            O(rdma_rails[].lib_dir)/C(rdma-restore-<interface>.sh), O(rdma_rails[].lib_dir)/C(rdma-device-<interface>)
            and C(nvmeofctl-rdma-<interface>.service).
          - The elements of O(nvmeofctl.fabric.nvmet_target#module:rdma_rails) and
            O(nvmeofctl.fabric.nvme_host#module:rdma_rails) are rails 2, 3, ... in list order, whatever
            they set here.
        type: int
        default: 1
      sysfs_root:
        description:
          - sysfs root (tests use a fake tree).
        type: path
        default: /sys
      configfs_root:
        description:
          - configfs root holding C(rdma_cm) (tests use a fake tree).
        type: path
        default: /sys/kernel/config
      lib_dir:
        description:
          - Where the restore script is installed (tests use a fake tree).
        type: path
        default: /usr/local/lib/nvmeofctl
      unit_dir:
        description:
          - systemd unit directory. For C(ROOT/etc/systemd/system) C(systemctl) runs with C(--root=ROOT).
        type: path
        default: /etc/systemd/system
"""

    # rdma_link: the same options at the top level
    LINK = r"""
options:
  interface:
    description:
      - Fabric network interface (netdev).
    type: str
    required: true
  mtu:
    description:
      - L2 MTU to set (for example C(9000); a RoCE active_mtu of 4096 needs about 4200 or more).
      - Lowering the MTU is a disruptive change (RDMA connections that negotiated a larger path
        MTU break). Unset leaves the MTU alone.
    type: int
  soft_roce:
    description:
      - Create a Soft-RoCE (C(rdma_rxe)) device when none is bound to O(interface).
    type: bool
    default: false
  rdma_device:
    description:
      - RDMA device name. With O(soft_roce) the name to create (default C(rxe_<interface>));
        an existing device bound to O(interface) is adopted when this is not set.
      - When set, it must be (or become) the device bound to O(interface); anything else fails.
    type: str
  roce_mode:
    description:
      - rdma_cm default RoCE mode of the device's port 1 (applies to new connections only).
    type: str
    default: RoCE v2
    choices:
      - RoCE v2
      - IB/RoCE v1
  roce_tos:
    description:
      - rdma_cm default TOS, 0 to 255 (for example C(106) = DSCP 26 + ECT). Unset leaves it alone.
    type: int
  persist:
    description:
      - Write the restore script and the C(nvmeofctl-rdma.service) unit (ordered before
        C(nvmeofctl-nvmet.service) and C(nvmeofctl-connect.service)) so the link survives a reboot
        (for rail 2 and up, files named after the interface, see O(rail)).
      - When false, disables the unit and removes the script, its device file and the unit;
        the live link (MTU, RDMA device) stays as it is.
    type: bool
    default: true
  rail:
    description:
      - Which fabric interface ("rail") of the host this link is, from 1; it names the link's boot
        files, so each rail is restored at boot by a unit of its own.
      - Rail 1 writes O(lib_dir)/C(rdma-restore.sh), O(lib_dir)/C(rdma-device) and
        C(nvmeofctl-rdma.service). Rail N of 2 or more writes
        O(lib_dir)/C(rdma-restore-<interface>.sh), O(lib_dir)/C(rdma-device-<interface>)
        and C(nvmeofctl-rdma-<interface>.service).
      - The elements of O(nvmeofctl.fabric.nvmet_target#module:rdma_rails) and
        O(nvmeofctl.fabric.nvme_host#module:rdma_rails) are rails 2, 3, ... in list order, whatever
        they set here.
    type: int
    default: 1
  sysfs_root:
    description:
      - sysfs root (tests use a fake tree).
    type: path
    default: /sys
  configfs_root:
    description:
      - configfs root holding C(rdma_cm) (tests use a fake tree).
    type: path
    default: /sys/kernel/config
  lib_dir:
    description:
      - Where the restore script is installed (tests use a fake tree).
    type: path
    default: /usr/local/lib/nvmeofctl
  unit_dir:
    description:
      - systemd unit directory. For C(ROOT/etc/systemd/system) C(systemctl) runs with C(--root=ROOT).
    type: path
    default: /etc/systemd/system
"""
