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

from functools import cache
from typing import Any

from nvmeofctl.plan import desired as desired_mod
from nvmeofctl.resources import load_module_utils

# The interpreter the inventory gives Ansible (run/inventory.py): the nvmet unit runs the boot
# program with the interpreter its module ran under.
HOST_PYTHON = "/usr/bin/python3"
# the modules' defaults (the playbook does not set these options)
STATE_DIR = "/etc/nvmeofctl"
LIB_DIR = "/usr/local/lib/nvmeofctl"
UNIT_DIR = "/etc/systemd/system"
NVMET_MANAGED = STATE_DIR + "/nvmet-managed.json"


@cache
def program() -> bytes:
    """The boot program's bytes, built from the collection's module_utils as the modules build it."""
    return load_module_utils("bootapp").build()


def rdma_changes(rdma_opts: dict, device: str | None, fs) -> list[dict]:
    """The RDMA link's boot script and unit (``rdma_link`` with ``persist`` true, its default)."""
    rdma = load_module_utils("rdma")
    changes, _states = rdma.persist_changes(rdma.normalize(rdma_opts), device, LIB_DIR, UNIT_DIR, fs=fs)
    return changes


def nvmet_changes(want: dict, observed: dict, raw: list[dict], managed: dict, fs) -> list[dict]:
    """nvmet-managed.json after the diff's ``raw`` changes, then nvmet.json, the boot program and
    the unit, in the order ``nvmet_target`` makes them."""
    nvmet = load_module_utils("nvmet")
    new_managed = nvmet.managed_after(want, observed, raw, managed)
    _path, _text, _state, record = nvmet.managed_change(STATE_DIR, new_managed, fs)
    changes, _states = nvmet.persist_changes(want, HOST_PYTHON, program(), STATE_DIR, LIB_DIR, UNIT_DIR, fs=fs)
    return ([record] if record else []) + changes


def nvme_host_changes(want: dict, fs) -> list[dict]:
    """initiator-managed.json, the boot program, connections.json and the unit."""
    nh = load_module_utils("nvme_host")
    return nh.file_changes(want, program(), STATE_DIR, LIB_DIR, UNIT_DIR, True, fs)


def paths_to_read(spec, host) -> list[str]:
    """Every path the persistence planning of ``host`` asks about."""
    persist = load_module_utils("persist")
    rec = persist.Recorder()
    rdma_opts = desired_mod.rdma_args(spec, host)
    if rdma_opts:
        rdma_changes(rdma_opts, rdma_opts.get("rdma_device") or "rxe0", rec)  # the paths do not depend on it
    if host.role == "target":
        nvmet = load_module_utils("nvmet")
        want = nvmet.normalize(desired_mod.nvmet_args(spec, host))
        nvmet_changes(want, nvmet.empty_tree(), [], {}, rec)
    else:
        nh = load_module_utils("nvme_host")
        nvme_host_changes(nh.normalize_desired(desired_mod.nvme_host_args(spec, host)), rec)
    return sorted(rec.paths)


def read_sections(spec, host) -> tuple[list[str], list[tuple[str, str]]]:
    """(paths, [(section, read-only shell command)]) to add to ``host``'s one read: the
    persistence files' digests and modes, and on targets the backing files' sizes."""
    paths = paths_to_read(spec, host)
    sections = [("persist", load_module_utils("persist").state_command(paths))]
    if host.role == "target":
        nvmet = load_module_utils("nvmet")
        want = nvmet.normalize(desired_mod.nvmet_args(spec, host))
        sections.append(("nvmet-files", nvmet.files_command(want, NVMET_MANAGED)))
    return paths, sections


def observed_files(sections: dict[str, str], paths: list[str]) -> dict[str, Any]:
    """The ``files`` (persist.DumpedFiles) and ``nvmet_files`` (probe_files shape) entries of a
    host's observed state, from its read's sections; {} where they were not read."""
    out: dict[str, Any] = {}
    if "persist" in sections:
        out["files"] = load_module_utils("persist").parse_state(sections["persist"], paths)
    if "nvmet-files" in sections:
        out["nvmet_files"] = load_module_utils("nvmet").parse_files(sections["nvmet-files"])
    return out
