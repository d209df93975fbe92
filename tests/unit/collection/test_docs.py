"""Every module of the collection documents itself (ansible-doc renders it, fragments included)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
MODULES = sorted(p.stem for p in (REPO / "playbooks/collections/ansible_collections/nvmeofctl/fabric/plugins/modules").glob("*.py")
                 if p.stem != "__init__")


@pytest.mark.parametrize("name", MODULES)
def test_ansible_doc_renders(name):
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(REPO / "playbooks" / "collections"), "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), f"nvmeofctl.fabric.{name}"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and "ERROR" not in proc.stderr, proc.stderr
    assert f"nvmeofctl.fabric.{name}" in proc.stdout
    if name in ("nvmet_target", "nvme_host"):
        assert "rdma" in proc.stdout  # the shared doc fragment
