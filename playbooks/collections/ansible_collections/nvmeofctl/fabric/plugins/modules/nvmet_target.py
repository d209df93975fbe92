#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nvmeofctl contributors
# Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvmet_target
short_description: Reconcile the whole NVMe-oF target (nvmet configfs) and its boot persistence
description:
  - One call per target host configures DH-HMAC-CHAP hosts, subsystems, namespaces, allowed
    hosts, ports and port links in C(/sys/kernel/config/nvmet), in place, touching only what
    differs (never clear-and-restore), and writes what re-applies it at boot.
  - Objects the spec does not list are deleted only when C(state_dir)/nvmet-managed.json records
    them as nvmeofctl's; foreign objects are left alone and returned in C(foreign).
  - Check mode predicts C(changed), C(changes) and C(diff) without writing anything.
  - DH-HMAC-CHAP keys never appear in results, diffs or errors; comparisons use sha256 digests.
extends_documentation_fragment: [nvmeofctl.fabric.rdma]
options:
  hosts:
    description: Host NQNs that may be allowed on subsystems, with optional DH-HMAC-CHAP keys.
    type: list
    elements: dict
    default: []
    suboptions:
      nqn: {description: Host NQN., type: str, required: true}
      dhchap_key: {description: Host key (DHHC-1:...). Enables authentication., type: str}
      dhchap_ctrl_key: {description: Controller key for bidirectional authentication., type: str}
  subsystems:
    description: Subsystems to export.
    type: list
    elements: dict
    default: []
    suboptions:
      nqn: {description: Subsystem NQN., type: str, required: true}
      serial: {description: Serial number (<= 20 ASCII chars); kernel default when unset., type: str}
      model: {description: Model number (<= 40 ASCII chars)., type: str, default: nvmeofctl}
      allowed_hosts: {description: Host NQNs (listed in I(hosts)) allowed to connect., type: list, elements: str, default: []}
      namespaces:
        description: Namespaces of the subsystem.
        type: list
        elements: dict
        default: []
        suboptions:
          nsid: {description: Namespace id (>= 1)., type: int, required: true}
          device_path: {description: Block device or regular file to export., type: str, required: true}
          uuid: {description: Namespace UUID (stable identity for initiators)., type: str}
          nguid: {description: Namespace NGUID (32 hex digits, dashes allowed)., type: str}
          size: {description: Size in bytes of the backing file (with I(create_file))., type: int}
          create_file: {description: Create a sparse backing file of I(size) bytes if missing; grow a smaller one; never shrink or overwrite., type: bool, default: false}
  ports:
    description: Listeners; a port serves the subsystems linked to it.
    type: list
    elements: dict
    default: []
    suboptions:
      id: {description: Port id., type: int, required: true}
      trtype: {description: Transport., type: str, required: true, choices: [rdma, tcp]}
      adrfam: {description: Address family., type: str, default: ipv4, choices: [ipv4, ipv6]}
      traddr: {description: Fabric IP address to listen on., type: str, required: true}
      trsvcid: {description: Service id (port number)., type: int, default: 4420}
      subsystems: {description: Subsystem NQNs served on this port., type: list, elements: str, default: []}
  persist:
    description: Write C(state_dir)/nvmet.json (0600), the restore program and the
      C(nvmeofctl-nvmet.service) unit that re-applies the configuration at boot.
    type: bool
    default: true
  allow_disruptive:
    description: When false, fail before changing anything if a change is disruptive
      (port address change, namespace device change, removing an export or an allowed host).
    type: bool
    default: true
  configfs_root: {description: nvmet configfs root; kernel modules are loaded only for the default (others are test trees)., type: path, default: /sys/kernel/config/nvmet}
  state_dir: {description: Where nvmet.json and nvmet-managed.json live., type: path, default: /etc/nvmeofctl}
  lib_dir: {description: Where the restore program is installed (tests)., type: path, default: /usr/local/lib/nvmeofctl}
  unit_dir: {description: systemd unit directory; systemctl runs only for the default (others are test trees)., type: path, default: /etc/systemd/system}
author: nvmeofctl
"""

EXAMPLES = r"""
- name: Configure the NVMe-oF target
  nvmeofctl.fabric.nvmet_target:
    hosts:
      - nqn: nqn.2014-08.org.nvmexpress:uuid:f4a3064a-a702-4134-ab62-ed4d001ffe8b
        dhchap_key: "{{ vault_gpu1_key }}"
    subsystems:
      - nqn: nqn.2024-01.io.lab:gpu-pool-1
        serial: "0123456789abcdef"
        allowed_hosts: [nqn.2014-08.org.nvmexpress:uuid:f4a3064a-a702-4134-ab62-ed4d001ffe8b]
        namespaces:
          - {nsid: 1, device_path: /var/lib/nvmeofctl/pool1.img, size: 1073741824, create_file: true,
             uuid: fbd61f08-fde1-48e3-b431-57fda06e7aa9}
    ports:
      - {id: 1, trtype: rdma, traddr: 192.168.100.1, trsvcid: 4420, subsystems: [nqn.2024-01.io.lab:gpu-pool-1]}
"""

RETURN = r"""
changes:
  description: Ordered changes (predicted in check mode); no secret values.
  returned: always
  type: list
  elements: dict
  sample: [{"object": "port 1", "action": "update", "detail": "traddr: 10.0.0.1 -> 10.0.0.2; unlink 1 subsystem(s), write, relink",
            "disruptive": true, "reason": "hosts connected through this port are disconnected ...", "kind": "port", "key": ["1"]}]
disruptive:
  description: Whether any change is disruptive.
  returned: always
  type: bool
diff:
  description: Text of the managed configuration before and after (keys shown as <secret>/<changed>).
  returned: always
  type: dict
observed:
  description: nvmet state read before the changes (keys as sha256 digests only).
  returned: always
  type: dict
managed:
  description: Objects recorded in nvmet-managed.json after this run.
  returned: always
  type: dict
foreign:
  description: Objects in configfs that nvmeofctl does not manage and left alone.
  returned: always
  type: list
"""

import os
import sys

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nvmeofctl.fabric.plugins.module_utils.rdma import (
    ARGUMENT_SPEC as RDMA_ARGUMENT_SPEC, merge_into, reconcile as rdma_reconcile, with_defaults,
)
from ansible_collections.nvmeofctl.fabric.plugins.module_utils.nvmet import (
    CONFIGFS_ROOT, LIB_DIR, MANAGED_NAME, STATE_DIR, SYS_MODULE_DIR, UNIT_DIR, UNIT_NAME,
    NvmetError, apply, changed_secrets, diff, file_state, foreign_objects, load_managed,
    managed_after, managed_text, missing_modules, persistence_files, probe_files,
    public_change, read_tree, render, simulate, write_file, normalize,
)

ARGUMENT_SPEC = dict(
    hosts=dict(type="list", elements="dict", default=[], options=dict(
        nqn=dict(type="str", required=True),
        dhchap_key=dict(type="str", no_log=True),
        dhchap_ctrl_key=dict(type="str", no_log=True),
    )),
    subsystems=dict(type="list", elements="dict", default=[], options=dict(
        nqn=dict(type="str", required=True),
        serial=dict(type="str"),
        model=dict(type="str", default="nvmeofctl"),
        allowed_hosts=dict(type="list", elements="str", default=[]),
        namespaces=dict(type="list", elements="dict", default=[], options=dict(
            nsid=dict(type="int", required=True),
            device_path=dict(type="str", required=True),
            uuid=dict(type="str"),
            nguid=dict(type="str"),
            size=dict(type="int"),
            create_file=dict(type="bool", default=False),
        )),
    )),
    ports=dict(type="list", elements="dict", default=[], options=dict(
        id=dict(type="int", required=True),
        trtype=dict(type="str", required=True, choices=["rdma", "tcp"]),
        adrfam=dict(type="str", default="ipv4", choices=["ipv4", "ipv6"]),
        traddr=dict(type="str", required=True),
        trsvcid=dict(type="int", default=4420),
        subsystems=dict(type="list", elements="str", default=[]),
    )),
    persist=dict(type="bool", default=True),
    rdma=dict(type="dict", options={k: v for k, v in RDMA_ARGUMENT_SPEC.items()}),
    allow_disruptive=dict(type="bool", default=True),
    configfs_root=dict(type="path", default=CONFIGFS_ROOT),
    state_dir=dict(type="path", default=STATE_DIR),
    lib_dir=dict(type="path", default=LIB_DIR),
    unit_dir=dict(type="path", default=UNIT_DIR),
)

# Seconds a port link is retried while the fabric address is not configured yet (the boot-time
# restore waits 60 s; during a deploy rdma_link ran just before, so a short wait suffices).
LINK_TIMEOUT = 10.0


def _file_change(path, state, detail, reason=None):
    return {"object": "file %s" % path, "action": "create" if state == "absent" else "update",
            "detail": detail, "disruptive": False,
            "reason": reason or ("missing" if state == "absent" else "content or mode differ"),
            "kind": "persist", "key": [path]}


def run(module):
    p = module.params
    check = module.check_mode
    root = p["configfs_root"]
    try:
        desired = normalize(p)
    except ValueError as e:
        module.fail_json(msg="nvmet_target: %s" % e)

    changes = []

    # 1. kernel modules: one modprobe -a, skipped when loaded (and for a test tree: a
    #    configfs_root other than the kernel's says nothing about the kernel)
    missing = missing_modules(desired, SYS_MODULE_DIR) if root == CONFIGFS_ROOT else []
    if "nvmet" in missing and os.path.isdir(root):
        missing.remove("nvmet")  # built in, or loaded: its configfs tree is there
    if missing:
        changes.append({"object": "kernel modules", "action": "create",
                        "detail": "modprobe -a %s" % " ".join(missing), "disruptive": False,
                        "reason": "not loaded", "kind": "modules", "key": missing})
        if not check:
            modprobe = module.get_bin_path("modprobe", required=True)
            rc, _out, err = module.run_command([modprobe, "-a"] + missing)
            if rc != 0:
                module.fail_json(msg="modprobe -a %s failed (rc=%d): %s" % (" ".join(missing), rc, err.strip()),
                                 changes=changes)
    if not check and not os.path.isdir(root):
        module.fail_json(msg="nvmet configfs not found at %s: is configfs mounted "
                             "(mount -t configfs none /sys/kernel/config) and nvmet loaded?" % root,
                         changes=changes)

    # 2. observed state, managed set, diff
    observed = read_tree(root)
    observed["files"] = probe_files(desired)
    try:
        managed = load_managed(p["state_dir"])
        cfg = diff(desired, observed, managed)
    except (ValueError, NvmetError) as e:
        module.fail_json(msg="nvmet_target: %s" % e, changes=changes)

    disruptive = [c for c in cfg if c["disruptive"]]
    if disruptive and not p["allow_disruptive"]:
        module.fail_json(msg="nvmet_target: %d disruptive change(s) refused (allow_disruptive is false): %s"
                             % (len(disruptive), "; ".join("%s %s" % (c["action"], c["object"]) for c in disruptive)),
                         changes=[public_change(c) for c in cfg], disruptive=True)

    before = render(observed)
    after = render(simulate(observed, desired, cfg), changed_secrets(cfg))

    if not check and cfg:
        try:
            apply(root, desired, cfg, link_timeout=LINK_TIMEOUT)
        except NvmetError as e:
            module.fail_json(msg="nvmet_target: %s" % e, changed=bool(e.done or changes),
                             changes=changes + [public_change(c) for c in e.done])
    changes.extend(public_change(c) for c in cfg)

    # 3. nvmet-managed.json (what later runs may delete)
    new_managed = managed_after(desired, observed, cfg, managed)
    mpath = os.path.join(p["state_dir"], MANAGED_NAME)
    mtext = managed_text(new_managed)
    mstate = file_state(mpath, mtext, 0o644)
    extra_before, extra_after = [], []
    if mstate != "current":
        changes.append(_file_change(mpath, mstate, "record the hosts, subsystems and ports nvmeofctl manages"))
        if not check:
            write_file(mpath, mtext, 0o644)
    extra_before.append("state %s: %s" % (mpath, mstate))
    extra_after.append("state %s: current" % mpath)

    # 4. boot persistence: nvmet.json (0600, keys), restore program, systemd unit
    if p["persist"]:
        unit_changed = False
        for path, content, mode, secret in persistence_files(
                desired, sys.executable or "/usr/bin/python3", p["state_dir"], p["lib_dir"], p["unit_dir"]):
            st = file_state(path, content, mode)
            extra_before.append("persist %s: %s" % (path, st))
            extra_after.append("persist %s: current" % path)
            if st == "current":
                continue
            detail = "mode %04o" % mode
            if secret:
                detail += "; holds the desired state incl. DH-HMAC-CHAP keys (%s)" % "<secret>"
            if path.endswith(UNIT_NAME):
                unit_changed = True
                detail += "; systemctl daemon-reload"
            changes.append(_file_change(path, st, detail))
            if not check:
                write_file(path, content, mode)
        wants = os.path.join(p["unit_dir"], "multi-user.target.wants", UNIT_NAME)
        # systemctl only for the real unit directory (another unit_dir is a test tree)
        if p["unit_dir"] == UNIT_DIR and (unit_changed or not os.path.lexists(wants)):
            changes.append({"object": "systemd %s" % UNIT_NAME, "action": "update",
                            "detail": "systemctl enable (runs at boot; not started now)",
                            "disruptive": False, "reason": "unit new or changed" if unit_changed else "not enabled",
                            "kind": "persist", "key": [UNIT_NAME]})
            if not check:
                systemctl = module.get_bin_path("systemctl")
                if not systemctl:
                    module.warn("systemctl not found: %s written but not enabled" % UNIT_NAME)
                else:
                    for cmd in (([systemctl, "daemon-reload"],) if unit_changed else ()) + ([systemctl, "enable", UNIT_NAME],):
                        rc, _out, err = module.run_command(cmd)
                        if rc != 0:
                            module.fail_json(msg="%s failed (rc=%d): %s" % (" ".join(cmd[1:]), rc, err.strip()),
                                             changed=True, changes=changes)

    result = dict(
        changed=bool(changes),
        changes=changes,
        disruptive=any(c["disruptive"] for c in changes),
        diff=dict(before=before + "".join(l + "\n" for l in extra_before),
                  after=after + "".join(l + "\n" for l in extra_after)),
        observed=observed,
        managed=new_managed,
        foreign=foreign_objects(observed, desired, managed),
    )
    module.exit_json(**result)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if module.params.get("rdma"):  # the RDMA link first (ports/connections need it), same run
        merge_into(module, rdma_reconcile(module, with_defaults(module.params["rdma"]), module.check_mode))
    run(module)


if __name__ == "__main__":
    main()
