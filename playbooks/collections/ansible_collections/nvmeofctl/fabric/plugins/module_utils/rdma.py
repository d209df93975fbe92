"""RDMA fabric link (RoCE v2): parsers, observed state, plan and persistence for ``rdma_link``.

Split by concern, this module re-exporting every name (callers use ``rdma.X``): ``rdma_observe``
(constants, parsers, readers), ``rdma_plan`` (desired state, plan, boot files); the
module run (``reconcile``) lives here.

Stdlib only, no Ansible; the shared change shape and persistence come from sibling module_utils
(relative imports: the nvmeofctl package imports this as part of the module_utils package for
its facts and health checks).

Sources of truth, in order of preference (FACTS.md):
  * ``rdma -j link show``: which RDMA device is bound to which netdev;
  * ``/sys/class/infiniband/<dev>/ports/<p>/gid_attrs/ndevs/*``: the same without iproute2's rdma;
  * ``/sys/class/infiniband/<dev>/ports/<p>/gids/<i>`` + ``gid_attrs/types/<i>``: the GID table
    (reading an empty entry's type fails with EINVAL: skipped);
  * configfs ``rdma_cm/<dev>/ports/<p>/default_roce_mode`` / ``default_roce_tos`` (mkdir
    ``<dev>`` first; absent when rdma_cm's configfs support is not built or loaded).
"""

from __future__ import annotations

import os

from . import persist
from .change import public as public_change
from .rdma_observe import (
    CONFIGFS_ROOT, LIB_DIR, SYSFS_ROOT, UNIT_DIR, UNIT_NAME, devices_on, module_loaded,
    parse_link_show, read_gid_table, read_links_sysfs, read_mtu, read_rdma_cm,
)
from .rdma_plan import (
    boot_names, choose_device, host_files_keys, normalize, persist_changes, persist_removal, persistence_files,
    plan, rail_files, rail_files_view, rail_unit_interfaces, rail_units_command, stale_rail_removal,
)
from .rdma_observe import (  # re-exported: the one name space callers use
    DEVICE_FILE, ROCE_MODES, SCRIPT_NAME, ZERO_GID, _DEVNAME_RE, _IFNAME_RE, _PHYS_STATES, _PORT_STATES, _ls,
    _read, _state_name, dump_command, gid_ipv4, parse_dump, parse_gid_table,
)
from .rdma_plan import (  # re-exported: the one name space callers use
    _change, plan_from_dump, template_vars,
)

__all__ = [
    "ARGUMENT_SPEC", "CONFIGFS_ROOT", "DEVICE_FILE", "LIB_DIR", "ROCE_MODES", "SCRIPT_NAME", "SYSFS_ROOT",
    "UNIT_DIR", "UNIT_NAME", "ZERO_GID", "_DEVNAME_RE", "_IFNAME_RE", "_PHYS_STATES",
    "_PORT_STATES", "_change", "_cm_text", "_ls", "_read", "_run", "_state_name", "_state_text",
    "_write", "boot_names", "choose_device", "devices_on", "dump_command", "gid_ipv4", "host_files_keys",
    "merge_into", "module_loaded", "normalize", "observe", "parse_dump", "parse_gid_table", "parse_link_show",
    "persist_changes", "persist_removal", "persistence_files", "plan", "plan_from_dump", "rail_params",
    "rail_files", "rail_files_view", "rail_unit_interfaces", "rail_units_command", "stale_rail_removal",
    "read_gid_table", "read_links", "read_links_sysfs", "read_mtu", "read_rdma_cm", "reconcile",
    "reconcile_links", "template_vars", "with_defaults",
]


# --------------------------------------------------------------------------------------------
# the module run (shared by rdma_link, and by nvmet_target / nvme_host through their `rdma` and
# `rdma_rails` options)
# --------------------------------------------------------------------------------------------

ARGUMENT_SPEC = dict(
    interface=dict(type="str", required=True),
    mtu=dict(type="int"),
    soft_roce=dict(type="bool", default=False),
    rdma_device=dict(type="str"),
    roce_mode=dict(type="str", default="RoCE v2", choices=["RoCE v2", "IB/RoCE v1"]),
    roce_tos=dict(type="int"),
    persist=dict(type="bool", default=True),
    rail=dict(type="int", default=1),
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


def reconcile(module, p, check, texts=None, loaded=()):
    """The whole rdma_link run; returns the module result (fails through ``module.fail_json``).

    ``module`` is the calling AnsibleModule (duck-typed: run_command, get_bin_path, warn,
    fail_json), so nvmet_target and nvme_host run the RDMA link in their own module run.
    ``texts``: the calling module's ``host_files`` (the boot script and unit, rendered on the
    controller); needed when ``p["persist"]``. ``loaded``: in check mode, the kernel modules an
    earlier link of the same run would have loaded (``reconcile_links``), so a later rail
    predicts what it will find, not the untouched host.
    """
    try:
        desired = normalize(p)
        if p["persist"]:
            persist.require_texts(texts, host_files_keys(desired["rail"], desired["interface"]), "rdma_link")
    except ValueError as e:
        module.fail_json(msg="rdma_link: %s" % e)
    ifname = desired["interface"]

    obs, links = observe(module, desired, p)
    obs["modules"].update((m, True) for m in loaded)
    try:
        device, create = choose_device(desired, links)
        obs["rdma_cm"] = read_rdma_cm(device, 1, p["configfs_root"])
        if "rdma_cm" in loaded and not obs["rdma_cm"].get("exposed"):
            obs["rdma_cm"] = {"exposed": True, "exists": False}  # as plan assumes once rdma_cm loads
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
        pchanges, files_before = persist_changes(desired, device, texts, p["lib_dir"], p["unit_dir"])
        files_after = [(path, "current") for path, _st in files_before]
    else:  # the boot files go; the live link stays
        pchanges = persist_removal(p["lib_dir"], p["unit_dir"], rail=desired["rail"], interface=ifname)
        files_before = [(c["key"][0], "present") for c in pchanges if c["object"].startswith("file ")]
        files_after = [(path, "absent") for path, _st in files_before]
    if pchanges:
        if not check:
            _done, failures = persist.apply(pchanges, persist.systemctl_for(module, p["unit_dir"]))
            if failures:
                module.fail_json(msg="rdma_link: %s" % "; ".join(failures), changed=True,
                                 changes=changes + [public_change(c) for c in pchanges])
        changes += [public_change(c) for c in pchanges]

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
    return dict(
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


def with_defaults(opts):
    """rdma_link parameters from a partial dict (the role modules' ``rdma`` option)."""
    p = {k: v.get("default") for k, v in ARGUMENT_SPEC.items()}
    p.update({k: v for k, v in (opts or {}).items() if v is not None})
    return p


def rail_params(rdma_opts, rails_opts):
    """[(where, rdma_link parameters)] of the links a role module reconciles, in order: its
    ``rdma`` option (rail 1 unless it says otherwise), then its ``rdma_rails``, element i as rail
    i + 2 whatever ``rail`` it gives. Raises ValueError (one line) when two of them name the same
    interface (one interface, one rail)."""
    out, seen = [], {}
    links = ([("rdma", rdma_opts, None)] if rdma_opts else []) + [
        ("rdma_rails[%d]" % i, opts, i + 2) for i, opts in enumerate(rails_opts or [])]
    for where, opts, rail in links:
        p = with_defaults(opts)
        if rail is not None:
            p["rail"] = rail
        ifname = (p.get("interface") or "").strip()
        if ifname in seen:
            raise ValueError("%s: interface %s is already the fabric link of %s (one interface, one rail)"
                             % (where, ifname, seen[ifname]))
        seen[ifname] = where
        out.append((where, p))
    return out


def reconcile_links(module, rdma_opts, rails_opts, check, texts):
    """A role module's RDMA links (nvmet_target, nvme_host): its ``rdma`` option (rail 1) then its
    ``rdma_rails`` (rails 2..N), reconciled one after the other in the module's own run, before
    its own work; their results then go with the module's (``merge_into``). Every link's options
    and texts are checked before any link changes; a link that fails reports the changes the
    links before it made."""
    try:
        links = rail_params(rdma_opts, rails_opts)
    except ValueError as e:
        module.fail_json(msg="rdma_link: %s" % e)
    # the options of every link first (the action plugin renders no text when one is invalid)
    for step in ("options", "texts"):
        for where, p in links:
            try:
                desired = normalize(p)
                if step == "texts" and p["persist"]:
                    persist.require_texts(texts, host_files_keys(desired["rail"], desired["interface"]),
                                          "rdma_link")
            except ValueError as e:
                module.fail_json(msg="rdma_link: %s" % (e if where == "rdma" else "%s: %s" % (where, e)))
    results = []
    orig_fail = module.fail_json

    def fail(**kw):  # a later link failed: the links before it made their changes
        if results:
            kw["changes"] = [c for r in results for c in r["changes"]] + list(kw.get("changes") or [])
            kw["changed"] = bool(kw.get("changed")) or any(r["changed"] for r in results)
        orig_fail(**kw)

    module.fail_json = fail
    loaded = []  # check mode: what the links before would have loaded (modprobe)
    try:
        for _where, p in links:
            results.append(reconcile(module, p, check, texts, loaded if check else ()))
            loaded += [m for c in results[-1]["changes"] if c.get("kind") == "modules" for m in c["detail"].split()[2:]]
        if rdma_opts:  # the host's links are managed here: a rail no longer given leaves no boot unit
            _remove_stale_rails(module, links, results, check)
    finally:
        module.fail_json = orig_fail
    if rdma_opts:
        merge_into(module, results[0], results[1:])
    else:
        merge_into(module, None, results)


def _remove_stale_rails(module, links, results, check):
    """Disable and remove the boot files of rails 2..N the host has but ``links`` no longer
    lists (a rail dropped from the spec); their changes go with the last link's result."""
    p = links[0][1]
    try:
        present = rail_unit_interfaces(os.listdir(p["unit_dir"]))
    except OSError:
        present = []
    changes = stale_rail_removal(present, [q["interface"] for _where, q in links[1:]], p["lib_dir"], p["unit_dir"])
    if not changes:
        return
    if not check:
        _done, failures = persist.apply(changes, persist.systemctl_for(module, p["unit_dir"]))
        if failures:
            module.fail_json(msg="rdma_link: %s" % "; ".join(failures), changed=True,
                             changes=[public_change(c) for c in changes])
    results[-1]["changes"] = list(results[-1]["changes"]) + [public_change(c) for c in changes]
    results[-1]["changed"] = True


def merge_into(module, rdma_result, rail_results=()):
    """Make ``module``'s own exit_json/fail_json carry the RDMA links' results too: one module run
    per host does both concerns, and the caller still sees every change. ``rdma_result``: the
    ``rdma`` option's link (rail 1; None when unset), returned as ``rdma``; ``rail_results``: the
    ``rdma_rails`` links (rails 2..N), returned as ``rdma_rails``. Changes and diffs in that order,
    then the module's own."""
    links = ([rdma_result] if rdma_result else []) + list(rail_results)
    orig_exit, orig_fail = module.exit_json, module.fail_json

    def public(r):
        return {"rdma_device": r["rdma_device"], "observed": r["observed"], "changed": r["changed"]}

    def merged(kw):
        kw["changes"] = [c for r in links for c in r["changes"]] + list(kw.get("changes") or [])
        kw["changed"] = bool(kw.get("changed")) or any(r["changed"] for r in links)
        if rdma_result:
            kw["rdma"] = public(rdma_result)
        if rail_results:
            kw["rdma_rails"] = [public(r) for r in rail_results]
        if getattr(module, "_diff", False):  # the diff only in diff mode (--diff)
            d = kw.get("diff") or {}
            kw["diff"] = {"before": "".join(r["diff"]["before"] for r in links) + (d.get("before") or ""),
                          "after": "".join(r["diff"]["after"] for r in links) + (d.get("after") or "")}
        return kw

    module.exit_json = lambda **kw: orig_exit(**merged(kw))
    module.fail_json = lambda **kw: orig_fail(**merged(kw))
