"""The cluster spec `lab up` writes for its VMs: the demo layout the provisioning tests use."""

from __future__ import annotations

import base64
import os
import secrets
import struct
import zlib
from pathlib import Path

from nvmeofctl.lab.layout import FABRIC_IF, LAB_MTU, LabLayout


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
    """YAML text of the lab's cluster spec (hosts from the layout, demo subsystems on tgt1)."""
    lines = [
        "# Written by `nvmeofctl lab up`: the lab's VMs and a demo export.",
        "# Edit freely; `nvmeofctl lab up` rewrites it only when it is missing.",
        f"name: {layout.name}",
        "fabric:",
        f"  transport: {transport}",
        "  port: 4420",
        f"  mtu: {LAB_MTU}",
        "  soft_roce: true            # the lab's NICs have no RDMA offload: Soft-RoCE (rdma_rxe)",
        "  reconnect: {ctrl_loss_tmo: -1, reconnect_delay: 5, keep_alive_tmo: 5}",
        "hosts:",
    ]
    for vm in layout.vms:
        lines += [
            f"  - name: {vm.name}",
            f"    role: {vm.role}",
            f"    ssh: {{address: 127.0.0.1, port: {vm.ssh_port}, user: root, key: id_ed25519, known_hosts: known_hosts}}",
            f"    fabric: {{interface: {FABRIC_IF}, ips: [{vm.fabric_ip}]}}",
        ]
    targets = [v for v in layout.vms if v.role == "target"]
    gpus = [v for v in layout.vms if v.role == "gpu_node"]
    if targets and gpus:
        tgt = targets[0].name
        gpu_names = ", ".join(v.name for v in gpus)
        first = gpus[0].name
        host_secret = _secret_file(lab_dir / "secrets" / f"{first}-dhchap.key")
        ctrl_secret = _secret_file(lab_dir / "secrets" / f"{tgt}-ctrl-dhchap.key")
        lines += [
            "subsystems:",
            f"  - nqn: nqn.2024-01.io.nvmeofctl.{layout.name}:train",
            f"    target: {tgt}",
            f"    allowed_gpu_nodes: [{gpu_names}]",
            "    namespaces:",
            "      - nsid: 1",
            "        name: train",
            "        backing: {file: /var/lib/nvmeofctl/train.img, size: 256MiB}",
            f"  - nqn: nqn.2024-01.io.nvmeofctl.{layout.name}:ckpt",
            f"    target: {tgt}",
            f"    allowed_gpu_nodes: [{first}]",
            "    dhchap:                   # bidirectional DH-HMAC-CHAP",
            f"      {first}:",
            f"        secret_file: {host_secret.relative_to(lab_dir)}",
            f"        ctrl_secret_file: {ctrl_secret.relative_to(lab_dir)}",
            "    namespaces:",
            "      - nsid: 1",
            "        name: ckpt",
            "        backing: {file: /var/lib/nvmeofctl/ckpt.img, size: 128MiB}",
        ]
    else:
        lines.append("subsystems: []")
    return "\n".join(lines) + "\n"
