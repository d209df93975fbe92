#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nvmeofctl contributors
# Apache-2.0
from __future__ import annotations

# connect failures that mean "the target is not ready yet" (retried within connect_wait)
NOT_READY = ("no_listener", "refused", "unreachable")
RETRY_INTERVAL = 3

DOCUMENTATION = r"""
---
module: nvme_host
version_added: 0.1.0
short_description: Converge a GPU node's NVMe-oF initiator (identity, connections, persistence)
description:
  - Reads the node's state from sysfs (C(/sys/class/nvme), C(/sys/class/nvme-subsystem),
    C(/sys/block)) and C(/etc/nvme), compares it with the options, and changes only the
    difference. One call per node.
  - Connects missing paths with C(nvme connect) bounded by its own timeout, disconnects managed
    paths the spec dropped (by controller name), reconnects paths whose transport, address,
    reconnect policy, host identity or DH-HMAC-CHAP setting differ, sets the multipath
    C(iopolicy) of managed subsystems, writes C(/etc/nvme/hostnqn) and C(/etc/nvme/hostid).
  - Controllers of subsystems that are neither in O(connections) nor recorded in
    O(state_dir)/initiator-managed.json, and PCIe controllers, are never touched.
  - With O(persist), writes O(state_dir)/connections.json (mode 0600, holds secrets), copies its
    helper to O(lib_dir)/nvme_host.py and enables C(nvmeofctl-connect.service), which connects
    the paths at boot and retries failures with backoff for about 10 minutes.
  - Check mode predicts C(changed) and the change list (and RV(diff) in diff mode) without
    writing anything.
extends_documentation_fragment:
  - nvmeofctl.fabric.rdma
  - nvmeofctl.fabric.rdma.rails
  - nvmeofctl.fabric.host_files
options:
  hostnqn:
    description:
      - Host NQN of this node (unique fleet-wide).
    type: str
    required: true
  hostid:
    description:
      - Host ID (UUID) paired with O(hostnqn).
    type: str
    required: true
  connections:
    description:
      - Every path this node must have. Identity is (subsysnqn, transport, traddr, trsvcid).
    type: list
    elements: dict
    default: []
    suboptions:
      subsysnqn:
        description:
          - NQN of the subsystem to connect to.
        type: str
        required: true
      transport:
        description:
          - Fabric transport.
        type: str
        choices:
          - rdma
          - tcp
        default: rdma
      traddr:
        description:
          - The target port's address.
        type: str
        required: true
      trsvcid:
        description:
          - The target port (service id), 1 to 65535.
        type: str
        default: "4420"
      host_traddr:
        description:
          - Local source address to bind.
        type: str
      dhchap_secret:
        description:
          - DH-HMAC-CHAP host secret (C(DHHC-1:...)). Never returned or logged.
        type: str
      dhchap_ctrl_secret:
        description:
          - DH-HMAC-CHAP controller secret (bidirectional authentication). Never returned or
            logged.
        type: str
  ctrl_loss_tmo:
    description:
      - Seconds before a lost controller is removed; C(-1) never (the cluster spec's default).
    type: int
    default: -1
  reconnect_delay:
    description:
      - Seconds between reconnect attempts.
    type: int
    default: 10
  keep_alive_tmo:
    description:
      - Keep-alive timeout in seconds.
    type: int
    default: 5
  nr_io_queues:
    description:
      - Number of I/O queues. Applied at connect time only (not compared afterwards).
    type: int
  queue_size:
    description:
      - I/O queue depth. Applied at connect time only (not compared afterwards).
    type: int
  iopolicy:
    description:
      - Multipath I/O policy of the managed subsystems; unset leaves it alone.
    type: str
    choices:
      - numa
      - round-robin
      - queue-depth
  connect_timeout:
    description:
      - Hard limit per C(nvme connect), in seconds.
    type: int
    default: 30
  connect_wait:
    description:
      - Keep retrying, for at most this many seconds, a connect that fails because the target is
        not ready yet (no listener, connection refused, host not yet allowed), so GPU nodes can be
        configured in parallel with the targets they connect to.
    type: int
    default: 0
  allow_disruptive:
    description:
      - When false, fail before changing anything if a change would drop or re-create a
        connection. The default (false) never drops a path unless asked to.
    type: bool
    default: false
  persist:
    description:
      - Install the boot-time reconnect unit, its config and the boot program
        (O(lib_dir)/nvmeofctl-boot.pyz, built from the collection's module_utils; the helper
        earlier versions copied, O(lib_dir)/nvme_host.py, is removed). When false, removes them
        (the boot program only when no C(nvmeofctl-nvmet.service) uses it).
    type: bool
    default: true
  phase:
    description:
      - V(all) converges everything. V(release) only disconnects the managed paths the options
        no longer list (nothing else, no connects, no files), so a playbook can release the
        paths to an export on every GPU node BEFORE the target removes that export.
    type: str
    choices:
      - all
      - release
    default: all
  only:
    description:
      - Act only on the connections to these subsystems (NQNs), to connect, reconnect, re-key and
        disconnect only those, and set only their multipath policy; every other controller is left
        as it is. The host identity files, the managed-connection record and the boot-time files
        still follow O(connections). Unset acts on every connection.
      - For maintenance on one node (C(nvmeofctl connect) and C(nvmeofctl disconnect) with C(--node)),
        with the same diff as a full run.
    type: list
    elements: str
  only_traddr:
    description:
      - Act only on the connections and controllers to these target addresses (with O(only), to
        both); every other controller is left as it is. The managed-connection record keeps what it
        recorded for the other addresses (a later run can still remove those paths); the boot-time
        files follow O(connections).
      - For C(nvmeofctl rollout), which changes the paths through one target while the other paths
        carry the I/O.
    type: list
    elements: str
  disconnect_timeout:
    description:
      - Hard limit per C(nvme disconnect), in seconds. One that does not finish fails with the
        controller's sysfs state; a controller left C(deleting) is ignored by later runs (a path
        still wanted gets a new controller), one left C(connecting) is disconnected again.
    type: int
    default: 30
  sysfs_root:
    description:
      - sysfs root (tests use a fake tree).
    type: path
    default: /sys
  etc_root:
    description:
      - C(/etc) root; for C(ROOT/etc) C(systemctl) runs with C(--root=ROOT).
    type: path
    default: /etc
  state_dir:
    description:
      - Where the managed-connection record and the boot-time config live.
    type: path
    default: /etc/nvmeofctl
  lib_dir:
    description:
      - Where the boot program C(nvmeofctl-boot.pyz) is installed.
    type: path
    default: /usr/local/lib/nvmeofctl
author:
  - nvmeofctl contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Connect a GPU node to its target over RoCE v2
  nvmeofctl.fabric.nvme_host:
    hostnqn: nqn.2014-08.org.nvmexpress:uuid:f4a3064a-a702-4134-ab62-ed4d001ffe8b
    hostid: f4a3064a-a702-4134-ab62-ed4d001ffe8b
    connections:
      - subsysnqn: nqn.2024-01.io.lab:gpu-pool-1
        transport: rdma
        traddr: 192.168.100.1
        trsvcid: "4420"
    ctrl_loss_tmo: 600
    reconnect_delay: 10
    iopolicy: round-robin

- name: Release the paths to an export before the target removes it
  nvmeofctl.fabric.nvme_host:
    hostnqn: nqn.2014-08.org.nvmexpress:uuid:f4a3064a-a702-4134-ab62-ed4d001ffe8b
    hostid: f4a3064a-a702-4134-ab62-ed4d001ffe8b
    connections: []
    phase: release
"""

RETURN = r"""
changes:
  description:
    - What was (or, in check mode, would be) done. With O(rdma) and O(rdma_rails), the RDMA
      links' changes come first (rail 1, then rails 2, 3, ...).
    - When the module fails, the steps that succeeded before the failure.
  type: list
  elements: dict
  returned: success, and on failures after the options were checked
  contains:
    object:
      description: What changes (C(connection:<label>), C(subsystem:<nqn>), C(file:<path>), C(unit:<name>), ...).
      type: str
    action:
      description: C(connect), C(disconnect), C(reconnect), C(rekey), C(set-iopolicy), C(write), C(remove), C(enable), ...
      type: str
    detail:
      description: The change itself; secrets never appear.
      type: str
    disruptive:
      description: Whether the change drops or re-creates a connection.
      type: bool
    reason:
      description: Why the change is needed.
      type: str
    kind:
      description: What kind of RDMA link object changes (see M(nvmeofctl.fabric.rdma_link)).
      type: str
      returned: for the RDMA links' changes (O(rdma), O(rdma_rails))
  sample:
    - object: "connection:rdma://192.168.100.1:4420/nqn.2024-01.io.lab:gpu-pool-1"
      action: connect
      detail: new rdma path
      disruptive: false
      reason: exported to this host by the spec
diff:
  description: The node's identity, managed connections, iopolicy and files as text, no secrets.
  returned: in diff mode (C(--diff))
  type: dict
  contains:
    before:
      description: Before the run.
      type: str
    after:
      description: After the run (predicted in check mode).
      type: str
controllers:
  description: Fabrics controllers after the run (before it, in check mode); no secrets.
  type: list
  elements: dict
  returned: success, and on failures after the options were checked
  contains:
    name:
      description: Controller name (C(nvme0)).
      type: str
    subsysnqn:
      description: Subsystem NQN.
      type: str
    transport:
      description: C(rdma) or C(tcp).
      type: str
    address:
      description: The controller's address fields (traddr, trsvcid, host_traddr, ...).
      type: dict
    state:
      description: Controller state (C(live), C(connecting), ...).
      type: str
    managed:
      description: Whether nvmeofctl manages this path.
      type: bool
    dhchap:
      description: Whether DH-HMAC-CHAP is set on the controller.
      type: bool
    namespaces:
      description: Namespaces (name, block, nsid, uuid, nguid, ana_state).
      type: list
      elements: dict
failures:
  description: One line per failed step (also joined into C(msg) when the task fails).
  type: list
  elements: str
  returned: on failure
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
import time
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nvmeofctl.fabric.plugins.module_utils.rdma import (
    ARGUMENT_SPEC as RDMA_ARGUMENT_SPEC, reconcile_links,
)
from ansible_collections.nvmeofctl.fabric.plugins.module_utils.nvme_host import (
    conn_key, connect, describe_desired, describe_observed, disconnect, ensure_modules, file_changes,
    key_label, normalize_desired, paths_for, plan, public_controllers, read_state, redact, rekey,
    set_iopolicy,
)
from ansible_collections.nvmeofctl.fabric.plugins.module_utils import bootapp, persist, validators
from ansible_collections.nvmeofctl.fabric.plugins.module_utils.change import public as public_change
from ansible_collections.nvmeofctl.fabric.plugins.module_utils.fileio import write_file

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _file_plan(p, desired, managed):
    """Changes for the managed-connections record and the boot persistence (module_utils)."""
    return file_changes(desired, bootapp.build(), p["host_files"], p["state_dir"], p["lib_dir"],
                        os.path.join(p["etc_root"], "systemd", "system"), p["persist"], managed=managed)


def _file_lines(fchanges, after):
    out = []
    for ch in fchanges:
        name = ch["object"][5:] if ch["object"].startswith("file ") else ch["object"]
        if after:
            out.append("  %s: %s\n" % (name, "removed" if ch["action"] in ("remove", "disable") else "up to date"))
        else:
            out.append("  %s: %s\n" % (name, "present" if ch["action"] in ("remove", "disable") else "absent or differs"))
    return "".join(out)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            hostnqn=dict(type="str", required=True),
            hostid=dict(type="str", required=True),
            connections=dict(type="list", elements="dict", default=[], options=dict(
                subsysnqn=dict(type="str", required=True),
                transport=dict(type="str", choices=["rdma", "tcp"], default="rdma"),
                traddr=dict(type="str", required=True),
                trsvcid=dict(type="str", default="4420"),
                host_traddr=dict(type="str"),
                dhchap_secret=dict(type="str", no_log=True),
                dhchap_ctrl_secret=dict(type="str", no_log=True),
            )),
            ctrl_loss_tmo=dict(type="int", default=-1),
            reconnect_delay=dict(type="int", default=10),
            keep_alive_tmo=dict(type="int", default=5),
            nr_io_queues=dict(type="int"),
            queue_size=dict(type="int"),
            iopolicy=dict(type="str", choices=["numa", "round-robin", "queue-depth"]),
            connect_timeout=dict(type="int", default=30),
            connect_wait=dict(type="int", default=0),
            allow_disruptive=dict(type="bool", default=False),
            persist=dict(type="bool", default=True),
            phase=dict(type="str", choices=["all", "release"], default="all"),
            only=dict(type="list", elements="str"),
            only_traddr=dict(type="list", elements="str"),
            disconnect_timeout=dict(type="int", default=30),
            sysfs_root=dict(type="path", default="/sys"),
            etc_root=dict(type="path", default="/etc"),
            state_dir=dict(type="path", default="/etc/nvmeofctl"),
            lib_dir=dict(type="path", default="/usr/local/lib/nvmeofctl"),
            rdma=dict(type="dict", options=dict(RDMA_ARGUMENT_SPEC)),
            rdma_rails=dict(type="list", elements="dict", options=dict(RDMA_ARGUMENT_SPEC)),
            host_files=persist.HOST_FILES_SPEC,
        ),
        supports_check_mode=True,
    )
    if module.params["persist"]:  # before any change: the boot files' texts come from the action plugin
        try:
            persist.require_texts(module.params["host_files"], ("connect_unit",), "nvme_host")
        except ValueError as e:
            module.fail_json(msg="nvme_host: %s" % e)
    if module.params.get("rdma") or module.params.get("rdma_rails"):  # the RDMA links first (ports/connections
        # need them), same run: rail 1 (rdma), then rails 2..N (rdma_rails)
        reconcile_links(module, module.params.get("rdma"), module.params.get("rdma_rails"), module.check_mode,
                        module.params["host_files"])
    p = module.params
    desired = normalize_desired({k: p[k] for k in (
        "hostnqn", "hostid", "connections", "ctrl_loss_tmo", "reconnect_delay", "keep_alive_tmo",
        "nr_io_queues", "queue_size", "iopolicy", "connect_timeout", "only", "only_traddr")})
    secrets = [s for c in desired["connections"] for s in (c["dhchap_secret"], c["dhchap_ctrl_secret"]) if s]

    if not _UUID_RE.fullmatch(desired["hostid"] or ""):
        module.fail_json(msg="hostid %r is not a UUID" % desired["hostid"])
    # the same rules as the cluster spec: options are hostile input too
    problems = []
    problem = validators.nqn_problem(desired["hostnqn"])
    if problem:
        problems.append("hostnqn %r: %s" % (desired["hostnqn"], problem))
    for i, c in enumerate(desired["connections"]):
        where = "connections[%d]" % i
        for field, check in (("subsysnqn", validators.nqn_problem), ("traddr", validators.ip_problem),
                             ("host_traddr", validators.ip_problem)):
            if field == "host_traddr" and not c.get(field):
                continue
            problem = check(c.get(field))
            if problem:
                problems.append("%s.%s %r: %s" % (where, field, c.get(field), problem))
        if not str(c.get("trsvcid") or "").isdigit() or not 0 < int(c["trsvcid"]) < 65536:
            problems.append("%s.trsvcid: a port number 1-65535" % where)
        for field in ("dhchap_secret", "dhchap_ctrl_secret"):
            if c.get(field):
                problem = validators.dhchap_secret_problem(c[field])
                if problem:  # never the value
                    problems.append("%s.%s: %s" % (where, field, validators.dhchap_secret_message(problem)))
    for nqn in desired["only"] or []:
        problem = validators.nqn_problem(nqn)
        if problem:
            problems.append("only %r: %s" % (nqn, problem))
    for addr in desired["only_traddr"] or []:
        problem = validators.ip_problem(addr)
        if problem:
            problems.append("only_traddr %r: %s" % (addr, problem))
    if problems:
        module.fail_json(msg=redact("invalid options: " + "; ".join(problems), secrets))
    seen = set()
    for c in desired["connections"]:
        k = conn_key(c)
        if k in seen:
            module.fail_json(msg="connection %s is listed twice" % key_label(k))
        seen.add(k)

    paths = paths_for(os.path.join(p["sysfs_root"], "class", "nvme"),
                      os.path.join(p["etc_root"], "nvme"), p["state_dir"])
    observed = read_state(paths["ctrl"], paths["etc"], paths["state_dir"])

    changes = plan(desired, observed, paths["etc"])  # each change carries its op (private)
    fchanges = _file_plan(p, desired, observed["managed"])
    if p["phase"] == "release":  # only drop the paths that are going away; the rest comes later
        changes = [ch for ch in changes if ch["op"]["op"] == "disconnect"]
        fchanges = []
    before = describe_observed(observed, desired) + "files:\n" + _file_lines(fchanges, after=False)
    after = describe_desired(desired) + "files:\n" + _file_lines(fchanges, after=True)
    result = dict(changed=bool(changes or fchanges), changes=[public_change(ch) for ch in changes + fchanges],
                  controllers=public_controllers(observed, [conn_key(c) for c in desired["connections"]]
                                                 + [tuple(k) for k in observed["managed"]]))
    if module._diff:  # the diff only in diff mode (--diff), as Ansible's own modules do
        result["diff"] = {"before": redact(before, secrets), "after": redact(after, secrets)}

    conflicts = [ch for ch in changes if ch["action"] == "conflict"]
    if module.check_mode:
        if conflicts:
            result["warnings"] = [redact("%s: %s" % (ch["object"], ch["reason"]), secrets) for ch in conflicts]
        module.exit_json(**result)
    disruptive = [ch for ch in changes if ch.get("disruptive")]
    if disruptive and not p["allow_disruptive"]:
        module.fail_json(msg=redact("refusing %d disruptive change(s) without allow_disruptive: %s" % (
            len(disruptive), "; ".join("%s (%s)" % (ch["object"], ch["reason"]) for ch in disruptive)), secrets),
            **result)
    if conflicts:
        module.fail_json(msg=redact("host identity conflict: %s: %s" % (
            conflicts[0]["object"], conflicts[0]["reason"]), secrets), **result)

    done, failures = [], []
    nvme = module.get_bin_path("nvme") or "nvme"
    timeout = desired["connect_timeout"]

    # 1. identity files
    for ch in changes:
        op = ch["op"]
        if op["op"] == "identity":
            write_file(os.path.join(paths["etc"], op["attr"]), op["value"] + "\n", 0o644)
            done.append(public_change(ch))
    # 2. disconnect dropped and duplicate paths; first half of reconnects
    for ch in changes:
        op = ch["op"]
        if op["op"] in ("disconnect", "reconnect"):
            err = disconnect(op["name"], nvme, timeout=p["disconnect_timeout"], ctrl_root=paths["ctrl"])
            if err:
                failures.append("%s: %s" % (key_label(op["key"]), err))
            elif op["op"] == "disconnect":
                done.append(public_change(ch))
    # 2b. new secrets for live controllers: re-authenticate in place
    for ch in changes:
        op = ch["op"]
        if op["op"] == "rekey":
            err = rekey(os.path.join(paths["ctrl"], op["name"]), op["conn"], op["attrs"])
            if err:
                failures.append("%s: %s" % (key_label(op["key"]), err))
            else:
                done.append(public_change(ch))
    # 3. connect (new paths and second half of reconnects)
    todo = [ch for ch in changes if ch["op"]["op"] in ("connect", "reconnect")]
    if todo:
        _loaded, err = ensure_modules({ch["op"]["conn"]["transport"] for ch in todo}, paths["module"])
        if err:
            failures.append(err)
    blocked = None
    for ch in todo:
        op = ch["op"]
        label = key_label(op["key"])
        if blocked:
            failures.append("%s: not attempted: the kernel serializes connects and the connect to "
                            "%s is still blocked" % (label, blocked))
            continue
        res = connect(op["conn"], desired, paths, timeout, nvme)
        deadline = time.monotonic() + p["connect_wait"]
        while not res["ok"] and res["category"] in NOT_READY and time.monotonic() < deadline:
            time.sleep(RETRY_INTERVAL)  # the target is still being configured: retry, bounded
            res = connect(op["conn"], desired, paths, timeout, nvme)
        if res["ok"]:
            done.append(dict(public_change(ch), detail="%s -> %s" % (ch["detail"], res["controller"])))
        else:
            failures.append("connect %s failed (%s): %s%s" % (
                label, res["category"], res["message"] or "no message",
                " (%s)" % res["hint"] if res["hint"] else ""))
            if res["category"] == "timeout":
                blocked = label
    # 4. iopolicy (also for subsystems that just appeared)
    if desired["iopolicy"] and p["phase"] == "all":
        now = read_state(paths["ctrl"], paths["etc"], paths["state_dir"])
        for nqn in sorted({c["subsysnqn"] for c in desired["connections"]}):
            s = now["subsystems"].get(nqn)
            if s and s.get("iopolicy") and s["iopolicy"] != desired["iopolicy"]:
                err = set_iopolicy(paths, s["name"], desired["iopolicy"])
                if err:
                    failures.append(err)
                else:
                    done.append({"object": "subsystem:%s" % nqn, "action": "set-iopolicy",
                                 "detail": "%s -> %s" % (s["iopolicy"], desired["iopolicy"]),
                                 "disruptive": False, "reason": "multipath I/O policy from the spec"})
    # 5. files, unit, enable (persist.py)
    fdone, ffailures = persist.apply(fchanges, persist.systemctl_for(module, os.path.join(p["etc_root"], "systemd", "system")))
    done += [public_change(ch) for ch in fdone]
    failures += ffailures

    final = read_state(paths["ctrl"], paths["etc"], paths["state_dir"])
    result.update(changed=bool(done), changes=done,
                  controllers=public_controllers(final, [conn_key(c) for c in desired["connections"]]))
    if failures:
        result["failures"] = [redact(f, secrets) for f in failures]
        msg = "; ".join(result["failures"])
        module.fail_json(msg=msg, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
