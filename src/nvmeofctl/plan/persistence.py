"""Boot persistence in the plan: the host files the planner reads, and the changes they need.

The modules keep a host's configuration across reboots with files (the boot program, configs,
systemd units and their wants links; module_utils ``persist.py``) and record what they manage
(``nvmet-managed.json``, ``initiator-managed.json``) and the backing files they create. The
planner reads the sha256 digest and mode of each such file (never its content) and the backing
files' sizes in its one read-only round trip, and runs the modules' OWN persistence planning on
that view (``persist.DumpedFiles``). So the plan covers everything a module run would change,
and ``apply`` can skip every host whose plan is empty: a converged redeploy runs no Ansible.

Which paths to read is learnt by running the same planning with ``persist.Recorder`` (answers
"current" to everything, so every branch asks its paths): no second list of paths to keep in
step. A path the plan asks about that was not read raises ``persist.UnreadPath`` (a plan error,
never a guess).
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from nvmeofctl.plan import desired as desired_mod
from nvmeofctl.resources import load_module_utils, load_plugin_utils

# The interpreter the inventory gives Ansible (run/inventory.py): the modules' action plugin
# renders it into the boot units (the interpreter that runs the boot program at boot).
HOST_PYTHON = "/usr/bin/python3"


def _dirs() -> tuple[str, str, str]:
    """(state, lib, unit) folders: the modules' defaults (the playbook does not set them)."""
    nvmet, persist = load_module_utils("nvmet"), load_module_utils("persist")
    return nvmet.STATE_DIR, persist.LIB_DIR, persist.UNIT_DIR


def texts(wanted: dict[str, dict]) -> dict[str, str]:
    """The boot files' texts as the modules' action plugin renders them from the collection's
    templates/ (plugin_utils/host_files.py): ``wanted`` is a module_utils ``template_vars``."""
    return load_plugin_utils("host_files").render_all(wanted)


@cache
def program() -> bytes:
    """The boot program's bytes, built from the collection's module_utils as the modules build it."""
    return load_module_utils("bootapp").build()


def rdma_changes(rdma_opts: dict, device: str | None, fs) -> list[dict]:
    """One rail's RDMA link boot script, device file and unit (``rdma_link`` with ``persist``
    true, its default; their removal with ``persist`` false)."""
    rdma = load_module_utils("rdma")
    _state, lib, unit = _dirs()
    desired = rdma.normalize(rdma_opts)
    if rdma_opts.get("persist") is False:  # a rail's own files (rail 1: the unsuffixed ones)
        return rdma.persist_removal(lib, unit, fs=fs, rail=desired["rail"], interface=desired["interface"])
    rendered = texts(rdma.template_vars(desired, lib, rdma.CONFIGFS_ROOT))
    changes, _states = rdma.persist_changes(desired, device, rendered, lib, unit, fs=fs)
    return changes


def stale_rail_changes(listing: str, keep: list[str]) -> list[dict]:
    """Removal of the boot files of rails 2..N the host has (``listing``: the read's
    ``rdma-units`` section, rdma.rail_units_command) but the spec no longer gives (``keep``: the
    interfaces of its rails 2..N), as the role modules remove them."""
    rdma = load_module_utils("rdma")
    _state, lib, unit = _dirs()
    interfaces, fs = rdma.rail_files_view(listing, unit, lib)
    return rdma.stale_rail_removal(interfaces, keep, lib, unit, fs)


def nvmet_changes(want: dict, observed: dict, raw: list[dict], managed: dict, fs,
                  persist_on: bool = True) -> list[dict]:
    """nvmet-managed.json after the diff's ``raw`` changes, then nvmet.json, the boot program and
    the unit (their removal when not ``persist_on``), in the order ``nvmet_target`` makes them."""
    nvmet = load_module_utils("nvmet")
    state, lib, unit = _dirs()
    new_managed = nvmet.managed_after(want, observed, raw, managed)
    _path, _text, _state, record = nvmet.managed_change(state, new_managed, fs)
    if persist_on:
        rendered = texts(nvmet.template_vars(HOST_PYTHON, state, lib))
        changes, _states = nvmet.persist_changes(want, rendered, program(), state, lib, unit, fs=fs)
    else:
        changes = nvmet.persist_removal(state, lib, unit, fs=fs)
    return ([record] if record else []) + changes


def nvme_host_changes(want: dict, fs, persist_on: bool = True, managed: list | None = None) -> list[dict]:
    """initiator-managed.json, the boot program, connections.json and the unit (their removal
    when not ``persist_on``). ``managed``: the record as read (a scoped run keeps its entries
    outside the scope)."""
    nh = load_module_utils("nvme_host")
    state, lib, unit = _dirs()
    rendered = texts(nh.template_vars(HOST_PYTHON, state, lib)) if persist_on else None
    return nh.file_changes(want, program(), rendered, state, lib, unit, persist_on, fs, managed=managed)


def _desired(spec, host) -> dict:
    """The host's normalized desired state, as the module normalizes it."""
    if host.role == "target":
        return load_module_utils("nvmet").normalize(desired_mod.nvmet_args(spec, host))
    return load_module_utils("nvme_host").normalize_desired(desired_mod.nvme_host_args(spec, host))


def _paths_asked(spec, host, want: dict) -> list[str]:
    """Every path the persistence planning of ``host`` (desired ``want``) asks about."""
    rec = load_module_utils("persist").Recorder()
    rails = [desired_mod.rdma_args(spec, host), *desired_mod.rdma_rails_args(spec, host)]
    for persist_on in (True, False):  # writing them (apply) and removing them (teardown)
        for rdma_opts in rails:
            if rdma_opts:  # the paths do not depend on the device
                rdma_changes(dict(rdma_opts, persist=persist_on), rdma_opts.get("rdma_device") or "rxe0", rec)
        if host.role == "target":
            nvmet_changes(want, load_module_utils("nvmet").empty_tree(), [], {}, rec, persist_on)
        else:
            nvme_host_changes(want, rec, persist_on)
    return sorted(rec.paths)


def read_sections(spec, host) -> tuple[list[str], list[tuple[str, str]]]:
    """(paths, [(section, read-only shell command)]) to add to ``host``'s one read: the
    persistence files' digests and modes, and on targets the backing files' sizes."""
    want = _desired(spec, host)
    paths = _paths_asked(spec, host, want)
    sections = [("persist", load_module_utils("persist").state_command(paths))]
    if desired_mod.rdma_args(spec, host):  # the boot units of rails (a rail dropped from the spec: stale)
        _state, lib, unit = _dirs()
        sections.append(("rdma-units", load_module_utils("rdma").rail_units_command(lib, unit)))
    if host.role == "target":
        nvmet = load_module_utils("nvmet")
        managed = os.path.join(nvmet.STATE_DIR, nvmet.MANAGED_NAME)
        sections.append(("nvmet-files", nvmet.files_command(want, managed)))
    return paths, sections


def observed_files(sections: dict[str, str], paths: list[str]) -> dict[str, Any]:
    """The ``files`` (persist.DumpedFiles), ``rdma_units`` (the rails' boot files listed) and
    ``nvmet_files`` (probe_files shape) entries of a host's observed state, from its read's
    sections; {} where they were not read."""
    out: dict[str, Any] = {}
    if "persist" in sections:
        out["files"] = load_module_utils("persist").parse_state(sections["persist"], paths)
    if "rdma-units" in sections:
        out["rdma_units"] = sections["rdma-units"]
    if "nvmet-files" in sections:
        out["nvmet_files"] = load_module_utils("nvmet").parse_files(sections["nvmet-files"])
    return out
