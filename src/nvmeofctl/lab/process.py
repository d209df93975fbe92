"""Processes the lab starts (QEMU VMs, the vde switches): pid files, liveness, the QEMU monitor (HMP) and QMP."""

from __future__ import annotations

import json
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


class QmpError(Exception):
    """A QMP command or job failed; the message is QEMU's."""


class Qmp:
    """A minimal QMP client over a Unix socket (``-qmp unix:PATH,server=on,wait=off``).

    QEMU serves one client at a time on such a socket: open, run a few commands, close.
    Asynchronous events in the stream are skipped.
    """

    def __init__(self, sock: Path, timeout: float = 30.0) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._buf = b""
        try:
            self._sock.connect(str(sock))
            greeting = self._read()
            if "QMP" not in greeting:
                raise QmpError(f"no QMP greeting on {sock}")
            self.execute("qmp_capabilities")
        except BaseException:
            self._sock.close()
            raise

    def __enter__(self) -> "Qmp":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def _read(self) -> dict:
        while b"\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise QmpError("QMP connection closed by QEMU")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def execute(self, command: str, **arguments) -> object:
        msg: dict = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self._sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read()
            if "event" in reply:
                continue
            if "error" in reply:
                raise QmpError(reply["error"].get("desc", str(reply["error"])))
            return reply.get("return")

    def run_job(self, command: str, job_id: str, timeout: float = 300.0, **arguments) -> None:
        """Start a job (``snapshot-save``/``-load``/``-delete``), wait until it concludes,
        dismiss it, and raise QmpError with QEMU's message if it failed."""
        self.execute(command, **{"job-id": job_id, **arguments})
        deadline = time.monotonic() + timeout
        while True:
            jobs = {j["id"]: j for j in self.execute("query-jobs")}  # type: ignore[union-attr]
            job = jobs.get(job_id)
            if job is None:
                raise QmpError(f"job {job_id} vanished")
            if job["status"] == "concluded":
                self.execute("job-dismiss", id=job_id)
                if job.get("error"):
                    raise QmpError(job["error"])
                return
            if time.monotonic() > deadline:
                raise QmpError(f"job {job_id} did not finish within {timeout:.0f}s (status {job['status']})")
            time.sleep(0.1)
