"""Shared by the collection's tests: the collection on sys.path, and running a module in-process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "playbooks" / "collections"))

from ansible.module_utils import basic  # noqa: E402


def run_module(module, monkeypatch, capsys, args: dict, check: bool = False, diff: bool = False) -> tuple[dict, str]:
    """Run ``module.main()`` with ``args`` as Ansible would (``check``: --check, ``diff``: --diff);
    returns (result JSON, raw stdout)."""
    args = dict(args)
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
