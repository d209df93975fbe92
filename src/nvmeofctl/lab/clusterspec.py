"""The cluster spec `lab up` writes for its VMs: the demo layout the provisioning tests use."""

from __future__ import annotations

import base64
import os
import secrets
import struct
import zlib
from pathlib import Path

import jinja2

from nvmeofctl.lab.layout import FABRIC_IF, FABRIC_IFS, LAB_MTU, LabLayout
from nvmeofctl.resources import templates_dir

SHARED_DISK_BY_ID = "/dev/disk/by-id/virtio-SHARED0"


def generate_dhchap_secret() -> str:
    """A fresh DH-HMAC-CHAP secret in the ``DHHC-1:01:<base64(key + crc32)>:`` form nvme-cli makes."""
    key = secrets.token_bytes(32)
    blob = key + struct.pack("<I", zlib.crc32(key))
    return f"DHHC-1:01:{base64.b64encode(blob).decode()}:"


def _secret_file(path: Path) -> Path:
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(generate_dhchap_secret() + "\n")
    return path


def render_lab_spec(layout: LabLayout, lab_dir: Path, transport: str = "rdma") -> str:
    """YAML text of the lab's cluster spec (templates/lab-cluster.yaml.j2): the hosts of the
    layout, and a demo export on the first target (train to every GPU node, ckpt to the first
    one with bidirectional DH-HMAC-CHAP, its secrets generated into the lab folder, 0600)."""
    targets = [v.name for v in layout.vms if v.role == "target"]
    gpus = [v.name for v in layout.vms if v.role == "gpu_node"]
    ctx = {
        "name": layout.name, "transport": transport, "mtu": LAB_MTU, "interface": FABRIC_IF, "interface2": FABRIC_IFS[1],
        "vms": layout.vms, "target": targets[0] if targets else None, "gpus": gpus, "targets": targets,
        # the shared disk as the targets' udev names it (serial SHARED0): stable, and under a default backing prefix
        "shared_disk": SHARED_DISK_BY_ID if getattr(layout, "shared_disk", False) else None,
    }
    if targets and gpus:
        ctx["host_secret_file"] = _secret_file(lab_dir / "secrets" / f"{gpus[0]}-dhchap.key").relative_to(lab_dir)
        ctx["ctrl_secret_file"] = _secret_file(lab_dir / "secrets" / f"{targets[0]}-ctrl-dhchap.key").relative_to(lab_dir)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
    )
    return env.get_template("lab-cluster.yaml.j2").render(**ctx)
