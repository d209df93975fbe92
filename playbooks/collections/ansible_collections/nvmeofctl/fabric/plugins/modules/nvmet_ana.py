#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nvmeofctl contributors
# Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvmet_ana
version_added: 0.1.0
short_description: Set the ANA state of groups on existing nvmet ports, live only (rolling redeploys)
description:
  - Writes C(ports/<id>/ana_groups/<grpid>/ana_state) in C(/sys/kernel/config/nvmet) for the
    groups named, creating a group that is missing. Nothing else is touched and no group is removed.
  - The change is live only, never persisted; the next M(nvmeofctl.fabric.nvmet_target) run or
    the target's boot-time restore puts back the states of its own configuration. C(nvmeofctl
    rollout) uses it to move I/O off a target (its groups C(inaccessible), the partner's
    C(optimized)) before changing or rebooting it, and back afterwards.
  - A group leaving C(optimized)/C(non-optimized) is reported disruptive for this port; hosts
    with another live path move their I/O there.
  - Check mode predicts C(changed) and RV(changes) without writing.
author:
  - nvmeofctl contributors (!UNKNOWN)
options:
  ports:
    description:
      - The ports and the states of their groups.
    type: list
    elements: dict
    required: true
    suboptions:
      id:
        description:
          - Port id (configured by M(nvmeofctl.fabric.nvmet_target)).
        type: int
        required: true
      ana_groups:
        description:
          - Groups and states to set on this port.
        type: list
        elements: dict
        required: true
        suboptions:
          grpid:
            description:
              - Group id (1 to 128).
            type: int
            required: true
          state:
            description:
              - ANA state.
            type: str
            required: true
            choices:
              - optimized
              - non-optimized
              - inaccessible
              - persistent-loss
              - change
  configfs_root:
    description:
      - Root of the nvmet configfs tree.
    type: path
    default: /sys/kernel/config/nvmet
"""

EXAMPLES = r"""
- name: Move I/O off this target's ANA group 2
  nvmeofctl.fabric.nvmet_ana:
    ports:
      - id: 1
        ana_groups:
          - {grpid: 2, state: inaccessible}
"""

RETURN = r"""
changes:
  description: The ANA state changes (predicted in check mode).
  returned: always
  type: list
  elements: dict
  sample:
    - object: port 1 / ana group 2
      action: update
      detail: "ana_state: optimized -> inaccessible"
      disruptive: true
      reason: hosts stop I/O through this port for the group's namespaces
ana_groups:
  description: Port id to its groups and states, after the run (predicted in check mode).
  returned: always
  type: dict
  sample: {"1": {"1": optimized, "2": inaccessible}}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nvmeofctl.fabric.plugins.module_utils import nvmet

STATES = ["optimized", "non-optimized", "inaccessible", "persistent-loss", "change"]

ARGUMENT_SPEC = dict(
    ports=dict(type="list", elements="dict", required=True, options=dict(
        id=dict(type="int", required=True),
        ana_groups=dict(type="list", elements="dict", required=True, options=dict(
            grpid=dict(type="int", required=True),
            state=dict(type="str", required=True, choices=STATES),
        )),
    )),
    configfs_root=dict(type="path", default=nvmet.CONFIGFS_ROOT),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    root = module.params["configfs_root"]
    try:
        # the port options in nvmet_target's shape, so its validation and diff apply
        desired = nvmet.normalize({"ports": [
            dict(id=p["id"], trtype="tcp", traddr="127.0.0.1", ana_groups=p["ana_groups"])
            for p in module.params["ports"]]})
        states = {pid: p["ana_groups"] for pid, p in desired["ports"].items()}
        observed = nvmet.read_tree(root)
        changes = nvmet.ana_only_changes(states, observed)
    except ValueError as e:
        module.fail_json(msg="nvmet_ana: %s" % e)
    if changes and not module.check_mode:
        try:
            nvmet.apply(root, desired, changes, fs=nvmet.ConfigFS(root))
        except nvmet.NvmetError as e:
            module.fail_json(msg="nvmet_ana: %s" % e, changed=bool(e.done),
                             changes=[nvmet.public_change(c) for c in e.done])
    after = nvmet.simulate(observed, desired, changes) if module.check_mode else nvmet.read_tree(root)
    module.exit_json(changed=bool(changes), changes=[nvmet.public_change(c) for c in changes],
                     ana_groups={pid: p.get("ana_groups") or {} for pid, p in after["ports"].items()})


if __name__ == "__main__":
    main()
