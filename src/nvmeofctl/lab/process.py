"""Processes the lab starts (QEMU VMs, the vde switch): pid files, liveness, the QEMU monitor."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int | None, expect_in_cmdline: str | None = None) -> bool:
    """True if ``pid`` runs and (when given) its command line contains ``expect_in_cmdline``.

    The second test keeps a stale pid file that now names an unrelated process from counting.
    """
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if expect_in_cmdline:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return False
        return expect_in_cmdline in cmdline
    return True


def running(pidfile: Path, expect_in_cmdline: str | None = None) -> int | None:
    pid = read_pid(pidfile)
    return pid if pid_alive(pid, expect_in_cmdline) else None


def terminate(pid: int, timeout: float = 10.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def monitor_command(sock: Path, command: str, timeout: float = 120.0) -> str:
    """Send one HMP command to a QEMU monitor socket and return its output (prompt stripped)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(sock))
    buf = b""

    def read_until_prompt() -> bytes:
        nonlocal buf
        while b"(qemu) " not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        out, _, buf = buf.partition(b"(qemu) ")
        return out

    try:
        read_until_prompt()  # banner
        s.sendall(command.encode() + b"\n")
        if command.strip() == "quit":
            try:
                while s.recv(65536):
                    pass
            except OSError:
                pass
            return ""
        out = read_until_prompt()
    finally:
        s.close()
    text = out.decode(errors="replace").replace("\r", "")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith(command.strip()[:20])]
    return "\n".join(lines)
