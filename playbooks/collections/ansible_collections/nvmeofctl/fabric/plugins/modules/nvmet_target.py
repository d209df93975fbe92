#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nvmeofctl contributors
# Apache-2.0

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvmet_target
version_added: 0.1.0
short_description: Reconcile the whole NVMe-oF target (nvmet configfs) and its boot persistence
description:
  - One call per target host configures DH-HMAC-CHAP hosts, subsystems, namespaces, allowed
    hosts, ports and port links in C(/sys/kernel/config/nvmet), in place, touching only what
    differs (never clear-and-restore), and writes what re-applies it at boot.
  - Objects the spec does not list are deleted only when O(state_dir)/nvmet-managed.json records
    them as nvmeofctl's; foreign objects are left alone and returned in RV(foreign).
  - Check mode predicts C(changed) and RV(changes) (and RV(diff) in diff mode) without writing
    anything.
  - DH-HMAC-CHAP keys never appear in results, diffs or errors; comparisons use sha256 digests.
  - Every option is treated as hostile input and checked, before anything is touched, with the
    same rules as the cluster spec (module_utils/validators.py); configfs paths built from NQNs
    must stay inside O(configfs_root).
  - A backing file (O(subsystems[].namespaces[].create_file)) is created mode 0600 in 0700
    directories and never follows a symlink. An existing file is grown or exported only when
    nvmeofctl created it (recorded in O(state_dir)/nvmet-managed.json) or it already backs a
    namespace of a subsystem nvmeofctl manages.
  - A block device (no O(subsystems[].namespaces[].create_file)) is checked when a namespace is
    created on it or moved to it, never again afterwards. It is refused when it is not a block
    device, holds the root filesystem or is part of the root disk, when it, one of its partitions
    or its disk is mounted, when something is stacked on it (LVM, md, device-mapper), and when
    C(blkid -p) finds a filesystem, RAID/LVM signature or partition table other than
    O(subsystems[].namespaces[].signature).
extends_documentation_fragment:
  - nvmeofctl.fabric.rdma
  - nvmeofctl.fabric.rdma.rails
  - nvmeofctl.fabric.host_files
options:
  hosts:
    description:
      - Host NQNs that may be allowed on subsystems, with optional DH-HMAC-CHAP keys.
    type: list
    elements: dict
    default: []
    suboptions:
      nqn:
        description:
          - Host NQN.
        type: str
        required: true
      dhchap_key:
        description:
          - Host key (C(DHHC-1:...)). Enables authentication.
        type: str
      dhchap_ctrl_key:
        description:
          - Controller key for bidirectional authentication.
        type: str
      reauth:
        description:
          - This host's initiators re-authenticate with the new key in the same run (after this
            target), so a key change for it is not disruptive (it is otherwise, an initiator still
            holding the old key fails its next authentication).
        type: bool
        default: false
  subsystems:
    description:
      - Subsystems to export.
    type: list
    elements: dict
    default: []
    suboptions:
      nqn:
        description:
          - Subsystem NQN.
        type: str
        required: true
      serial:
        description:
          - Serial number (at most 20 ASCII characters); kernel default when unset.
        type: str
      model:
        description:
          - Model number (at most 40 ASCII characters).
        type: str
        default: nvmeofctl
      allowed_hosts:
        description:
          - Host NQNs (listed in O(hosts)) allowed to connect.
        type: list
        elements: str
        default: []
      cntlid_min:
        description:
          - Lowest controller id this target gives out for the subsystem.
          - When two targets export the same subsystem (dual-controller), their ranges must not
            overlap, or hosts reject the second path (duplicate cntlid). Unset, the kernel's is kept.
        type: int
      cntlid_max:
        description:
          - Highest controller id this target gives out for the subsystem (at most 65519).
        type: int
      namespaces:
        description:
          - Namespaces of the subsystem.
        type: list
        elements: dict
        default: []
        suboptions:
          nsid:
            description:
              - Namespace id (1 or more).
            type: int
            required: true
          name:
            description:
              - The namespace's name in the cluster spec; used in messages.
            type: str
          device_path:
            description:
              - Block device, or with O(subsystems[].namespaces[].create_file) the regular file,
                to export.
              - An absolute, normalised path under one of O(backing_prefixes).
            type: str
            required: true
          uuid:
            description:
              - Namespace UUID (stable identity for initiators).
            type: str
          nguid:
            description:
              - Namespace NGUID (32 hex digits, dashes allowed).
            type: str
          size:
            description:
              - Size in bytes of the backing file (with O(subsystems[].namespaces[].create_file)).
            type: int
          create_file:
            description:
              - Create a sparse backing file of O(subsystems[].namespaces[].size) bytes if
                missing; grow a smaller one; never shrink or overwrite.
            type: bool
            default: false
          ana_grpid:
            description:
              - ANA group of the namespace (1 to 128); its state on each port is set by
                O(ports[].ana_groups). Can change while the namespace is enabled. Unset, the
                kernel's (group 1) is kept.
            type: int
          signature:
            description:
              - Device backing only. The filesystem, RAID/LVM signature or partition table type
                (as C(blkid -p) names it, for example C(ext4), C(LVM2_member), C(gpt)) the device
                is known to hold and may be exported with. Without it, a device holding any
                signature is refused.
            type: str
  ports:
    description:
      - Listeners; a port serves the subsystems linked to it.
    type: list
    elements: dict
    default: []
    suboptions:
      id:
        description:
          - Port id.
        type: int
        required: true
      trtype:
        description:
          - Transport.
        type: str
        required: true
        choices:
          - rdma
          - tcp
      adrfam:
        description:
          - Address family.
        type: str
        default: ipv4
        choices:
          - ipv4
          - ipv6
      traddr:
        description:
          - Fabric IP address to listen on.
        type: str
        required: true
      trsvcid:
        description:
          - Service id (port number).
        type: int
        default: 4420
      subsystems:
        description:
          - Subsystem NQNs served on this port.
        type: list
        elements: str
        default: []
      ana_groups:
        description:
          - ANA (asymmetric namespace access) groups of this port and their states. Group 1
            exists on every port (the kernel's default, C(optimized)); others are created.
            Groups on the port that are not listed, except group 1, are removed.
          - Unset, the port's groups are left as they are.
          - Moving a group from C(optimized) or C(non-optimized) to another state stops I/O
            through this port for its namespaces (reported disruptive); hosts with another path
            move their I/O there.
        type: list
        elements: dict
        suboptions:
          grpid:
            description:
              - Group id (1 to 128).
            type: int
            required: true
          state:
            description:
              - The group's ANA state on this port.
            type: str
            required: true
            choices:
              - optimized
              - non-optimized
              - inaccessible
              - persistent-loss
              - change
  backing_prefixes:
    description:
      - Where a namespace's backing store may live. A prefix ending in C(/) admits paths below
        that directory; one ending in C(*) admits paths starting with the text before it
        (C(/dev/nvme*)).
      - The spec's allow-list; the default is nvmeofctl's built-in list.
    type: list
    elements: str
    default:
      - /var/lib/nvmeofctl/
      - /dev/disk/by-id/
      - /dev/nvme*
      - /dev/md*
      - /dev/mapper/
  persist:
    description:
      - Write O(state_dir)/nvmet.json (mode 0600), the boot program
        (O(lib_dir)/nvmeofctl-boot.pyz, built from the collection's module_utils) and the
        C(nvmeofctl-nvmet.service) unit that re-applies the configuration at boot with it. The
        restore program earlier versions copied (O(lib_dir)/nvmet.py) is removed.
      - When false, disables the unit and removes nvmet.json, the unit and the boot program (the
        program only when no C(nvmeofctl-connect.service) uses it); configfs is left as the
        other options say.
    type: bool
    default: true
  allow_disruptive:
    description:
      - When false, fail before changing anything if a change is disruptive (port address change,
        namespace device change, removing an export or an allowed host). The default (false) never
        drops an export unless asked to.
    type: bool
    default: false
  configfs_root:
    description:
      - nvmet configfs root.
    type: path
    default: /sys/kernel/config/nvmet
  state_dir:
    description:
      - Where nvmet.json and nvmet-managed.json live.
    type: path
    default: /etc/nvmeofctl
  lib_dir:
    description:
      - Where the boot program C(nvmeofctl-boot.pyz) is installed (tests use a fake tree).
    type: path
    default: /usr/local/lib/nvmeofctl
  unit_dir:
    description:
      - systemd unit directory. For C(ROOT/etc/systemd/system) C(systemctl) runs with C(--root=ROOT).
    type: path
    default: /etc/systemd/system
author:
  - nvmeofctl contributors (!UNKNOWN)
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
        allowed_hosts:
          - nqn.2014-08.org.nvmexpress:uuid:f4a3064a-a702-4134-ab62-ed4d001ffe8b
        namespaces:
          - nsid: 1
            device_path: /var/lib/nvmeofctl/pool1.img
            size: 1073741824
            create_file: true
            uuid: fbd61f08-fde1-48e3-b431-57fda06e7aa9
    ports:
      - id: 1
        trtype: rdma
        traddr: 192.168.100.1
        trsvcid: 4420
        subsystems:
          - nqn.2024-01.io.lab:gpu-pool-1

- name: Target and its RDMA fabric link in one module run
  nvmeofctl.fabric.nvmet_target:
    rdma:
      interface: eth1
      mtu: 9000
      soft_roce: true
    subsystems: []

- name: Target with two RoCE ports (rails), both links reconciled in the same module run
  nvmeofctl.fabric.nvmet_target:
    rdma:
      interface: ens1f0
      mtu: 9000
    rdma_rails:
      - interface: ens1f1
        mtu: 9000
    subsystems: []
"""

RETURN = r"""
changes:
  description:
    - Ordered changes (predicted in check mode); no secret values. With O(rdma) and
      O(rdma_rails), the RDMA links' changes come first (rail 1, then rails 2, 3, ...).
    - When the module fails, the changes made (or refused) before the failure.
  returned: success, and on failures after the change list is known
  type: list
  elements: dict
  contains:
    object:
      description: What changes (C(host <nqn>), C(subsystem <nqn>), C(port 1), C(file <path>), ...).
      type: str
    action:
      description: C(create), C(update) or C(delete).
      type: str
    detail:
      description: The change itself (old and new values, configfs writes); keys never appear.
      type: str
    disruptive:
      description: Whether the change interrupts hosts' I/O or connections.
      type: bool
    reason:
      description: Why the change is needed.
      type: str
    kind:
      description: What kind of object changes (C(host), C(subsystem), C(namespace), C(port), C(file), C(modules), C(persist), ...).
      type: str
    key:
      description: The object's identity (NQNs, namespace id, port id or path).
      type: list
      elements: str
      returned: except for the RDMA links' changes
  sample:
    - object: port 1
      action: update
      detail: "traddr: 10.0.0.1 -> 10.0.0.2; unlink 1 subsystem(s), write, relink"
      disruptive: true
      reason: hosts connected through this port are disconnected ...
      kind: port
      key:
        - "1"
disruptive:
  description: Whether any change is disruptive.
  returned: success, and when disruptive changes are refused (O(allow_disruptive=false))
  type: bool
diff:
  description:
    - Text of the managed configuration before and after (keys shown as C(<secret>) or
      C(<changed>)), then the state and persistence files; with O(rdma) and O(rdma_rails), the
      RDMA links' states first.
  returned: in diff mode (C(--diff))
  type: dict
  contains:
    before:
      description: Before the run.
      type: str
    after:
      description: After the run (predicted in check mode).
      type: str
observed:
  description: nvmet state read before the changes (keys as sha256 digests only).
  returned: success
  type: dict
  contains:
    hosts:
      description: Host NQN to its DH-HMAC-CHAP settings (key digests, hash, DH group).
      type: dict
    subsystems:
      description: Subsystem NQN to its attributes, allowed hosts and namespaces.
      type: dict
    ports:
      description: Port id to its address and linked subsystems.
      type: dict
    files:
      description: Backing file path to its size (or why it is not a plain file).
      type: dict
managed:
  description: Objects recorded in nvmet-managed.json after this run (hosts, subsystems, ports, files).
  returned: success
  type: dict
foreign:
  description: Objects in configfs that nvmeofctl does not manage and left alone.
  returned: success
  type: list
  elements: str
  sample:
    - subsystem nqn.2024-01.io.other:pool
rdma:
  description: The RDMA link's result (the module ran with O(rdma)).
  returned: when O(rdma) is set
  type: dict
  contains:
    rdma_device:
      description: The RDMA device bound to the interface.
      type: str
    observed:
      description: The link's observed state (see M(nvmeofctl.fabric.rdma_link)).
      type: dict
    changed:
      description: Whether the link changed.
      type: bool
rdma_rails:
  description: The results of the RDMA links of O(rdma_rails) (rails 2, 3, ...), in the same order.
  returned: when O(rdma_rails) is set (not empty)
  type: list
  elements: dict
  contains:
    rdma_device:
      description: The RDMA device bound to the rail's interface.
      type: str
    observed:
      description: The link's observed state (see M(nvmeofctl.fabric.rdma_link)).
      type: dict
    changed:
      description: Whether the link changed.
      type: bool
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nvmeofctl.fabric.plugins.module_utils.rdma import (
    ARGUMENT_SPEC as RDMA_ARGUMENT_SPEC, reconcile_links,
)
from ansible_collections.nvmeofctl.fabric.plugins.module_utils.nvmet import (
    CONFIGFS_ROOT, LIB_DIR, STATE_DIR, SYS_MODULE_DIR, UNIT_DIR,
    ConfigFS, NvmetError, apply, backing_file_problems, changed_secrets, diff, foreign_objects,
    load_managed, managed_after, managed_change, managed_text, missing_modules, ns_label, persist_changes,
    persist_removal, probe_files, public_change, read_tree, render, simulate, normalize,
)
from ansible_collections.nvmeofctl.fabric.plugins.module_utils import bootapp, persist
from ansible_collections.nvmeofctl.fabric.plugins.module_utils.fileio import write_file
from ansible_collections.nvmeofctl.fabric.plugins.module_utils.persist import HOST_FILES_SPEC
from ansible_collections.nvmeofctl.fabric.plugins.module_utils.backing import (
    BlockProbe, namespaces_to_check,
)
from ansible_collections.nvmeofctl.fabric.plugins.module_utils.validators import (
    DEFAULT_BACKING_PREFIXES, backing_path_problem, dhchap_secret_message, dhchap_secret_problem,
    ip_problem, name_problem, nqn_problem, prefix_problem, serial_problem, size_problem,
    signature_problem, uuid_text_problem,
)

ARGUMENT_SPEC = dict(
    hosts=dict(type="list", elements="dict", default=[], options=dict(
        nqn=dict(type="str", required=True),
        dhchap_key=dict(type="str", no_log=True),
        dhchap_ctrl_key=dict(type="str", no_log=True),
        reauth=dict(type="bool", default=False),
    )),
    subsystems=dict(type="list", elements="dict", default=[], options=dict(
        nqn=dict(type="str", required=True),
        serial=dict(type="str"),
        model=dict(type="str", default="nvmeofctl"),
        allowed_hosts=dict(type="list", elements="str", default=[]),
        cntlid_min=dict(type="int"),
        cntlid_max=dict(type="int"),
        namespaces=dict(type="list", elements="dict", default=[], options=dict(
            nsid=dict(type="int", required=True),
            name=dict(type="str"),
            device_path=dict(type="str", required=True),
            uuid=dict(type="str"),
            nguid=dict(type="str"),
            size=dict(type="int"),
            create_file=dict(type="bool", default=False),
            ana_grpid=dict(type="int"),
            signature=dict(type="str"),
        )),
    )),
    ports=dict(type="list", elements="dict", default=[], options=dict(
        id=dict(type="int", required=True),
        trtype=dict(type="str", required=True, choices=["rdma", "tcp"]),
        adrfam=dict(type="str", default="ipv4", choices=["ipv4", "ipv6"]),
        traddr=dict(type="str", required=True),
        trsvcid=dict(type="int", default=4420),
        subsystems=dict(type="list", elements="str", default=[]),
        ana_groups=dict(type="list", elements="dict", options=dict(
            grpid=dict(type="int", required=True),
            state=dict(type="str", required=True,
                       choices=["optimized", "non-optimized", "inaccessible", "persistent-loss", "change"]),
        )),
    )),
    backing_prefixes=dict(type="list", elements="str", default=list(DEFAULT_BACKING_PREFIXES)),
    persist=dict(type="bool", default=True),
    rdma=dict(type="dict", options=dict(RDMA_ARGUMENT_SPEC)),
    rdma_rails=dict(type="list", elements="dict", options=dict(RDMA_ARGUMENT_SPEC)),
    allow_disruptive=dict(type="bool", default=False),
    configfs_root=dict(type="path", default=CONFIGFS_ROOT),
    state_dir=dict(type="path", default=STATE_DIR),
    lib_dir=dict(type="path", default=LIB_DIR),
    unit_dir=dict(type="path", default=UNIT_DIR),
    host_files=HOST_FILES_SPEC,
)

# Seconds a port link is retried while the fabric address is not configured yet (the boot-time
# restore waits 60 s; during a deploy rdma_link ran just before, so a short wait suffices).
LINK_TIMEOUT = 10.0


def configfs(root):
    """The nvmet configfs layer of this run (the seam unit tests replace with one over a plain
    directory tree; see tests/fixtures/collection/target/faketarget.py)."""
    return ConfigFS(root)


def option_problems(p):
    """Every option checked with the cluster spec's rules (validators.py), before anything is
    touched: ["<option path>: <problem>"]. Never contains a key."""
    out = []

    def check(where, problem):
        if problem:
            out.append("%s: %s" % (where, problem))

    prefixes = p.get("backing_prefixes")
    prefixes = list(DEFAULT_BACKING_PREFIXES) if prefixes is None else prefixes
    for i, pre in enumerate(prefixes):
        check("backing_prefixes[%d]" % i, prefix_problem(pre))
    for i, h in enumerate(p.get("hosts") or []):
        where = "hosts[%d]" % i
        check(where + ".nqn", nqn_problem(h.get("nqn")))
        for k in ("dhchap_key", "dhchap_ctrl_key"):
            if h.get(k) is not None:
                problem = dhchap_secret_problem(h[k])
                check("%s.%s" % (where, k), problem and dhchap_secret_message(problem))
    for i, s in enumerate(p.get("subsystems") or []):
        where = "subsystems[%d]" % i
        check(where + ".nqn", nqn_problem(s.get("nqn")))
        if s.get("serial") is not None:
            check(where + ".serial", serial_problem(s["serial"]))
        for j, hn in enumerate(s.get("allowed_hosts") or []):
            check("%s.allowed_hosts[%d]" % (where, j), nqn_problem(hn))
        for j, n in enumerate(s.get("namespaces") or []):
            nw = "%s.namespaces[%d]" % (where, j)
            if n.get("name") is not None:
                check(nw + ".name", name_problem(n["name"]))
            check(nw + ".device_path", backing_path_problem(n.get("device_path"), tuple(prefixes)))
            if n.get("size") is not None:
                check(nw + ".size", size_problem(n["size"]))
            if n.get("uuid") is not None:
                check(nw + ".uuid", uuid_text_problem(n["uuid"]))
            if n.get("signature") is not None:
                check(nw + ".signature", signature_problem(n["signature"]))
    for i, port in enumerate(p.get("ports") or []):
        where = "ports[%d]" % i
        check(where + ".traddr", ip_problem(port.get("traddr")))
        for j, sn in enumerate(port.get("subsystems") or []):
            check("%s.subsystems[%d]" % (where, j), nqn_problem(sn))
    return out


def block_probe(module):
    """The block-device checks on this host (the seam tests replace with fake proc/sys trees)."""
    return BlockProbe(run=module.run_command, blkid=module.get_bin_path("blkid"))


def backing_problems(module, desired, observed, managed):
    """Refusals for backing stores, before anything is changed: existing files nvmeofctl did
    not create, and devices a new or moved namespace would export that are in use."""
    problems = backing_file_problems(desired, observed, managed)
    todo = namespaces_to_check(desired, observed)
    if todo:
        probe = block_probe(module)
        for nqn, nsid, ns in todo:
            why = probe.problem(ns["device_path"], ns.get("signature"))
            if why:
                problems.append("%s: %s; not exported" % (ns_label(nqn, nsid, ns), why))
    return problems


def run(module):
    p = module.params
    check = module.check_mode
    root = p["configfs_root"]
    problems = option_problems(p)
    if problems:
        module.fail_json(msg="nvmet_target: %s" % "; ".join(problems))
    try:
        desired = normalize(p)
        managed = load_managed(p["state_dir"])
    except (ValueError, NvmetError) as e:
        module.fail_json(msg="nvmet_target: %s" % e)

    # 1. backing stores: refused before anything is touched (a configfs tree that is not there
    #    yet, nvmet not loaded, reads as empty: every namespace is new)
    observed = read_tree(root)
    observed["files"] = probe_files(desired, managed["files"])
    problems = backing_problems(module, desired, observed, managed)
    if problems:
        module.fail_json(msg="nvmet_target: %s" % "; ".join(problems))

    changes = []

    # 2. kernel modules: one modprobe -a, skipped when loaded (SYS_MODULE_DIR: /sys/module)
    missing = missing_modules(desired, SYS_MODULE_DIR)
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

    # 3. observed state (again only when nvmet was just loaded), diff
    if missing and not check:
        files = observed["files"]
        observed = read_tree(root)
        observed["files"] = files
    try:
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

    # nvmet-managed.json after this run (what later runs may delete; the backing files
    # nvmeofctl made), predicted before anything changes
    new_managed = managed_after(desired, observed, cfg, managed)
    mpath, mtext, mstate, mchange = managed_change(p["state_dir"], new_managed)

    if not check and cfg:
        creating = [c["key"][2] for c in cfg if c["kind"] == "file" and c["action"] == "create"]
        if creating:
            # record the files before creating them: a run that fails (or dies) after creating
            # one must not leave a file the next run refuses as not nvmeofctl's. A path recorded
            # whose creation failed is forgotten by the next run (it does not exist).
            intent = dict(managed, files=sorted(set(managed["files"]) | set(creating)))
            write_file(mpath, managed_text(intent), 0o644)
        try:
            apply(root, desired, cfg, fs=configfs(root), link_timeout=LINK_TIMEOUT)
        except NvmetError as e:
            module.fail_json(msg="nvmet_target: %s" % e, changed=bool(e.done or changes),
                             changes=changes + [public_change(c) for c in e.done])
    changes.extend(public_change(c) for c in cfg)

    # 4. nvmet-managed.json
    extra_before, extra_after = [], []
    if mchange:
        changes.append(mchange)
        if not check:
            write_file(mpath, mtext, 0o644)
    extra_before.append("state %s: %s" % (mpath, mstate))
    extra_after.append("state %s: current" % mpath)

    # 5. boot persistence: nvmet.json (0600, keys), restore program, systemd unit; removed
    #    with persist false
    if p["persist"]:
        pchanges, states = persist_changes(desired, p["host_files"], bootapp.build(),
                                           p["state_dir"], p["lib_dir"], p["unit_dir"])
        extra_before += ["persist %s: %s" % st for st in states]
        extra_after += ["persist %s: current" % path for path, _st in states]
    else:
        pchanges = persist_removal(p["state_dir"], p["lib_dir"], p["unit_dir"])
        extra_before += ["persist %s: present" % c["key"][0] for c in pchanges if c["object"].startswith("file ")]
        extra_after += ["persist %s: absent" % c["key"][0] for c in pchanges if c["object"].startswith("file ")]
    if pchanges:
        if not check:
            _done, failures = persist.apply(pchanges, persist.systemctl_for(module, p["unit_dir"]))
            if failures:
                module.fail_json(msg="nvmet_target: %s" % "; ".join(failures), changed=True,
                                 changes=changes + [public_change(c) for c in pchanges])
        changes.extend(public_change(c) for c in pchanges)

    result = dict(
        changed=bool(changes),
        changes=changes,
        disruptive=any(c["disruptive"] for c in changes),
        observed=observed,
        managed=new_managed,
        foreign=foreign_objects(observed, desired, managed),
    )
    if module._diff:  # the diff only in diff mode (--diff), as Ansible's own modules do
        result["diff"] = dict(before=before + "".join(l + "\n" for l in extra_before),
                              after=after + "".join(l + "\n" for l in extra_after))
    module.exit_json(**result)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if module.params["persist"]:  # before any change: the boot files' texts come from the action plugin
        try:
            persist.require_texts(module.params["host_files"], ("nvmet_unit",), "nvmet_target")
        except ValueError as e:
            module.fail_json(msg="nvmet_target: %s" % e)
    if module.params.get("rdma") or module.params.get("rdma_rails"):  # the RDMA links first (ports/connections
        # need them), same run: rail 1 (rdma), then rails 2..N (rdma_rails)
        reconcile_links(module, module.params.get("rdma"), module.params.get("rdma_rails"), module.check_mode,
                        module.params["host_files"])
    run(module)


if __name__ == "__main__":
    main()
