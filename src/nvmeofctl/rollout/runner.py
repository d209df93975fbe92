"""Rolling redeploy of the targets, one batch at a time (I/O: SSH reads, Ansible runs, reboots).

Per batch of at most ``max_unavailable`` targets:

1. check that every namespace keeps a live path through another target (else refuse, exit 7);
2. drain: the batch's ANA groups ``inaccessible`` on its ports and ``optimized`` on the
   partners' (``playbooks/rollout_ana.yml``, live only);
3. wait until no GPU node uses a path through the batch for I/O (their ANA state followed);
4. apply the spec to the batch (``site.yml``), or reboot it and wait for its new boot;
5. restore the spec's ANA states on the batch and its partners;
6. wait until every path through them is live with the spec's ANA state again.

Each step is written to the journal (``rollout.journal``) as it ends.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from nvmeofctl.errors import DisruptiveRefused, NvmeofctlError, UsageError
from nvmeofctl.exitcodes import ExitCode
from nvmeofctl.rollout import model
from nvmeofctl.rollout.journal import Journal

Say = Callable[[str], None]


class RolloutStalled(NvmeofctlError):
    """A wait ran past its limit, or an Ansible step failed; the journal lets a rerun continue."""

    exit_code = ExitCode.TASK_FAILED


def _read(spec, names: list[str]) -> dict[str, dict[str, Any]]:
    from nvmeofctl.facts.hoststate import gather
    from nvmeofctl.plan.selection import require_all

    states = gather(spec, names)
    require_all(spec, names, states, suffix="\n(rollout needs every GPU node and the targets involved)")
    return {n: st.observed() for n, st in states.items()}


def _wait(what: str, check: Callable[[], list[str]], timeout: float, poll: float, say: Say) -> float:
    start = time.monotonic()
    last: list[str] = []
    while True:
        pending = check()
        if not pending:
            return time.monotonic() - start
        if pending != last:
            say(f"  waiting for {what}: {'; '.join(pending[:4])}{' ...' if len(pending) > 4 else ''}")
            last = pending
        if time.monotonic() - start > timeout:
            raise RolloutStalled(f"gave up after {timeout:.0f} s waiting for {what}: {'; '.join(pending)} "
                                 "(rerun `nvmeofctl rollout` to continue from this step)")
        time.sleep(poll)


def _ansible(spec, playbook: str, host_vars: dict[str, dict], say: Say) -> None:
    from nvmeofctl.run.inventory import build_inventory
    from nvmeofctl.run.runner import run_playbook

    if not host_vars:
        return
    result = run_playbook(playbook, build_inventory(spec, host_vars), limit=",".join(host_vars), progress=say)
    failed = [t for t in result.tasks if t.status in ("failed", "unreachable")]
    if failed or result.exit_code != ExitCode.OK:
        msg = "; ".join(f"{t.host}: {t.msg}" for t in failed) or f"ansible-playbook exit {result.rc}"
        raise RolloutStalled(f"playbooks/{playbook} failed: {msg} (rerun `nvmeofctl rollout` to continue)")


def _set_ana(spec, hosts: list[str], down: set[str], say: Say) -> None:
    hv = {t: {"nvmeofctl_ana_ports": ports} for t in hosts if (ports := model.ana_ports(spec, t, down))}
    _ansible(spec, "rollout_ana.yml", hv, say)


def _batch_addresses(spec, batch: list[str], observed: dict[str, dict]) -> list[str]:
    """The addresses of the batch's paths: the spec's, and those its ports listen on now (a
    changed address: the old paths go too)."""
    out = {str(ip) for t in batch for ip in spec.host(t).fabric_ips}
    for t in batch:
        for port in ((observed.get(t) or {}).get("nvmet") or {}).get("ports", {}).values():
            if port.get("traddr"):
                out.add(port["traddr"])
    return sorted(out)


def _apply(spec, batch: list[str], gpus: list[str], say: Say) -> int:
    """The spec applied to the drained batch, and on the GPU nodes to their paths through it
    only (nvme_host ``only_traddr``): the other paths keep carrying the I/O. Changes that stop
    I/O through the batch are allowed (no GPU node uses those paths now). Returns the number of
    changes planned."""
    from nvmeofctl.plan.desired import host_vars
    from nvmeofctl.plan.planner import Plan, plan_host

    observed = _read(spec, batch + gpus)
    hv = host_vars(spec, in_run=set(batch + gpus))
    scope = _batch_addresses(spec, batch, observed)
    args: dict[str, dict] = {}
    for name in batch:
        args[name] = {**hv[name]["nvmeofctl_nvmet"], "allow_disruptive": True}
    for name in gpus:
        args[name] = {**hv[name]["nvmeofctl_nvme_host"], "only_traddr": scope, "allow_disruptive": True}
    plan = Plan([plan_host(spec, spec.host(n), observed[n], set(batch + gpus),
                           args={"nvmet" if n in batch else "nvme_host": args[n]}) for n in batch + gpus])
    errors = [f"{h.host}: {h.error}" for h in plan.hosts if h.error]
    if errors:
        raise RolloutStalled("cannot plan the batch: " + "; ".join(errors))
    todo = [h.host for h in plan.hosts if not h.converged]
    if not todo:
        say(f"  {', '.join(batch)}: converged, nothing to apply")
        return 0
    run = {}
    for name in todo:
        key = "nvmeofctl_nvmet" if name in batch else "nvmeofctl_nvme_host"
        run[name] = {**hv[name], key: args[name]}
    say(f"  applying {len(plan.changes)} change(s) on {', '.join(todo)}"
        + (f" (GPU nodes: paths to {', '.join(scope)} only)" if any(n in gpus for n in todo) else ""))
    _ansible(spec, "site_ordered.yml", run, say)
    return len(plan.changes)


def _reboot(spec, batch: list[str], say: Say, timeout: float, poll: float) -> None:
    from nvmeofctl.remote.ssh import CommandResult, SshTarget, run_many

    targets = [SshTarget.from_host_spec(spec.host(t)) for t in batch]
    boot_id = "cat /proc/sys/kernel/random/boot_id"
    before = {n: r.stdout.strip() for n, r in run_many(targets, boot_id, timeout=30).items()
              if isinstance(r, CommandResult) and r.ok}
    missing = [t for t in batch if t not in before]
    if missing:
        raise RolloutStalled(f"cannot read the boot id of {', '.join(missing)} before rebooting it")
    say(f"  rebooting {', '.join(batch)}")
    # the session ends with the reboot: its result does not matter, the new boot id does
    run_many(targets, "systemctl reboot", timeout=20, connect_timeout=10)

    def not_back() -> list[str]:
        res = run_many(targets, boot_id, timeout=20, connect_timeout=5)
        return [n for n in batch if not (isinstance(res.get(n), CommandResult) and res[n].ok
                                         and res[n].stdout.strip() and res[n].stdout.strip() != before[n])]

    _wait("the new boot of " + ", ".join(batch), not_back, timeout, poll, say)


def run(spec, spec_text: bytes, *, targets: list[str] | None, max_unavailable: int, reboot: bool, say: Say,
        journal_root=None, poll: float = 2.0, drain_timeout: float = 120.0,
        restore_timeout: float = 600.0) -> dict[str, Any]:
    from nvmeofctl.rollout.journal import fingerprint, journal_path

    names = [t.name for t in spec.targets]
    order = targets or names
    bad = [t for t in order if t not in names]
    if bad:
        raise UsageError(f"--targets: {', '.join(bad)} is not a target of cluster {spec.name} "
                         f"(targets: {', '.join(names)})")
    if max_unavailable < 1:
        raise UsageError("--max-unavailable: at least 1")
    batches = model.batches(order, max_unavailable)
    journal = Journal(journal_path(spec.name, journal_root), fingerprint(spec_text, order, reboot, max_unavailable))
    todo = [b for b in batches if not set(b) <= set(journal.done)]
    if journal.resumed:
        say(f"resuming the rollout recorded in {journal.path}: done {', '.join(journal.done) or 'none'}")
    gpus = [h.name for h in spec.gpu_nodes]
    last: dict[str, dict] = {}  # the GPU nodes' latest read: the next check starts from it

    def read_gpus() -> dict[str, dict]:
        last["gpus"] = _read(spec, gpus)
        return last["gpus"]

    # refuse before changing anything when some batch would take a namespace's last live path
    observed = read_gpus()
    lost = [line for b in todo for line in model.lost_paths(spec, observed, set(b))]
    if lost:
        raise DisruptiveRefused("refusing to start the rollout, nothing changed:\n" + "\n".join(dict.fromkeys(lost)))

    for batch in todo:
        t_batch = time.monotonic()
        involved = batch + model.partners(spec, batch)
        say(f"{', '.join(batch)}: checking that every namespace keeps a path")
        # the read that ended the previous wait (or the refusal check): no extra round trip
        observed = last.pop("gpus", None) or read_gpus()
        lost = model.lost_paths(spec, observed, set(batch))
        if lost:
            raise DisruptiveRefused(f"stopping before {', '.join(batch)} (earlier targets are done; "
                                    "rerun to continue):\n" + "\n".join(lost))
        t0 = time.monotonic()
        say(f"{', '.join(batch)}: draining: ANA inaccessible there, optimized on {', '.join(involved[len(batch):]) or '-'}")
        _set_ana(spec, involved, set(batch), say)
        waited = _wait("GPU nodes to stop I/O through " + ", ".join(batch),
                       lambda: model.pending_drain(spec, read_gpus(), set(batch)), drain_timeout, poll, say)
        journal.step(batch, "drain", time.monotonic() - t0, waited_s=round(waited, 1))
        t0 = time.monotonic()
        if reboot:
            _reboot(spec, batch, say, restore_timeout, poll)
            journal.step(batch, "reboot", time.monotonic() - t0)
        else:
            n = _apply(spec, batch, gpus, say)
            journal.step(batch, "apply", time.monotonic() - t0, changes=n)
        t0 = time.monotonic()
        say(f"{', '.join(batch)}: restoring the spec's ANA states")
        _set_ana(spec, involved, set(), say)
        waited = _wait("every path through " + ", ".join(involved) + " to be live with the spec's ANA state",
                       lambda: model.pending_restore(spec, read_gpus(), set(batch), set(involved) - set(batch)),
                       restore_timeout, poll, say)
        journal.step(batch, "restore", time.monotonic() - t0, waited_s=round(waited, 1))
        journal.batch_done(batch)
        say(f"{', '.join(batch)}: done in {time.monotonic() - t_batch:.0f} s")
    journal.finish()
    return {"cluster": spec.name, "targets": order, "max_unavailable": max_unavailable, "reboot": reboot,
            "resumed": journal.resumed, "journal": str(journal.path), "steps": journal.data["steps"],
            "started": journal.data["started"], "finished": journal.data["finished"]}
