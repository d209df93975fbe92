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

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nvmeofctl.fabric.plugins.module_utils.rdma import (
    CONFIGFS_ROOT, LIB_DIR, SYSFS_ROOT, UNIT_DIR, UNIT_NAME, choose_device, devices_on,
    file_state, module_loaded, normalize, parse_link_show, persistence_files, plan,
    read_gid_table, read_links_sysfs, read_mtu, read_rdma_cm, write_file,
)

ARGUMENT_SPEC = dict(
    interface=dict(type="str", required=True),
    mtu=dict(type="int"),
    soft_roce=dict(type="bool", default=False),
    rdma_device=dict(type="str"),
    roce_mode=dict(type="str", default="RoCE v2", choices=["RoCE v2", "IB/RoCE v1"]),
    roce_tos=dict(type="int"),
    persist=dict(type="bool", default=True),
    sysfs_root=dict(type="path", default=SYSFS_ROOT),
    configfs_root=dict(type="path", default=CONFIGFS_ROOT),
    lib_dir=dict(type="path", default=LIB_DIR),
    unit_dir=dict(type="path", default=UNIT_DIR),
)


def read_links(module, sysfs_root):
    """RDMA links from ``rdma -j link show``, or sysfs when iproute2's rdma is missing."""
    rdma = module.get_bin_path("rdma")
    if rdma:
        rc, out, _err = module.run_command([rdma, "-j", "link", "show"])
        if rc == 0:
            try:
                return parse_link_show(out)
            except ValueError:
                pass
    return read_links_sysfs(sysfs_root)


def observe(module, desired, p):
    links = read_links(module, p["sysfs_root"])
    obs = {
        "interface": desired["interface"],
        "mtu": read_mtu(desired["interface"], p["sysfs_root"]),
        "links": [l for l in links if l.get("netdev") == desired["interface"]],
        "modules": {"rdma_rxe": module_loaded("rdma_rxe", p["sysfs_root"]),
                    "rdma_cm": module_loaded("rdma_cm", p["sysfs_root"])
                    or os.path.isdir(os.path.join(p["configfs_root"], "rdma_cm"))},
    }
    return obs, links


def _cm_text(cm):
    if not cm.get("exposed"):
        return "not exposed"
    if not cm.get("exists"):
        return "not configured"
    return "default_roce_mode=%s default_roce_tos=%s" % (cm.get("default_roce_mode"), cm.get("default_roce_tos"))


def _state_text(ifname, mtu, device, bound, cm, files):
    lines = ["netdev %s: mtu %s" % (ifname, mtu),
             "rdma device: %s" % ("%s (bound to %s)" % (device, ifname) if bound else "none"),
             "rdma_cm %s port 1: %s" % (device, _cm_text(cm))]
    lines += ["persist %s: %s" % f for f in files]
    return "\n".join(lines) + "\n"


def run(module):
    p = module.params
    check = module.check_mode
    try:
        desired = normalize(p)
    except ValueError as e:
        module.fail_json(msg="rdma_link: %s" % e)
    ifname = desired["interface"]

    obs, links = observe(module, desired, p)
    try:
        device, create = choose_device(desired, links)
        obs["rdma_cm"] = read_rdma_cm(device, 1, p["configfs_root"])
        changes, device = plan(desired, obs)
    except ValueError as e:
        module.fail_json(msg="rdma_link: %s" % e)

    cm_before = obs["rdma_cm"]
    cm_after = dict(cm_before)
    cm_change = next((c for c in changes if c["kind"] == "rdma_cm"), None)
    if cm_change:
        cm_after.update(exposed=True, exists=True, default_roce_mode=desired["roce_mode"])
        if desired["roce_tos"] is not None:
            cm_after["default_roce_tos"] = desired["roce_tos"]

    if not check:
        for c in list(changes):
            kind = c["kind"]
            if kind == "mtu":
                _run(module, [module.get_bin_path("ip", required=True), "link", "set", "dev", ifname,
                              "mtu", str(desired["mtu"])], changes)
            elif kind == "modules":
                mods = c["detail"].split()[2:]
                _run(module, [module.get_bin_path("modprobe", required=True), "-a"] + mods, changes)
            elif kind == "rxe":
                _run(module, [module.get_bin_path("rdma", required=True), "link", "add", device,
                              "type", "rxe", "netdev", ifname], changes)
                links = read_links(module, p["sysfs_root"])
                if device not in devices_on(links, ifname):
                    module.fail_json(msg="rdma_link: rdma link add %s succeeded but the device is not "
                                         "bound to %s (rdma link show)" % (device, ifname), changed=True,
                                     changes=changes)
            elif kind == "rdma_cm":
                base = os.path.join(p["configfs_root"], "rdma_cm")
                if not os.path.isdir(base):
                    changes.remove(c)  # predicted before rdma_cm was loaded; its configfs is absent
                    cm_after = read_rdma_cm(device, 1, p["configfs_root"])
                    module.warn("rdma_cm configfs not exposed (%s): RoCE mode/TOS left at kernel "
                                "defaults" % base)
                    continue
                try:
                    d = os.path.join(base, device)
                    if not os.path.isdir(d):
                        os.mkdir(d)
                    pdir = os.path.join(d, "ports", "1")
                    if not os.path.isdir(pdir):  # real configfs creates it with <dev>; plain dirs in tests
                        os.makedirs(pdir)
                    _write(os.path.join(pdir, "default_roce_mode"), desired["roce_mode"])
                    if desired["roce_tos"] is not None:
                        _write(os.path.join(pdir, "default_roce_tos"), str(desired["roce_tos"]))
                except OSError as e:
                    module.fail_json(msg="rdma_link: rdma_cm %s: %s" % (device, e.strerror or e),
                                     changed=True, changes=changes)
                cm_after = read_rdma_cm(device, 1, p["configfs_root"])

    files_before, files_after = [], []
    if p["persist"]:
        unit_changed = False
        for path, content, mode in persistence_files(desired, device, p["lib_dir"], p["unit_dir"], p["configfs_root"]):
            st = file_state(path, content, mode)
            files_before.append((path, st))
            files_after.append((path, "current"))
            if st == "current":
                continue
            unit = path.endswith(UNIT_NAME)
            unit_changed = unit_changed or unit
            changes.append({"object": "file %s" % path, "action": "create" if st == "absent" else "update",
                            "detail": "mode %04o%s" % (mode, "; systemctl daemon-reload" if unit else ""),
                            "disruptive": False, "reason": "missing" if st == "absent" else "content or mode differ",
                            "kind": "persist"})
            if not check:
                write_file(path, content, mode)
        wants = os.path.join(p["unit_dir"], "multi-user.target.wants", UNIT_NAME)
        # systemctl only for the real unit directory (another unit_dir is a test tree)
        if p["unit_dir"] == UNIT_DIR and (unit_changed or not os.path.lexists(wants)):
            changes.append({"object": "systemd %s" % UNIT_NAME, "action": "update",
                            "detail": "systemctl enable (runs at boot; not started now)", "disruptive": False,
                            "reason": "unit new or changed" if unit_changed else "not enabled", "kind": "persist"})
            if not check:
                systemctl = module.get_bin_path("systemctl")
                if not systemctl:
                    module.warn("systemctl not found: %s written but not enabled" % UNIT_NAME)
                else:
                    if unit_changed:
                        _run(module, [systemctl, "daemon-reload"], changes)
                    _run(module, [systemctl, "enable", UNIT_NAME], changes)

    if check:
        bound_links, mtu_now, cm_final = obs["links"], obs["mtu"], cm_before
        mtu_after = desired["mtu"] if desired["mtu"] is not None else obs["mtu"]
    elif not any(c["kind"] in ("mtu", "modules", "rxe", "rdma_cm") for c in changes):
        bound_links, mtu_now, cm_final = obs["links"], obs["mtu"], cm_after  # nothing changed: no re-read
        mtu_after = mtu_now
    else:
        obs_after, _links = observe(module, desired, p)
        bound_links, mtu_now, cm_final = obs_after["links"], obs_after["mtu"], cm_after
        mtu_after = mtu_now
    result_obs = {
        "interface": ifname,
        "mtu": mtu_now,
        "links": bound_links,
        "gids": [] if (check and create) else read_gid_table(device, 1, p["sysfs_root"]),
        "rdma_cm": ({k: cm_final[k] for k in ("default_roce_mode", "default_roce_tos")}
                    if cm_final.get("exists") else _cm_text(cm_final)),
    }
    module.exit_json(
        changed=bool(changes),
        changes=changes,
        disruptive=any(c["disruptive"] for c in changes),
        rdma_device=device,
        observed=result_obs,
        diff=dict(
            before=_state_text(ifname, obs["mtu"], device, not create, cm_before, files_before),
            after=_state_text(ifname, mtu_after, device, True, cm_after, files_after),
        ),
    )


def _write(path, value):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _run(module, cmd, changes):
    rc, _out, err = module.run_command(cmd)
    if rc != 0:
        module.fail_json(msg="rdma_link: %s failed (rc=%d): %s" % (" ".join(cmd[1:]), rc, (err or "").strip()),
                         changed=bool(changes), changes=changes)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    run(module)


if __name__ == "__main__":
    main()
