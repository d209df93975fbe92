"""SSH keys for the lab: a client key to log in, one host key per VM, pinned in known_hosts."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def write_ed25519_keypair(path: Path, comment: str) -> str:
    """Write an OpenSSH ed25519 key pair (``path`` 0600, ``path.pub``); return the public line."""
    if path.exists() and path.with_name(path.name + ".pub").exists():
        return path.with_name(path.name + ".pub").read_text().strip()
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = f"{public.decode()} {comment}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    path.with_name(path.name + ".pub").write_text(line + "\n")
    return line


def known_hosts_line(address: str, port: int, public_line: str) -> str:
    """A known_hosts entry pinning ``public_line`` (``ssh-ed25519 AAAA... comment``)."""
    keytype, blob = public_line.split()[:2]
    host = address if port == 22 else f"[{address}]:{port}"
    return f"{host} {keytype} {blob}"
