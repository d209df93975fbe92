"""NVMe-oF checks: GPU-node controllers, reconnect policy, iopolicy, host identity; target ports.

They read the observed state plan reads (module_utils nvme_host / nvmet ``parse_dump`` of the same
dumps, ``HostFacts.nvme_host`` / ``HostFacts.nvmet``; shapes in those modules' docstrings)."""

from __future__ import annotations

from nvmeofctl.facts import nvme as nvme_p
from nvmeofctl.facts.probe import HostFacts
from nvmeofctl.health.common import finding
from nvmeofctl.health.expect import Expectations
from nvmeofctl.health.model import Finding, Status
from nvmeofctl.plan import kmods
from nvmeofctl.plan.paths import IO_STATES  # the ANA states in which a path carries I/O

OK, WARN, FAIL, NA = Status.ok, Status.warn, Status.fail, Status.na


def _connect_hint(exp: Expectations, nqn: str, ip: str) -> str:
    return f"nvmeofctl apply (or nvme connect -t {exp.fabric.transport} -a {ip} -s {exp.fabric.port} -n {nqn})"


def check_nvme_host(facts: HostFacts, exp: Expectations) -> list[Finding]:
    h = exp.hosts[facts.host]
    if not h.is_gpu_node:
        return []
    fab = exp.fabric
    out: list[Finding] = []
    fabrics = nvme_p.io_fabric_controllers(facts.nvme_host)
    used: set[str] = set()
    live_paths = _live_paths(fabrics, h.exports, fab)
    for e in h.exports:
        ip = e.traddr or (e.target_ips[0] if e.target_ips else "?")
        paths = [x for x in h.exports if x.nqn == e.nqn]
        mine = [c for c in fabrics if c["subsysnqn"] == e.nqn]
        if len(paths) > 1:  # several paths (targets, rails): only this path's controllers are this path
            mine = [c for c in mine if _on_path(c, e, paths)]
        right = [c for c in mine if c["transport"] == fab.transport and _at(c, e) and c["trsvcid"] in (None, str(fab.port))]
        used.update(c["name"] for c in mine)
        exp_s = f"live over {fab.transport} to {ip}:{fab.port}"
        device = e.nqn if len(paths) == 1 else f"{e.nqn} via {_path_name(e, paths)}"
        # another live path carries the I/O: this one down is degraded, not a failure
        others = [c for x in paths if x is not e for c in live_paths.get(_key(x), [])]
        bad = WARN if others else FAIL
        carried = f"; I/O continues on {', '.join(sorted({c['name'] + ' ' + c['traddr'] for c in others}))}" \
            if others else ""
        if not mine:
            out.append(finding(facts, "nvme_controller", bad, "not connected" + carried, exp_s,
                               _connect_hint(exp, e.nqn, ip), device))
            continue
        live = [c for c in right if c["state"] == "live"]
        if live:
            c = live[0]
            out.append(finding(facts, "nvme_controller", OK, f"{c['name']} live {_addr(c)}", exp_s, device=device))
        elif right:
            c = right[0]
            out.append(finding(facts, "nvme_controller", bad, f"{c['name']} {c['state']}{carried}", exp_s,
                               _not_live_hint(c["state"], ip), device))
        else:
            c = mine[0]
            out.append(finding(facts, "nvme_controller", bad, f"{c['name']} {_addr(c)}{carried}",
                               exp_s, "disconnect it and reconnect over the spec's transport/address: "
                               + _connect_hint(exp, e.nqn, ip), device))
        for c in (live or right or mine)[:1]:
            out.extend(_reconnect_policy(facts, exp, c, device))
    extra = [c for c in fabrics if c["name"] not in used]
    if extra:
        out.append(finding(facts, "nvme_unexpected", WARN,
                           ", ".join(f"{c['name']} {c['subsysnqn']} {c['transport']} {c['traddr']}" for c in extra),
                           "only the spec's subsystems", "nvme disconnect -d <ctrl> for controllers not in the spec"))
    else:
        out.append(finding(facts, "nvme_unexpected", OK, "none", "only the spec's subsystems"))
    nqns = list(dict.fromkeys(e.nqn for e in h.exports))
    out.extend(_paths(facts, h.exports, nqns, fabrics, live_paths))
    out.extend(_iopolicy(facts, exp, nqns))
    out.extend(_identity(facts, exp))
    return out


def _key(e) -> tuple[str, str, str | None]:
    return (e.nqn, e.target, e.traddr)


def _at(c: dict, e) -> bool:
    """Whether controller ``c`` runs to the address of path ``e`` (any of the target's when the
    path names none)."""
    if e.traddr:
        return c["traddr"] == e.traddr
    return not e.target_ips or c["traddr"] in e.target_ips


def _on_path(c: dict, e, paths) -> bool:
    """Whether ``c`` belongs to path ``e`` among the subsystem's ``paths``: its address, or, when
    the target has one path only, any address of that target (a moved address is still its path)."""
    if sum(1 for x in paths if x.target == e.target) > 1:
        return _at(c, e)
    return not e.target_ips or c["traddr"] in e.target_ips or _at(c, e)


def _path_name(e, paths) -> str:
    """The target, and the address when the target has several paths to the subsystem (rails)."""
    if sum(1 for x in paths if x.target == e.target) > 1 and e.traddr:
        return f"{e.target} {e.traddr}"
    return e.target


def _live_paths(fabrics: list[dict], exports, fab) -> dict[tuple[str, str, str | None], list[dict]]:
    """(subsystem NQN, target, address) -> the path's live controllers over the spec's transport and port."""
    out: dict[tuple[str, str, str | None], list[dict]] = {}
    for e in exports:
        paths = [x for x in exports if x.nqn == e.nqn]
        out[_key(e)] = [
            c for c in fabrics if c["subsysnqn"] == e.nqn and c["state"] == "live" and c["transport"] == fab.transport
            and _on_path(c, e, paths) and c["trsvcid"] in (None, str(fab.port))]
    return out


def _paths(facts, exports, nqns: list[str], fabrics: list[dict], live_paths) -> list[Finding]:
    """Per namespace of a subsystem with several paths (per target serving it, per rail): the paths that
    carry I/O (live controller, ANA optimized or non-optimized) against the spec's. All: ok; some: warn
    (degraded, naming the missing ones); none: fail."""
    out = []
    for nqn in nqns:
        want = [e for e in exports if e.nqn == nqn]
        if len(want) < 2:
            continue  # one path: nvme_controller says it all
        nsids = sorted({ns.get("nsid") for c in fabrics if c["subsysnqn"] == nqn for ns in c.get("namespaces") or []
                        if ns.get("nsid") is not None})
        for nsid in nsids or [None]:
            parts, up, down = [], 0, []
            for e in want:
                ctrls = live_paths.get(_key(e), [])
                states = [next((ns.get("ana_state") for ns in c.get("namespaces") or [] if ns.get("nsid") == nsid),
                               "no namespace") for c in ctrls]
                carrying = [(c, st) for c, st in zip(ctrls, states) if st in IO_STATES]
                if carrying:
                    up += 1
                    c, st = carrying[0]
                    parts.append(f"{c['name']} {_path_name(e, want)} {st or 'live'}")
                else:
                    why = f"{ctrls[0]['name']} {states[0]}" if ctrls else "no live controller"
                    if not ctrls:  # the path's own controller, not live: name it
                        mine = [c for c in fabrics if c["subsysnqn"] == nqn and _on_path(c, e, want)]
                        why = f"{mine[0]['name']} {mine[0]['state']}" if mine else "not connected"
                    down.append(f"{_path_name(e, want)} ({why})")
            status = OK if up == len(want) else (WARN if up else FAIL)
            obs = f"{up}/{len(want)} paths carry I/O: " + ", ".join(parts) if parts else f"0/{len(want)} paths"
            if down:
                obs += "; down: " + ", ".join(down)
            hint = "" if status == OK else (
                "degraded: one target or link failure away from losing the namespace; bring the path back "
                "(target up, link up, nvmeofctl apply)" if status == WARN else
                "no path: I/O to this namespace stalls or fails; check the targets and the fabric")
            device = nqn if nsid is None else f"{nqn} nsid {nsid}"
            out.append(finding(facts, "nvme_paths", status, obs, f"{len(want)} live path(s)", hint, device))
    return out


def _addr(c: dict) -> str:
    return f"{c['transport']} {c['traddr']}:{c['trsvcid']}"


def _not_live_hint(state: str | None, ip: str) -> str:
    """What a controller that is not live is doing, and what to do about it."""
    if state and state.startswith("deleting"):
        return ("controller being deleted: the kernel finishes it when its outstanding I/O ends "
                "(nvmeofctl apply ignores it and connects a new one); if it stays, I/O to it is stuck: "
                "reboot the node")
    if state in ("connecting", "resetting"):
        return (f"controller not live: reconnecting, the target at {ip} does not answer for this path "
                "(target or link down, or the export removed); it comes back by itself when the target "
                "does, and nvmeofctl apply disconnects it if the spec dropped the export")
    return f"controller not live: check the target and the fabric path to {ip}"


def _reconnect_policy(facts, exp: Expectations, c: dict, nqn: str) -> list[Finding]:
    h = exp.hosts[facts.host]
    # ctrl_loss_tmo as sysfs shows it (rounded up to a multiple of reconnect_delay), as plan compares it
    want = {"ctrl_loss_tmo": h.ctrl_loss_tmo, "reconnect_delay": h.reconnect_delay, "kato": h.keep_alive_tmo}
    got = {"ctrl_loss_tmo": c["ctrl_loss_tmo"], "reconnect_delay": c["reconnect_delay"], "kato": c["kato"]}
    checked = {k: v for k, v in want.items() if v is not None and got[k] is not None}
    if not checked:
        return [finding(facts, "nvme_reconnect", NA, "no reconnect policy in sysfs", device=nqn)]
    bad = {k: got[k] for k, v in checked.items() if got[k] != v}
    obs = " ".join(f"{k}={got[k]}" for k in checked)
    shown = {k: (f"{v} (spec {h.ctrl_loss_tmo_requested})" if k == "ctrl_loss_tmo" and v != h.ctrl_loss_tmo_requested
                 else str(v)) for k, v in checked.items()}
    exp_s = " ".join(f"{k}={v}" for k, v in shown.items())
    return [finding(facts, "nvme_reconnect", WARN if bad else OK, obs, exp_s,
                    "reconnect with the spec's --ctrl-loss-tmo/--reconnect-delay/--keep-alive-tmo (nvmeofctl apply)",
                    nqn)]


def _iopolicy(facts, exp: Expectations, nqns: list[str]) -> list[Finding]:
    want = exp.hosts[facts.host].iopolicy
    if not want or not nqns:
        return []
    out = []
    for nqn in nqns:
        sub = ((facts.nvme_host or {}).get("subsystems") or {}).get(nqn)
        if sub is None:
            out.append(finding(facts, "nvme_iopolicy", NA, "subsystem not present (see nvme_controller)", device=nqn))
        elif sub["iopolicy"] is None:
            out.append(finding(facts, "nvme_iopolicy", NA, "no iopolicy (native NVMe multipath off)", want, device=nqn))
        else:
            path = f"/sys/class/nvme-subsystem/{sub['name']}/iopolicy"
            out.append(finding(facts, "nvme_iopolicy", OK if sub["iopolicy"] == want else WARN, sub["iopolicy"], want,
                               f"echo {want} > {path} (persist via udev rule)",
                               nqn))
    return out


def _identity(facts, exp: Expectations) -> list[Finding]:
    h = exp.hosts[facts.host]
    out = []
    for what, got, want in (("host_nqn", facts.etc_hostnqn, h.host_nqn), ("host_id", facts.etc_hostid, h.host_id)):
        fname = "/etc/nvme/hostnqn" if what == "host_nqn" else "/etc/nvme/hostid"
        if got is None:
            out.append(finding(facts, what, FAIL, f"{fname} missing", want or "present",
                               "nvmeofctl apply writes the spec's host NQN/ID"))
        elif want and got.lower() != want.lower():
            out.append(finding(facts, what, FAIL, got, want,
                               f"write the spec's value to {fname} (nvmeofctl apply); targets allow only the spec's NQN"))
        else:
            out.append(finding(facts, what, OK, got, want or "present"))
    if h.host_nqn:
        wrong = [c["name"] for c in nvme_p.controllers(facts.nvme_host)
                 if c["fabrics"] and c["hostnqn"] and c["hostnqn"] != h.host_nqn]
        if wrong:
            out.append(finding(facts, "host_nqn_in_use", WARN, f"{', '.join(wrong)} connected with another host NQN",
                               h.host_nqn, "reconnect after fixing /etc/nvme/hostnqn (nvmeofctl apply)"))
    return out


def check_nvmet(facts: HostFacts, exp: Expectations) -> list[Finding]:
    h = exp.hosts[facts.host]
    if not h.is_target:
        return []
    fab = exp.fabric
    want = f"{fab.transport} {'|'.join(h.ips) or '?'}:{fab.port}"
    if not facts.nvmet_configfs or facts.nvmet is None:
        return [finding(facts, "nvmet_port", FAIL, "nvmet configfs absent", want,
                        kmods.modprobe_command(kmods.needed("target", fab.transport, False)) + " && nvmeofctl apply")]
    all_ports = facts.nvmet.get("ports") or {}
    ports = [(pid, p) for pid, p in all_ports.items() if p["trtype"] == fab.transport
             and p["trsvcid"] == str(fab.port) and (not h.ips or p["traddr"] in h.ips)]
    out: list[Finding] = []
    if not ports:
        have = ", ".join(f"{pid}:{p['trtype']} {p['traddr']}:{p['trsvcid']}" for pid, p in all_ports.items())
        out.append(finding(facts, "nvmet_port", FAIL, have or "no ports", want, "nvmeofctl apply (creates the port)"))
    else:
        out.append(finding(facts, "nvmet_port", OK, f"port {ports[0][0]} {want}", want, device=ports[0][0]))
    linked = {s for _pid, p in ports for s in p["subsystems"]}
    subsystems = facts.nvmet.get("subsystems") or {}
    for nqn, allowed in h.subsystems.items():
        s = subsystems.get(nqn)
        if s is None:
            out.append(finding(facts, "nvmet_subsystem", FAIL, "absent", "present, linked to the port",
                               "nvmeofctl apply", nqn))
            continue
        problems = []
        if nqn not in linked:
            problems.append("not linked to the listening port")
        enabled = {nsid: ns["enable"] is True for nsid, ns in s["namespaces"].items()}
        if enabled and not any(enabled.values()):
            problems.append("no enabled namespace")
        elif not enabled:
            problems.append("no namespaces")
        if s["allow_any_host"]:
            problems.append("allow_any_host=1")
        missing = [a for a in allowed if a and a not in s["allowed_hosts"]]
        if missing:
            problems.append(f"{len(missing)} GPU node NQN(s) not allowed")
        if problems:
            out.append(finding(facts, "nvmet_subsystem", FAIL, "; ".join(problems),
                               "linked, namespaces enabled, only the spec's hosts allowed", "nvmeofctl apply", nqn))
        else:
            ns = ",".join(n for n, on in sorted(enabled.items(), key=lambda kv: _nsid_key(kv[0])) if on)
            out.append(finding(facts, "nvmet_subsystem", OK, f"linked, ns {ns}, {len(s['allowed_hosts'])} host(s)",
                               "linked, namespaces enabled, only the spec's hosts allowed", device=nqn))
    return out


def _nsid_key(nsid: str) -> tuple[int, str]:
    return (int(nsid), nsid) if nsid.isdigit() else (1 << 32, nsid)
