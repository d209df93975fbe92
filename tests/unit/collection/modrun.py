"""Shared by the collection's tests: the collection on sys.path, and running a module in-process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "playbooks" / "collections"))

from ansible.module_utils import basic  # noqa: E402
from ansible_collections.nvmeofctl.fabric.plugins.plugin_utils import host_files_calls  # noqa: E402

TEST_PYTHON = "/usr/bin/python3"  # what the action plugin renders into the boot units here
ACTIONS = REPO / "playbooks" / "collections" / "ansible_collections" / "nvmeofctl" / "fabric" / "plugins" / "action"


def run_module(module, monkeypatch, capsys, args: dict, check: bool = False, diff: bool = False) -> tuple[dict, str]:
    """Run ``module.main()`` with ``args`` as Ansible would (``check``: --check, ``diff``: --diff),
    its action plugin included: ``host_files`` rendered from the collection's templates/ unless
    ``args`` has it; returns (result JSON, raw stdout)."""
    args = dict(args)
    name = module.__name__.rsplit(".", 1)[-1]
    if "host_files" not in args and (ACTIONS / f"{name}.py").exists():  # its action plugin renders them
        args["host_files"] = host_files_calls.host_files(name, args, TEST_PYTHON)
    if check:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode())
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy")
    with pytest.raises(SystemExit):
        module.main()
    raw = capsys.readouterr().out
    return json.loads(raw), raw
