"""Helpers for spec tests: a small valid base spec and DH-HMAC-CHAP key makers."""

from __future__ import annotations

import base64
import zlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "specs"
SAMPLE_HOST_KEY = (FIXTURES / "good" / "secrets" / "gpu1.key").read_text().strip()
SAMPLE_CTRL_KEY = (FIXTURES / "good" / "secrets" / "stor1.key").read_text().strip()


def make_key(hash_id: str, nbytes: int, fill: int = 7) -> str:
    key = bytes((fill + i) % 256 for i in range(nbytes))
    crc = zlib.crc32(key).to_bytes(4, "little")
    return f"DHHC-1:{hash_id}:{base64.b64encode(key + crc).decode()}:"


# Line numbers matter: the error tests assert exact `cluster.yaml:LINE` values.
BASE = f"""\
name: t
fabric:
  transport: rdma
  soft_roce: true
hosts:
  - name: stor1
    role: target
    ssh: {{address: 127.0.0.1, port: 2201}}
    fabric: {{interface: eth1, ips: [10.9.0.1]}}
  - name: gpu1
    role: gpu_node
    ssh: {{address: 127.0.0.1, port: 2202}}
    fabric: {{interface: eth1, ips: [10.9.0.2]}}
  - name: gpu2
    role: gpu_node
    ssh: {{address: 127.0.0.1, port: 2203}}
    fabric: {{interface: eth1, ips: [10.9.0.3]}}
subsystems:
  - nqn: nqn.2024-01.io.nvmeofctl.t:a
    target: stor1
    allowed_gpu_nodes: [gpu1, gpu2]
    dhchap:
      gpu1: {{secret: "{SAMPLE_HOST_KEY}"}}
    namespaces:
      - nsid: 1
        name: a1
        backing: {{device: /dev/nvme1n1}}
  - nqn: nqn.2024-01.io.nvmeofctl.t:b
    target: stor1
    allowed_gpu_nodes: [gpu1]
    namespaces:
      - nsid: 1
        name: b1
        backing: {{file: /var/lib/nvmeofctl/b1.img, size: 256MiB}}
"""


def edit(*pairs: tuple[str, str]) -> str:
    """BASE with each (old, new) replaced exactly once (fails loudly when old is absent)."""
    text = BASE
    for old, new in pairs:
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in BASE"
        text = text.replace(old, new)
    return text


@pytest.fixture
def base_text() -> str:
    return BASE
